"""The authorisation matrix: every statement kind against every wrong set of signers.

Rows are the seventeen statement kinds, columns the ways a signer set can
be wrong; each cell says what the node answers (PERMISSION_DENIED with
``SIGNATURE_MISSING`` naming whose signature the law requires, or
``SIGNATURE_INVALID``; FAILED_PRECONDITION with the rule's reason) or why the
attack does not apply to that kind. :data:`MATRIX` must have every cell, so
a kind or an attack added without deciding its cells fails
:func:`test_the_matrix_has_a_cell_for_every_kind_and_attack`.

The node is real (gRPC on loopback, on SQLite and on PostgreSQL) and holds
a market in which every party has rotated its key once, so that its
registration key is revoked. Each statement is built with the typed
builders of :mod:`clients.builders` and signed here by whoever the cell
says. Every refusal writes nothing: the log's size and every table of the
database are unchanged. And each statement the cells start from, signed by
the right parties with their current keys, is admitted
(:func:`test_each_kind_signed_by_the_right_parties_is_admitted`): so a
refusal in the matrix is the wrong signers', not the statement's.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.rpc import status_pb2

from clients import builders
from exchange.rules import REGISTER
from exchange.sample import SampleParty, generate
from exchange.statements import sign, statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.note import Signer
from tests.exchange import story
from tests.hostile.harness import ORIGIN, Answer, Target, call_unary, target
from tests.pg import PostgresServer, create_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

OPERATOR = f"operator:{ORIGIN}"
Key = Ed25519PrivateKey | Signer

# -- the market ---------------------------------------------------------------------


@dataclass
class Party:
    """A registered party: its id, its key now, and the key it registered (rotated out)."""

    name: str
    party_id: str
    key: Ed25519PrivateKey
    old_key: Ed25519PrivateKey


@dataclass
class Desk:
    """A node holding the matrix's market, and what the statements name."""

    target: Target
    parties: dict[str, Party]  # by role name: owner, co_owner, licensee, bank, ...
    fresh: SampleParty  # not registered
    sole: str  # the owner's patent, nothing on it
    co_owned: str  # the owner's and co-owner's, offered (O), accepted by the licensee (L)
    pledged: str  # the owner's and co-owner's, pledged to the bank (P)
    unrecorded: pb.PatentRecorded
    offer_id: bytes  # O
    licence_id: bytes  # L
    pledge_id: bytes  # P
    dispute_id: bytes  # the licensee's dispute about L
    credit_event_id: bytes  # a payment default on the licensee's record

    def __getitem__(self, name: str) -> Party:
        return self.parties[name]

    def key(self, name: str) -> Key:
        """The current key of ``name`` (a party, ``register`` or the operator)."""
        if name == REGISTER:
            return self.target.register
        if name == OPERATOR:
            return self.target.operator
        return self.parties[name].key

    def signer_id(self, name: str) -> str:
        """The signer name on a signature of ``name``."""
        return name if name in (REGISTER, OPERATOR) else self.parties[name].party_id


ROLES = ["owner", "co_owner", "licensee", "bank", "mediator", "supervisor", "guest", "intruder"]


async def _admit(t: Target, *signed: pb.SignedStatement) -> list[api.SubmitStatementResponse]:
    response = await t.stub.SubmitStatements(api.SubmitStatementsRequest(signed=signed))
    refused = [o.status for o in response.outcomes if o.WhichOneof("result") != "submitted"]
    assert not refused, [status_pb2.Status.FromString(s) for s in refused]
    return [o.submitted for o in response.outcomes]


