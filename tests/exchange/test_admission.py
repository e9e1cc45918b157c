"""Admission end to end over an in-memory world: signatures, replay, rules, subjects."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange import parties, rules
from exchange.admission import Admitted, admit
from exchange.errors import (
    InvalidFieldError,
    RuleViolationError,
    SignatureInvalidError,
    SignerError,
)
from exchange.identifiers import application_check_character
from exchange.parties import PartyState
from exchange.rules import REGISTER, PatentState
from exchange.statements import party_id_for, sign
from kaifang.exchange.v1 import statements_pb2 as pb

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
DIGITS = "202310123456"
NUMBER = f"{DIGITS}.{application_check_character(DIGITS)}"
REGISTER_KEY = Ed25519PrivateKey.generate()
OPERATOR_KEY = Ed25519PrivateKey.generate()
ORIGIN = "east.kaifang.example/log"


@dataclass
class MemoryWorld:
    """The World seam in memory; the database views implement the same protocol."""

    parties_: dict[str, PartyState] = field(default_factory=dict)
    patents: dict[str, PatentState] = field(default_factory=dict)
    about: dict[bytes, str] = field(default_factory=dict)
    kinds: dict[bytes, str] = field(default_factory=dict)
    events: dict[bytes, str] = field(default_factory=dict)
    size: int = 0  # entries sequenced into ORIGIN's log

    def register_key(self) -> bytes:
        return REGISTER_KEY.public_key().public_bytes_raw()

    def operator_key(self, origin: str) -> bytes | None:
        return OPERATOR_KEY.public_key().public_bytes_raw() if origin == ORIGIN else None

    def party(self, party_id: str) -> PartyState | None:
        return self.parties_.get(party_id)

    def patent(self, application_number: str) -> PatentState | None:
        return self.patents.get(application_number)

    def patent_of(self, statement_id: bytes) -> str | None:
        return self.about.get(statement_id)

    def kind_of(self, statement_id: bytes) -> str | None:
        return self.kinds.get(statement_id)

    def party_of_event(self, event_id: bytes) -> str | None:
        return self.events.get(event_id)

    def entry_known(self, origin: str, index: int) -> bool:
        return origin == ORIGIN and 0 <= index < self.size

    def sequence(self, admitted: Admitted) -> None:
        self.size += 1
        s, sid = admitted.statement, admitted.statement_id
        self.kinds[sid] = admitted.kind
        if admitted.party is not None:
            self.parties_[admitted.party] = parties.apply(self.party(admitted.party), s, sid)
            if admitted.kind == "credit_event_recorded":
                self.events[sid] = admitted.party
        elif admitted.patent is not None:
            if admitted.kind not in ("dispute_filed", "mediation_recorded", "license_recorded"):
                state = self.patents.get(admitted.patent)
                self.patents[admitted.patent] = rules.apply(state, s, sid, NOW.date())
            self.about[sid] = admitted.patent


@dataclass
class Party:
    key: Ed25519PrivateKey

    @property
    def public(self) -> bytes:
        return self.key.public_key().public_bytes_raw()

    @property
    def id(self) -> str:
        return party_id_for(self.public)


def signed(statement: pb.Statement, *signers: tuple[str, Ed25519PrivateKey]) -> pb.SignedStatement:
    data = statement.SerializeToString()
    return pb.SignedStatement(statement=data, signatures=[sign(data, n, k) for n, k in signers])


def stmt(created: dt.datetime = NOW, **body: object) -> pb.Statement:
    s = pb.Statement(nonce=b"n" * 16, **body)  # type: ignore[arg-type]
    s.created_at.FromDatetime(created)
    return s


def d(day: dt.date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


def registration(p: Party) -> pb.SignedStatement:
    body = pb.PartyRegistered(
        party_id=p.id, name="Acme", kind=pb.PARTY_KIND_ENTERPRISE,
        identity_code="91350100M000100Y43", public_key=p.public, region="350100",
    )  # fmt: skip
    return signed(stmt(party_registered=body), (p.id, p.key))


@pytest.fixture
def world() -> tuple[MemoryWorld, Party, Party]:
    w = MemoryWorld()
    owner, licensee = Party(Ed25519PrivateKey.generate()), Party(Ed25519PrivateKey.generate())
    for p in (owner, licensee):
        w.sequence(admit(registration(p), w, NOW))
    record = pb.PatentRecorded(
        application_number=NUMBER, title="A method", ipc=["H04L 9/32"], owners=[owner.id],
        filing_date=d(dt.date(2023, 1, 5)), grant_date=d(dt.date(2025, 3, 1)),
        expiry_date=d(dt.date(2043, 1, 5)), status=pb.PATENT_STATUS_IN_FORCE,
        fees_paid_until=d(dt.date(2027, 6, 1)), region="110108",
    )  # fmt: skip
    w.sequence(admit(signed(stmt(patent_recorded=record), (REGISTER, REGISTER_KEY)), w, NOW))
    return w, owner, licensee


def _offer() -> pb.Statement:
    terms = pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=100, currency="CNY"))
    return stmt(
        offer_published=pb.OfferPublished(
            application_number=NUMBER, terms=terms, licence_term_months=12
        )
    )


def test_offer_and_acceptance_are_admitted_with_their_subjects(
    world: tuple[MemoryWorld, Party, Party],
) -> None:
    w, owner, licensee = world
    offered = admit(signed(_offer(), (owner.id, owner.key)), w, NOW)
    assert (offered.kind, offered.patent) == ("offer_published", NUMBER)
    w.sequence(offered)
    accept = pb.LicenseAccepted(
        offer_id=offered.statement_id, licensee=licensee.id,
        terms=pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=100, currency="CNY")),
        start_date=d(NOW.date()),
        payment=pb.Payment(
            amount=pb.Money(amount_minor=100, currency="CNY"), reference="TX", paid_on=d(NOW.date())
        ),
    )  # fmt: skip
    accepted = admit(signed(stmt(license_accepted=accept), (licensee.id, licensee.key)), w, NOW)
    assert accepted.patent == NUMBER  # found through the offer id
    w.sequence(accepted)
    # The licensee may now bring the open licence to mediation; a stranger may not.
    stranger = Party(Ed25519PrivateKey.generate())
    w.sequence(admit(registration(stranger), w, NOW))
    dispute = pb.DisputeFiled(
        application_number=NUMBER, subject_id=accepted.statement_id,
        kind=pb.DISPUTE_KIND_OPEN_LICENSE, claimant=licensee.id, respondents=[owner.id],
        summary="not performed",
    )  # fmt: skip
    filed = admit(signed(stmt(dispute_filed=dispute), (licensee.id, licensee.key)), w, NOW)
    w.sequence(filed)
    dispute.claimant = stranger.id
    with pytest.raises(RuleViolationError, match="NOT_A_PARTY"):
        admit(signed(stmt(dispute_filed=dispute), (stranger.id, stranger.key)), w, NOW)
    # A mediation record needs a mediator appointed by an operator, not by themself.
    record = pb.MediationRecorded(
        dispute_id=filed.statement_id, mediator=stranger.id,
        outcome=pb.MEDIATION_OUTCOME_AGREEMENT, summary="settled",
        concluded_on=d(NOW.date()),
    )  # fmt: skip
    with pytest.raises(RuleViolationError, match="NOT_A_MEDIATOR"):
        admit(signed(stmt(mediation_recorded=record), (stranger.id, stranger.key)), w, NOW)
    grant = stmt(role_granted=pb.RoleGranted(party_id=stranger.id, role=pb.ROLE_MEDIATOR))
    with pytest.raises(SignerError):
        admit(signed(grant, (stranger.id, stranger.key)), w, NOW)
    w.sequence(admit(signed(grant, (f"operator:{ORIGIN}", OPERATOR_KEY)), w, NOW))
    admit(signed(stmt(mediation_recorded=record), (stranger.id, stranger.key)), w, NOW)


def test_forged_and_wrong_key_signatures_are_refused(
    world: tuple[MemoryWorld, Party, Party],
) -> None:
    w, owner, licensee = world
    forged = signed(_offer(), (owner.id, owner.key))
    forged.signatures[0].signature = bytes(64)
    with pytest.raises(SignatureInvalidError, match="does not verify"):
        admit(forged, w, NOW)
    with pytest.raises(SignatureInvalidError, match="no registered key"):
        admit(signed(_offer(), (owner.id, licensee.key)), w, NOW)
    with pytest.raises(SignerError):
        admit(signed(_offer(), (licensee.id, licensee.key)), w, NOW)
    with pytest.raises(SignatureInvalidError):
        admit(signed(_offer(), ("operator:west.example/log", OPERATOR_KEY)), w, NOW)


def test_a_rotated_out_key_signs_nothing_more(world: tuple[MemoryWorld, Party, Party]) -> None:
    w, owner, _ = world
    new = Ed25519PrivateKey.generate()
    rotation = stmt(
        party_key_rotated=pb.PartyKeyRotated(
            party_id=owner.id, new_public_key=new.public_key().public_bytes_raw()
        )
    )
    w.sequence(admit(signed(rotation, (owner.id, owner.key), (owner.id, new)), w, NOW))
    with pytest.raises(SignatureInvalidError, match="rotated out"):
        admit(signed(_offer(), (owner.id, owner.key)), w, NOW)
    admit(signed(_offer(), (owner.id, new)), w, NOW)


def test_replayed_and_malformed_statements_are_refused(
    world: tuple[MemoryWorld, Party, Party],
) -> None:
    w, owner, _ = world
    old = stmt(created=NOW - dt.timedelta(days=2), offer_published=_offer().offer_published)
    with pytest.raises(InvalidFieldError, match="acceptance window"):
        admit(signed(old, (owner.id, owner.key)), w, NOW)
    with pytest.raises(InvalidFieldError):
        admit(pb.SignedStatement(statement=b"\xff\x00garbage"), w, NOW)


def test_disputes_and_mediation_must_be_about_the_right_statements(
    world: tuple[MemoryWorld, Party, Party],
) -> None:
    w, owner, licensee = world
    offered = admit(signed(_offer(), (owner.id, owner.key)), w, NOW)
    w.sequence(offered)
    record_id = next(sid for sid, kind in w.kinds.items() if kind == "patent_recorded")
    dispute = pb.DisputeFiled(
        application_number=NUMBER, subject_id=record_id, kind=pb.DISPUTE_KIND_OPEN_LICENSE,
        claimant=owner.id, respondents=[licensee.id], summary="?",
    )  # fmt: skip
    with pytest.raises(RuleViolationError, match="SUBJECT_UNKNOWN"):
        admit(signed(stmt(dispute_filed=dispute), (owner.id, owner.key)), w, NOW)
    # An ownership claim may come from anyone registered, not only the parties.
    dispute.subject_id = offered.statement_id
    dispute.kind = pb.DISPUTE_KIND_OWNERSHIP
    dispute.claimant, dispute.respondents[:] = licensee.id, [owner.id]
    admit(signed(stmt(dispute_filed=dispute), (licensee.id, licensee.key)), w, NOW)
    mediator = Party(Ed25519PrivateKey.generate())
    w.sequence(admit(registration(mediator), w, NOW))
    grant = stmt(role_granted=pb.RoleGranted(party_id=mediator.id, role=pb.ROLE_MEDIATOR))
    w.sequence(admit(signed(grant, (f"operator:{ORIGIN}", OPERATOR_KEY)), w, NOW))
    record = pb.MediationRecorded(
        dispute_id=offered.statement_id, mediator=mediator.id,
        outcome=pb.MEDIATION_OUTCOME_AGREEMENT, summary="x", concluded_on=d(NOW.date()),
    )  # fmt: skip
    with pytest.raises(RuleViolationError, match="DISPUTE_UNKNOWN"):
        admit(signed(stmt(mediation_recorded=record), (mediator.id, mediator.key)), w, NOW)


def test_a_supervisor_cannot_act_on_their_own_record(
    world: tuple[MemoryWorld, Party, Party],
) -> None:
    w, owner, _ = world
    grant = stmt(role_granted=pb.RoleGranted(party_id=owner.id, role=pb.ROLE_SUPERVISOR))
    w.sequence(admit(signed(grant, (f"operator:{ORIGIN}", OPERATOR_KEY)), w, NOW))
    event = pb.CreditEventRecorded(
        party_id=owner.id, kind=pb.CREDIT_EVENT_KIND_OTHER, supervisor=owner.id,
        evidence=[pb.EntryReference(origin=ORIGIN, index=1)], summary="x",
        occurred_on=d(NOW.date()),
    )  # fmt: skip
    with pytest.raises(RuleViolationError, match="OWN_RECORD"):
        admit(signed(stmt(credit_event_recorded=event), (owner.id, owner.key)), w, NOW)


def test_an_impossible_timestamp_is_a_field_error(world: tuple[MemoryWorld, Party, Party]) -> None:
    w, owner, _ = world
    statement = _offer()
    statement.created_at.seconds = 2**62
    with pytest.raises(InvalidFieldError, match="created_at"):
        admit(signed(statement, (owner.id, owner.key)), w, NOW)


def test_a_credit_event_must_cite_entries_the_node_holds(
    world: tuple[MemoryWorld, Party, Party],
) -> None:
    w, owner, licensee = world
    grant = stmt(role_granted=pb.RoleGranted(party_id=owner.id, role=pb.ROLE_SUPERVISOR))
    w.sequence(admit(signed(grant, (f"operator:{ORIGIN}", OPERATOR_KEY)), w, NOW))

    def event(*evidence: pb.EntryReference) -> pb.SignedStatement:
        body = pb.CreditEventRecorded(
            party_id=licensee.id, kind=pb.CREDIT_EVENT_KIND_PAYMENT_DEFAULT,
            supervisor=owner.id, evidence=evidence, summary="x", occurred_on=d(NOW.date()),
        )  # fmt: skip
        return signed(stmt(credit_event_recorded=body), (owner.id, owner.key))

    held = pb.EntryReference(origin=ORIGIN, index=w.size - 1)
    admitted = admit(event(held), w, NOW)
    assert admitted.party == licensee.id
    for missing in (
        pb.EntryReference(origin=ORIGIN, index=w.size),
        pb.EntryReference(origin="elsewhere.example/log", index=0),
    ):
        with pytest.raises(RuleViolationError, match="EVIDENCE_UNKNOWN") as refused:
            admit(event(held, missing), w, NOW)
        assert refused.value.field == "credit_event_recorded.evidence[1]"


def test_a_key_signing_twice_is_refused(world: tuple[MemoryWorld, Party, Party]) -> None:
    w, owner, _ = world
    twice = signed(_offer(), (owner.id, owner.key))
    twice.signatures.append(twice.signatures[0])
    with pytest.raises(InvalidFieldError) as refused:
        admit(twice, w, NOW)
    assert refused.value.field == "signatures[1]"
    once = signed(_offer(), (owner.id, owner.key))
    assert admit(once, w, NOW).kind == "offer_published"