async def build_desk(t: Target) -> Desk:
    """Set the matrix's market up on ``t``; every party ends with a rotated key."""
    sample = generate(101, parties=len(ROLES) + 1, patents=4)
    people = dict(zip(ROLES, sample.parties, strict=False))
    fresh = sample.parties[len(ROLES)]
    sole, co_owned, pledged, unrecorded = sample.patents
    owner, co_owner, licensee = people["owner"], people["co_owner"], people["licensee"]
    bank, mediator, supervisor = people["bank"], people["mediator"], people["supervisor"]
    await _admit(t, *(story.registration(p) for p in people.values()))
    await _admit(
        t,
        story.record(sole, [owner], t.register),
        story.record(co_owned, [owner, co_owner], t.register),
        story.record(pledged, [owner, co_owner], t.register),
        story.role(mediator, pb.ROLE_MEDIATOR, t.operator, ORIGIN),
        story.role(supervisor, pb.ROLE_SUPERVISOR, t.operator, ORIGIN),
    )
    offer = story.offer(co_owned.application_number, [owner, co_owner])
    pledge = story.pledge(pledged.application_number, [owner, co_owner], bank)
    acceptance = story.acceptance(statement_id(offer.statement), licensee)
    await _admit(t, offer, pledge, acceptance)
    dispute = story.dispute(
        co_owned.application_number, statement_id(acceptance.statement), licensee, [owner]
    )
    credit = story.credit_event(licensee, supervisor, pb.EntryReference(origin=ORIGIN, index=0))
    await _admit(t, dispute, credit)
    # Every party rotates its key: the one it registered is revoked.
    parties: dict[str, Party] = {}
    rotations = []
    for name, person in people.items():
        new = Ed25519PrivateKey.generate()
        draft = builders.rotate_key(
            party_id=person.party_id, new_public_key=new.public_key().public_bytes_raw()
        )
        rotations.append(_signed(draft.statement, [(person.party_id, person.key),
                                                   (person.party_id, new)]))  # fmt: skip
        parties[name] = Party(name, person.party_id, new, person.key)
    await _admit(t, *rotations)
    return Desk(
        t, parties, fresh,
        sole.application_number, co_owned.application_number, pledged.application_number,
        unrecorded, statement_id(offer.statement), statement_id(acceptance.statement),
        statement_id(pledge.statement), statement_id(dispute.statement),
        statement_id(credit.statement),
    )  # fmt: skip


def _signed(data: bytes, signers: list[tuple[str, Key]]) -> pb.SignedStatement:
    return pb.SignedStatement(
        statement=data, signatures=[sign(data, name, key) for name, key in signers]
    )


# -- the statements: what each kind says, and who rightly signs it --------------------


def _today() -> dt.date:
    return story.today()


CNY_20K = builders.lump_sum(2_000_000, "CNY")


@dataclass(frozen=True)
class Kind:
    """How to build a statement of one kind on the desk, and who must sign it."""

    build: Callable[[Desk], bytes]
    # Names (roles, ``register``, the operator) whose current keys sign it rightly.
    signers: tuple[str, ...]
    # For the role_not_held attack: the statement naming the intruder as the one
    # who acts (mediator, supervisor, claimant), or None where the attack is a
    # different signer (role_granted, the register's statements).
    as_intruder: Callable[[Desk], bytes] | None = None


def _registration(d: Desk) -> bytes:
    r = d.fresh.registration
    return builders.register_party(
        public_key=r.public_key, name=r.name, kind=r.kind, region=r.region,
        identity_code=r.identity_code,
    ).statement  # fmt: skip


NEXT_KEY = Ed25519PrivateKey.generate()


def _rotation(d: Desk) -> bytes:
    public = NEXT_KEY.public_key().public_bytes_raw()
    return builders.rotate_key(party_id=d["guest"].party_id, new_public_key=public).statement


def _role(d: Desk, who: str = "guest") -> bytes:
    return builders.grant_role(
        party_id=d[who].party_id, role=pb.ROLE_MEDIATOR, origin=ORIGIN
    ).statement


def _record(d: Desk) -> bytes:
    p = d.unrecorded
    return builders.record_patent(
        application_number=p.application_number, title=p.title, ipc=list(p.ipc),
        owners=[d["owner"].party_id], filing_date=dt.date(p.filing_date.year,
        p.filing_date.month, p.filing_date.day), expiry_date=_today() + dt.timedelta(days=3650),
        status=pb.PATENT_STATUS_IN_FORCE, grant_date=_today() - dt.timedelta(days=30),
        fees_paid_until=_today() + dt.timedelta(days=365), region=p.region,
    ).statement  # fmt: skip


def _status_change(d: Desk) -> bytes:
    return builders.change_patent_status(
        application_number=d.sole, change=pb.STATUS_CHANGE_FEE_UNPAID, effective_date=_today(),
        reference="CNIPA-2026-0002",
    ).statement  # fmt: skip


def _offer(d: Desk) -> bytes:
    return builders.publish_offer(
        application_number=d.pledged, terms=CNY_20K, licence_term_months=24,
        signers=[d["owner"].party_id, d["co_owner"].party_id, d["bank"].party_id],
        evaluation_report="EVAL-2026-003",
    ).statement  # fmt: skip


def _withdrawal(d: Desk) -> bytes:
    return builders.withdraw_offer(
        offer_id=d.offer_id, signers=[d["owner"].party_id, d["co_owner"].party_id]
    ).statement


def _acceptance(d: Desk) -> bytes:
    return builders.accept_offer(
        offer_id=d.offer_id, licensee=d["guest"].party_id, terms=CNY_20K, start_date=_today(),
        payment=builders.paid(2_000_000, "CNY", _today(), "TX-9"),
    ).statement  # fmt: skip


def _recordal(d: Desk) -> bytes:
    return builders.record_licence(
        license_id=d.licence_id, recordal_number="2026990000456", recorded_on=_today(),
        signers=[d["licensee"].party_id],
    ).statement  # fmt: skip


def _grant(d: Desk) -> bytes:
    return builders.grant_licence(
        application_number=d.pledged, licensors=[d["owner"].party_id, d["co_owner"].party_id],
        licensee=d["guest"].party_id, type=pb.LICENSE_TYPE_ORDINARY, start_date=_today(),
        end_date=_today() + dt.timedelta(days=365), terms=CNY_20K,
        also=[d["bank"].party_id],
    ).statement  # fmt: skip


def _transfer(d: Desk) -> bytes:
    return builders.register_transfer(
        application_number=d.pledged, assignors=[d["owner"].party_id, d["co_owner"].party_id],
        assignees=[d["guest"].party_id], also=[d["bank"].party_id],
    ).statement  # fmt: skip


def _pledge(d: Desk) -> bytes:
    return builders.register_pledge(
        application_number=d.co_owned, pledgors=[d["owner"].party_id, d["co_owner"].party_id],
        pledgee=d["bank"].party_id, secured_minor=10_000_000, currency="CNY",
        debt_start=_today(), debt_end=_today() + dt.timedelta(days=365),
    ).statement  # fmt: skip


def _release(d: Desk) -> bytes:
    return builders.release_pledge(pledge_id=d.pledge_id, pledgee=d["bank"].party_id).statement


def _dispute(d: Desk, claimant: str = "licensee") -> bytes:
    return builders.file_dispute(
        application_number=d.co_owned, subject_id=d.licence_id,
        kind=pb.DISPUTE_KIND_OPEN_LICENSE, claimant=d[claimant].party_id,
        respondents=[d["owner"].party_id], summary="the technical documents never came",
    ).statement  # fmt: skip


def _mediation(d: Desk, mediator: str = "mediator") -> bytes:
    return builders.record_mediation(
        dispute_id=d.dispute_id, mediator=d[mediator].party_id,
        outcome=pb.MEDIATION_OUTCOME_AGREEMENT, summary="documents within 30 days",
        concluded_on=_today(),
    ).statement  # fmt: skip


def _credit(d: Desk, supervisor: str = "supervisor") -> bytes:
    return builders.record_credit_event(
        party_id=d["guest"].party_id, kind=pb.CREDIT_EVENT_KIND_PAYMENT_DEFAULT,
        supervisor=d[supervisor].party_id, evidence=[(ORIGIN, 0)],
        summary="royalty unpaid", occurred_on=_today(),
    ).statement  # fmt: skip


def _repair(d: Desk, supervisor: str = "supervisor") -> bytes:
    return builders.repair_credit_event(
        event_id=d.credit_event_id, supervisor=d[supervisor].party_id, summary="paid in full"
    ).statement


KINDS: dict[str, Kind] = {
    "party_registered": Kind(_registration, ("fresh",)),
    "party_key_rotated": Kind(_rotation, ("guest", "guest_next")),
    "role_granted": Kind(_role, (OPERATOR,), lambda d: _role(d, "intruder")),
    "patent_recorded": Kind(_record, (REGISTER,)),
    "patent_status_changed": Kind(_status_change, (REGISTER,)),
    "offer_published": Kind(_offer, ("owner", "co_owner", "bank")),
    "offer_withdrawn": Kind(_withdrawal, ("owner", "co_owner")),
    "license_accepted": Kind(_acceptance, ("guest",)),
    "license_recorded": Kind(_recordal, ("licensee",)),
    "license_granted": Kind(_grant, ("owner", "co_owner", "guest", "bank")),
    "transfer_registered": Kind(_transfer, ("owner", "co_owner", "guest", "bank")),
    "pledge_registered": Kind(_pledge, ("owner", "co_owner", "bank")),
    "pledge_released": Kind(_release, ("bank",)),
    "dispute_filed": Kind(_dispute, ("licensee",), lambda d: _dispute(d, "intruder")),
    "mediation_recorded": Kind(_mediation, ("mediator",), lambda d: _mediation(d, "intruder")),
    "credit_event_recorded": Kind(_credit, ("supervisor",), lambda d: _credit(d, "intruder")),
    "credit_event_repaired": Kind(_repair, ("supervisor",), lambda d: _repair(d, "intruder")),
}


def _signer(d: Desk, name: str) -> tuple[str, Key]:
    """The (signer name, key) of a name a Kind lists."""
    if name == "fresh":
        return d.fresh.party_id, d.fresh.key
    if name == "guest_next":  # the new key of the guest's rotation signs for the guest
        return d["guest"].party_id, NEXT_KEY
    return d.signer_id(name), d.key(name)


# -- the attacks ------------------------------------------------------------------------


def unsigned(d: Desk, kind: str) -> pb.SignedStatement:
    """No signature at all."""
    return _signed(KINDS[kind].build(d), [])


def intruder_instead(d: Desk, kind: str) -> pb.SignedStatement:
    """A registered party with no standing signs in place of every rightful signer."""
    return _signed(KINDS[kind].build(d), [_signer(d, "intruder")])


def someone_elses_key(d: Desk, kind: str) -> pb.SignedStatement:
    """The first rightful signer's name on a signature by the intruder's key."""
    first, *rest = KINDS[kind].signers
    name, _ = _signer(d, first)
    return _signed(
        KINDS[kind].build(d), [(name, d["intruder"].key), *(_signer(d, n) for n in rest)]
    )


def revoked_key(d: Desk, kind: str) -> pb.SignedStatement:
    """The first rightful signer signs with the key it registered, rotated out since."""
    first, *rest = KINDS[kind].signers
    party = d[first]
    return _signed(
        KINDS[kind].build(d), [(party.party_id, party.old_key), *(_signer(d, n) for n in rest)]
    )


def _without(name: str) -> Callable[[Desk, str], pb.SignedStatement]:
    def attack(d: Desk, kind: str) -> pb.SignedStatement:
        signers = [_signer(d, n) for n in KINDS[kind].signers if n != name]
        return _signed(KINDS[kind].build(d), signers)

    attack.__doc__ = f"Every rightful signer but the {name}."
    return attack


missing_co_owner = _without("co_owner")
missing_pledgee = _without("bank")


def missing_counterparty(d: Desk, kind: str) -> pb.SignedStatement:
    """The other side's signature left out: the assignee's, the licensee's, the new key's."""
    other = {"party_key_rotated": "guest_next"}.get(kind, "guest")
    return _without(other)(d, kind)


def pledgors_not_pledgee(d: Desk, kind: str) -> pb.SignedStatement:
    """The pledgors sign the release in place of the pledgee."""
    return _signed(KINDS[kind].build(d), [_signer(d, "owner"), _signer(d, "co_owner")])


def role_not_held(d: Desk, kind: str) -> pb.SignedStatement:
    """The intruder acts in a role it does not hold, and signs as itself.

    A mediator, a supervisor, a party to the transaction; an operator, by
    appointing itself; the register, by recording as the patent's owner.
    """
    spec = KINDS[kind]
    if kind in ("patent_recorded", "patent_status_changed"):
        return _signed(spec.build(d), [_signer(d, "owner")])
    assert spec.as_intruder is not None, kind
    return _signed(spec.as_intruder(d), [_signer(d, "intruder")])


ATTACKS: dict[str, Callable[[Desk, str], pb.SignedStatement]] = {
    "unsigned": unsigned,
    "intruder_instead": intruder_instead,
    "someone_elses_key": someone_elses_key,
    "revoked_key": revoked_key,
    "missing_co_owner": missing_co_owner,
    "missing_pledgee": missing_pledgee,
    "pledgors_not_pledgee": pledgors_not_pledgee,
    "missing_counterparty": missing_counterparty,
    "role_not_held": role_not_held,
}


# -- the matrix ---------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """The refusal a cell expects: code, reason, and whose signature is missing (if so)."""

    code: grpc.StatusCode
    reason: str
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotApplicable:
    """Why an attack does not apply to a kind."""

    why: str


def missing(*names: str) -> Refused:
    return Refused(grpc.StatusCode.PERMISSION_DENIED, "SIGNATURE_MISSING", names)


INVALID = Refused(grpc.StatusCode.PERMISSION_DENIED, "SIGNATURE_INVALID")


def rule(reason: str) -> Refused:
    return Refused(grpc.StatusCode.FAILED_PRECONDITION, reason)


ONE_OWNER = NotApplicable("no co-owner signs this kind")
UNPLEDGED = NotApplicable("no pledgee's consent is asked for this kind")
ONE_SIDE = NotApplicable("signed by one side only")
NO_ROLE = NotApplicable("no role or standing beyond the signature is asked for")
AUTHORITY = NotApplicable("signed by an authority's key, which parties' rotations do not touch")
RELEASE_ONLY = NotApplicable("only a release is signed by the pledgee alone")
ANY_OPERATOR = "operator:*"

MATRIX: dict[str, dict[str, Refused | NotApplicable]] = {
    "party_registered": {
        "unsigned": missing("fresh"), "intruder_instead": missing("fresh"),
        "someone_elses_key": INVALID,
        "revoked_key": NotApplicable("a registering party has only the key it registers"),
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": NO_ROLE,
    },
    "party_key_rotated": {
        "unsigned": missing("guest"), "intruder_instead": missing("guest"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY,
        "missing_counterparty": missing("guest"),  # the new key must sign too
        "role_not_held": NO_ROLE,
    },
    "role_granted": {
        "unsigned": missing(ANY_OPERATOR), "intruder_instead": missing(ANY_OPERATOR),
        "someone_elses_key": INVALID, "revoked_key": AUTHORITY,
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": missing(ANY_OPERATOR),  # nobody appoints themself
    },
    "patent_recorded": {
        "unsigned": missing(REGISTER), "intruder_instead": missing(REGISTER),
        "someone_elses_key": INVALID, "revoked_key": AUTHORITY,
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": missing(REGISTER),  # the owner records its own patent
    },
    "patent_status_changed": {
        "unsigned": missing(REGISTER), "intruder_instead": missing(REGISTER),
        "someone_elses_key": INVALID, "revoked_key": AUTHORITY,
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": missing(REGISTER),
    },
    "offer_published": {
        "unsigned": missing("owner", "co_owner"),
        "intruder_instead": missing("owner", "co_owner"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": missing("co_owner"), "missing_pledgee": missing("bank"),
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": NO_ROLE,
    },
    "offer_withdrawn": {
        "unsigned": missing("owner", "co_owner"),
        "intruder_instead": missing("owner", "co_owner"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": missing("co_owner"),
        "missing_pledgee": NotApplicable("a withdrawal needs no pledgee's consent"),
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": NO_ROLE,
    },
    "license_accepted": {
        "unsigned": missing("guest"), "intruder_instead": missing("guest"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": NO_ROLE,
    },
    "license_recorded": {
        # Either side may record: missing names both.
        "unsigned": missing("licensee", "owner", "co_owner"),
        "intruder_instead": missing("licensee", "owner", "co_owner"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": NO_ROLE,
    },
    "license_granted": {
        "unsigned": missing("owner", "co_owner"),
        "intruder_instead": missing("owner", "co_owner"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": missing("co_owner"), "missing_pledgee": missing("bank"),
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": missing("guest"),
        "role_not_held": NO_ROLE,
    },
    "transfer_registered": {
        "unsigned": missing("owner", "co_owner"),
        "intruder_instead": missing("owner", "co_owner"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": missing("co_owner"), "missing_pledgee": missing("bank"),
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": missing("guest"),
        "role_not_held": NO_ROLE,
    },
    "pledge_registered": {
        "unsigned": missing("owner", "co_owner"),
        "intruder_instead": missing("owner", "co_owner"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": missing("co_owner"), "missing_pledgee": missing("bank"),
        "pledgors_not_pledgee": RELEASE_ONLY,
        "missing_counterparty": NotApplicable("the pledgee is the other side: missing_pledgee"),
        "role_not_held": NO_ROLE,
    },
    "pledge_released": {
        "unsigned": missing("bank"), "intruder_instead": missing("bank"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": ONE_OWNER,
        "missing_pledgee": NotApplicable("the pledgee alone signs: see pledgors_not_pledgee"),
        "pledgors_not_pledgee": missing("bank"), "missing_counterparty": ONE_SIDE,
        "role_not_held": NO_ROLE,
    },
    "dispute_filed": {
        "unsigned": missing("licensee"), "intruder_instead": missing("licensee"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": rule("NOT_A_PARTY"),  # no party to the licence files about it
    },
    "mediation_recorded": {
        "unsigned": missing("mediator"), "intruder_instead": missing("mediator"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": rule("NOT_A_MEDIATOR"),  # a self-appointed mediator
    },
    "credit_event_recorded": {
        "unsigned": missing("supervisor"), "intruder_instead": missing("supervisor"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": rule("NOT_A_SUPERVISOR"),
    },
    "credit_event_repaired": {
        "unsigned": missing("supervisor"), "intruder_instead": missing("supervisor"),
        "someone_elses_key": INVALID, "revoked_key": INVALID,
        "missing_co_owner": ONE_OWNER, "missing_pledgee": UNPLEDGED,
        "pledgors_not_pledgee": RELEASE_ONLY, "missing_counterparty": ONE_SIDE,
        "role_not_held": rule("NOT_A_SUPERVISOR"),
    },
}  # fmt: skip

CELLS = [
    (kind, attack, expected)
    for kind, row in MATRIX.items()
    for attack, expected in row.items()
    if isinstance(expected, Refused)
]


async def test_the_matrix_has_a_cell_for_every_kind_and_attack() -> None:
    kinds = {f.name for f in pb.Statement.DESCRIPTOR.oneofs_by_name["body"].fields}
    assert set(MATRIX) == set(KINDS) == kinds
    for kind, row in MATRIX.items():
        assert set(row) == set(ATTACKS), (kind, set(ATTACKS) ^ set(row))


# -- the node -----------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def desk(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Desk]:
    database = None
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("pg_server")
        database = await create_database(server, f"authz_{os.getpid()}")
    directory = tmp_path_factory.mktemp(f"authz-{request.param}") / "net"
    async with target(directory, database=database) as found:
        yield await build_desk(found)


SUBMIT = "/kaifang.exchange.v1.ExchangeService/SubmitStatement"


def _missing_ids(d: Desk, names: tuple[str, ...]) -> str:
    """The ``missing`` metadata a refusal carries: signer names, sorted, comma-joined."""
    ids = {
        d.fresh.party_id if name == "fresh"
        else name if name in (REGISTER, ANY_OPERATOR)
        else d[name].party_id
        for name in names
    }  # fmt: skip
    return ",".join(sorted(ids))


def _check_refused(d: Desk, answer: Answer, expected: Refused, cell: object) -> None:
    assert answer.code == expected.code, (cell, answer.code, answer.details)
    assert answer.reason() == expected.reason, (cell, answer.details)
    if expected.missing:
        assert answer.metadata()["missing"] == _missing_ids(d, expected.missing), cell


@pytest.mark.parametrize(
    ("kind", "attack", "expected"), CELLS, ids=[f"{k}-{a}" for k, a, _ in CELLS]
)
async def test_a_wrong_set_of_signers_is_refused_and_writes_nothing(
    desk: Desk, kind: str, attack: str, expected: Refused
) -> None:
    signed = ATTACKS[attack](desk, kind)
    t = desk.target
    size, before = await t.size(), await t.digest()
    request = api.SubmitStatementRequest(signed=signed)
    answer = await call_unary(t.channel, SUBMIT, request.SerializeToString())
    _check_refused(desk, answer, expected, (kind, attack))
    assert await t.size() == size
    assert await t.digest() == before


async def test_every_wrong_set_in_one_batch_is_refused_alone_and_writes_nothing(
    desk: Desk,
) -> None:
    t = desk.target
    size, before = await t.size(), await t.digest()
    batch = [ATTACKS[attack](desk, kind) for kind, attack, _ in CELLS]
    response = await t.stub.SubmitStatements(api.SubmitStatementsRequest(signed=batch))
    for (kind, attack, expected), outcome in zip(CELLS, response.outcomes, strict=True):
        assert outcome.WhichOneof("result") == "status", (kind, attack)
        status = status_pb2.Status.FromString(outcome.status)
        answer = Answer(grpc.StatusCode(_code(status.code)), status.message, status)
        _check_refused(desk, answer, expected, (kind, attack))
    assert await t.size() == size
    assert await t.digest() == before


def _code(number: int) -> tuple[int, str]:
    return next(c.value for c in grpc.StatusCode if c.value[0] == number)


# The order the rightly signed statements are admitted in, one after another:
# each is lawful in the state the ones before it leave (a withdrawal before the
# co-owned patent is pledged, the guest's key rotated last of all).
ADMISSION_ORDER = [
    "party_registered", "role_granted", "patent_recorded", "patent_status_changed",
    "license_accepted", "license_recorded", "dispute_filed", "mediation_recorded",
    "credit_event_recorded", "credit_event_repaired", "offer_withdrawn", "pledge_registered",
    "offer_published", "license_granted", "transfer_registered", "pledge_released",
    "party_key_rotated",
]  # fmt: skip


async def test_each_kind_signed_by_the_right_parties_is_admitted(tmp_path: Path) -> None:
    assert sorted(ADMISSION_ORDER) == sorted(KINDS)
    async with target(tmp_path / "net") as t:
        d = await build_desk(t)
        right = [
            _signed(KINDS[k].build(d), [_signer(d, n) for n in KINDS[k].signers])
            for k in ADMISSION_ORDER
        ]
        done = await _admit(t, *right)
    assert [x.duplicate for x in done] == [False] * len(ADMISSION_ORDER)
