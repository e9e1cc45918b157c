"""Statement builders and drafts: pure checks, then every kind admitted by a real node.

The pure half builds one statement of each kind and compares its body with
the message the arguments describe, checks whose signatures each draft
needs, and passes drafts through files between parties, refusing damaged
files and double signatures. The second half submits a statement of every
kind, each built here, to an in-process node over gRPC on both engines.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients import builders as b
from clients.builders import Draft
from clients.errors import DraftError
from clients.keys import PartyKey, generate_key
from exchange.config import NodeConfig
from exchange.rules import REGISTER
from exchange.sample import REGIONS, credit_code, generate
from exchange.server import start_node
from exchange.service import ERROR_DOMAIN
from exchange.statements import verify
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.keys import load_key_file
from ledger.note import Signer, b64decode_canonical, b64encode
from tests.conftest import ORIGIN
from tests.exchange import story

OWNER, CO_OWNER, LICENSEE, BANK = (generate_key() for _ in range(4))
CODE = credit_code(random.Random(1), "440300")
NUMBER = "202013151952.8"  # a valid invention application number
ID = hashlib.sha256(b"an earlier statement").digest()
D1, D2 = dt.date(2026, 3, 1), dt.date(2027, 2, 28)
CNY_20K = b.lump_sum(2_000_000, "CNY")
ALL_KINDS = {f.name for f in pb.Statement.DESCRIPTOR.oneofs_by_name["body"].fields}


def _date(day: dt.date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


def _body(draft: Draft) -> object:
    return getattr(draft.parsed, draft.kind)


# For each kind: the draft a builder makes, the body its arguments describe,
# and the signers it must need.
CASES: dict[str, Callable[[], tuple[Draft, object, tuple[str, ...]]]] = {
    "party_registered": lambda: (
        b.register_party(
            public_key=OWNER.public_key, name="甲公司", kind=pb.PARTY_KIND_ENTERPRISE,
            region="440300", identity_code=CODE,
        ),
        pb.PartyRegistered(
            party_id=OWNER.party_id, name="甲公司", kind=pb.PARTY_KIND_ENTERPRISE,
            identity_code=CODE, public_key=OWNER.public_key, region="440300",
        ),
        (OWNER.party_id,),
    ),
    "party_key_rotated": lambda: (
        b.rotate_key(party_id=OWNER.party_id, new_public_key=CO_OWNER.public_key),
        pb.PartyKeyRotated(party_id=OWNER.party_id, new_public_key=CO_OWNER.public_key),
        (OWNER.party_id, OWNER.party_id),
    ),
    "role_granted": lambda: (
        b.grant_role(party_id=BANK.party_id, role=pb.ROLE_MEDIATOR, origin=ORIGIN),
        pb.RoleGranted(party_id=BANK.party_id, role=pb.ROLE_MEDIATOR),
        (f"operator:{ORIGIN}",),
    ),
    "patent_recorded": lambda: (
        b.record_patent(
            application_number=NUMBER, title="一种分布式存储系统", ipc=["G06F 16/00"],
            owners=[OWNER.party_id, CO_OWNER.party_id], filing_date=dt.date(2020, 10, 23),
            grant_date=dt.date(2022, 12, 18), expiry_date=dt.date(2040, 10, 23),
            status=pb.PATENT_STATUS_IN_FORCE, fees_paid_until=D2, region="440300",
        ),
        pb.PatentRecorded(
            application_number=NUMBER, title="一种分布式存储系统", ipc=["G06F 16/00"],
            owners=[OWNER.party_id, CO_OWNER.party_id], filing_date=_date(dt.date(2020, 10, 23)),
            grant_date=_date(dt.date(2022, 12, 18)), expiry_date=_date(dt.date(2040, 10, 23)),
            status=pb.PATENT_STATUS_IN_FORCE, fees_paid_until=_date(D2), region="440300",
        ),
        (REGISTER,),
    ),
    "patent_status_changed": lambda: (
        b.change_patent_status(
            application_number=NUMBER, change=pb.STATUS_CHANGE_FEES_PAID, effective_date=D1,
            fees_paid_until=D2, reference="CNIPA-1",
        ),
        pb.PatentStatusChanged(
            application_number=NUMBER, change=pb.STATUS_CHANGE_FEES_PAID,
            effective_date=_date(D1), fees_paid_until=_date(D2), reference="CNIPA-1",
        ),
        (REGISTER,),
    ),
    "offer_published": lambda: (
        b.publish_offer(
            application_number=NUMBER, terms=CNY_20K, licence_term_months=24,
            signers=[OWNER.party_id, CO_OWNER.party_id], description="分布式存储",
        ),
        pb.OfferPublished(
            application_number=NUMBER, terms=CNY_20K, licence_term_months=24,
            description="分布式存储",
        ),
        (OWNER.party_id, CO_OWNER.party_id),
    ),
    "offer_withdrawn": lambda: (
        b.withdraw_offer(offer_id=ID, signers=[OWNER.party_id], reason="licensed enough"),
        pb.OfferWithdrawn(offer_id=ID, reason="licensed enough"),
        (OWNER.party_id,),
    ),
    "license_accepted": lambda: (
        b.accept_offer(
            offer_id=ID, licensee=LICENSEE.party_id, terms=CNY_20K, start_date=D1,
            payment=b.paid(2_000_000, "CNY", D1, "TX-1"),
        ),
        pb.LicenseAccepted(
            offer_id=ID, licensee=LICENSEE.party_id, terms=CNY_20K, start_date=_date(D1),
            payment=pb.Payment(
                amount=pb.Money(amount_minor=2_000_000, currency="CNY"), reference="TX-1",
                paid_on=_date(D1),
            ),
        ),
        (LICENSEE.party_id,),
    ),
    "license_recorded": lambda: (
        b.record_licence(
            license_id=ID, recordal_number="2026440000001", recorded_on=D1,
            signers=[LICENSEE.party_id],
        ),
        pb.LicenseRecorded(license_id=ID, recordal_number="2026440000001", recorded_on=_date(D1)),
        (LICENSEE.party_id,),
    ),
    "license_granted": lambda: (
        b.grant_licence(
            application_number=NUMBER, licensors=[OWNER.party_id], licensee=LICENSEE.party_id,
            type=pb.LICENSE_TYPE_SOLE, start_date=D1, end_date=D2,
            terms=b.running(pb.ROYALTY_BASIS_SALES, rate_basis_points=350),
            contract_reference="LIC-1", also=[BANK.party_id],
        ),
        pb.LicenseGranted(
            application_number=NUMBER, licensors=[OWNER.party_id], licensee=LICENSEE.party_id,
            type=pb.LICENSE_TYPE_SOLE, start_date=_date(D1), end_date=_date(D2),
            terms=pb.RoyaltyTerms(
                running=pb.RunningRoyalty(basis=pb.ROYALTY_BASIS_SALES, rate_basis_points=350)
            ),
            contract_reference="LIC-1",
        ),
        (OWNER.party_id, LICENSEE.party_id, BANK.party_id),
    ),
    "transfer_registered": lambda: (
        b.register_transfer(
            application_number=NUMBER, assignors=[OWNER.party_id, CO_OWNER.party_id],
            assignees=[LICENSEE.party_id], price=b.money(100_000_000, "CNY"),
            contract_reference="TR-1",
        ),
        pb.TransferRegistered(
            application_number=NUMBER, assignors=[OWNER.party_id, CO_OWNER.party_id],
            assignees=[LICENSEE.party_id],
            price=pb.Money(amount_minor=100_000_000, currency="CNY"), contract_reference="TR-1",
        ),
        (OWNER.party_id, CO_OWNER.party_id, LICENSEE.party_id),
    ),
    "pledge_registered": lambda: (
        b.register_pledge(
            application_number=NUMBER, pledgors=[OWNER.party_id], pledgee=BANK.party_id,
            secured_minor=50_000_000, currency="CNY", debt_start=D1, debt_end=D2,
            contract_reference="LOAN-1",
        ),
        pb.PledgeRegistered(
            application_number=NUMBER, pledgors=[OWNER.party_id], pledgee=BANK.party_id,
            secured_amount=pb.Money(amount_minor=50_000_000, currency="CNY"),
            debt_start=_date(D1), debt_end=_date(D2), contract_reference="LOAN-1",
        ),
        (OWNER.party_id, BANK.party_id),
    ),
    "pledge_released": lambda: (
        b.release_pledge(pledge_id=ID, pledgee=BANK.party_id, reason="repaid"),
        pb.PledgeReleased(pledge_id=ID, reason="repaid"),
        (BANK.party_id,),
    ),
    "dispute_filed": lambda: (
        b.file_dispute(
            application_number=NUMBER, subject_id=ID, kind=pb.DISPUTE_KIND_PAYMENT,
            claimant=OWNER.party_id, respondents=[LICENSEE.party_id], summary="unpaid",
        ),
        pb.DisputeFiled(
            application_number=NUMBER, subject_id=ID, kind=pb.DISPUTE_KIND_PAYMENT,
            claimant=OWNER.party_id, respondents=[LICENSEE.party_id], summary="unpaid",
        ),
        (OWNER.party_id,),
    ),
    "mediation_recorded": lambda: (
        b.record_mediation(
            dispute_id=ID, mediator=BANK.party_id, outcome=pb.MEDIATION_OUTCOME_AGREEMENT,
            summary="paid within 30 days", concluded_on=D1,
        ),
        pb.MediationRecorded(
            dispute_id=ID, mediator=BANK.party_id, outcome=pb.MEDIATION_OUTCOME_AGREEMENT,
            summary="paid within 30 days", concluded_on=_date(D1),
        ),
        (BANK.party_id,),
    ),
    "credit_event_recorded": lambda: (
        b.record_credit_event(
            party_id=LICENSEE.party_id, kind=pb.CREDIT_EVENT_KIND_PAYMENT_DEFAULT,
            supervisor=BANK.party_id, evidence=[(ORIGIN, 7)], summary="unpaid",
            occurred_on=D1,
        ),
        pb.CreditEventRecorded(
            party_id=LICENSEE.party_id, kind=pb.CREDIT_EVENT_KIND_PAYMENT_DEFAULT,
            supervisor=BANK.party_id, evidence=[pb.EntryReference(origin=ORIGIN, index=7)],
            summary="unpaid", occurred_on=_date(D1),
        ),
        (BANK.party_id,),
    ),
    "credit_event_repaired": lambda: (
        b.repair_credit_event(event_id=ID, supervisor=BANK.party_id, summary="paid"),
        pb.CreditEventRepaired(event_id=ID, supervisor=BANK.party_id, summary="paid"),
        (BANK.party_id,),
    ),
}  # fmt: skip


def test_the_cases_cover_every_statement_kind() -> None:
    assert set(CASES) == ALL_KINDS


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_builder_makes_the_statement_its_arguments_describe(kind: str) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    draft, body, needs = CASES[kind]()
    statement = draft.parsed
    assert draft.kind == kind
    assert getattr(statement, kind) == body
    assert draft.needs == needs
    assert draft.missing == needs
    assert draft.signatures == ()
    assert len(statement.nonce) == 16
    created = statement.created_at.ToDatetime(tzinfo=dt.UTC)
    assert before <= created <= dt.datetime.now(dt.UTC)
    # Serialised once: the bytes are the draft's, not a re-serialisation.
    assert draft.signed().statement == draft.statement


def test_two_drafts_of_the_same_intent_are_two_statements() -> None:
    first, _, _ = CASES["offer_withdrawn"]()
    second, _, _ = CASES["offer_withdrawn"]()
    assert first.parsed.nonce != second.parsed.nonce
    assert first.statement_id != second.statement_id


def test_a_builder_refuses_a_malformed_statement_naming_the_field() -> None:
    with pytest.raises(DraftError, match=r"^offer_published\.licence_term_months: 0") as caught:
        b.publish_offer(
            application_number=NUMBER, terms=CNY_20K, licence_term_months=0,
            signers=[OWNER.party_id],
        )  # fmt: skip
    assert caught.value.__cause__ is not None
    with pytest.raises(DraftError, match=r"pledge_registered\.pledgee"):
        b.register_pledge(
            application_number=NUMBER, pledgors=[OWNER.party_id], pledgee=OWNER.party_id,
            secured_minor=1, currency="CNY", debt_start=D1, debt_end=D2,
        )  # fmt: skip
    with pytest.raises(DraftError, match="licence_term_months: -1"):
        b.publish_offer(
            application_number=NUMBER, terms=CNY_20K, licence_term_months=-1,
            signers=[OWNER.party_id],
        )  # fmt: skip


def test_signers_given_as_one_string_or_not_as_signer_names_are_refused() -> None:
    with pytest.raises(DraftError, match="not one string"):
        b.withdraw_offer(offer_id=ID, signers=OWNER.party_id)
    with pytest.raises(DraftError, match="is not a signer"):
        b.withdraw_offer(offer_id=ID, signers=["the owner"])


def test_royalty_helpers_build_each_payment_method_and_refuse_bad_terms() -> None:
    assert b.lump_sum(100, "CNY").lump_sum == pb.Money(amount_minor=100, currency="CNY")
    plan = b.instalments([(0, 100), (12, 200)], "CNY").instalments.instalments
    assert [(i.due_after_months, i.amount.amount_minor) for i in plan] == [(0, 100), (12, 200)]
    per_unit = b.running(pb.ROYALTY_BASIS_UNITS, per_unit=b.money(50, "CNY")).running
    assert per_unit.per_unit.amount_minor == 50
    both = b.entry_fee_and_royalty(
        10_000, "CNY", pb.ROYALTY_BASIS_PROFIT, rate_basis_points=500
    ).entry_fee_and_royalty
    assert (both.entry_fee.amount_minor, both.royalty.rate_basis_points) == (10_000, 500)
    assert b.free().WhichOneof("method") == "free"
    with pytest.raises(DraftError, match="rate_basis_points"):
        b.running(pb.ROYALTY_BASIS_SALES, rate_basis_points=0)
    with pytest.raises(DraftError, match="either a rate"):
        b.running(pb.ROYALTY_BASIS_SALES, rate_basis_points=10, per_unit=b.money(1, "CNY"))
    with pytest.raises(DraftError, match=r"lump_sum\.amount_minor"):
        b.lump_sum(0, "CNY")
    with pytest.raises(DraftError, match="amount_minor: -5"):
        b.money(-5, "CNY")
    with pytest.raises(DraftError, match="has no instalment"):
        b.instalments([], "CNY")


def _transfer() -> Draft:
    """A transfer of a pledged patent: assignor, assignee and the pledgee must sign."""
    return b.register_transfer(
        application_number=NUMBER, assignors=[OWNER.party_id], assignees=[LICENSEE.party_id],
        contract_reference="TR-1", also=[BANK.party_id],
    )  # fmt: skip


def test_a_draft_passes_through_files_from_party_to_party(tmp_path: Path) -> None:
    path = tmp_path / "transfer.json"
    _transfer().sign(OWNER).save(path)
    Draft.load(path).sign(LICENSEE).save(path)
    draft = Draft.load(path).sign(BANK)
    draft.save(path)
    final = Draft.load(path)
    assert final.missing == ()
    final.check_complete()
    signed = final.signed()
    assert signed.statement == draft.statement
    keys = {OWNER.party_id: OWNER, LICENSEE.party_id: LICENSEE, BANK.party_id: BANK}
    assert [s.signer for s in signed.signatures] == list(keys)
    for signature in signed.signatures:
        verify(signed.statement, signature, keys[signature.signer].public_key)
    signed.signatures[0].signer = BANK.party_id  # a copy: the draft keeps its own
    assert final.signers[0] == OWNER.party_id
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writes left no temporary behind


def test_a_draft_file_is_the_documented_json(tmp_path: Path) -> None:
    path = tmp_path / "transfer.json"
    draft = _transfer().sign(OWNER)
    draft.save(path)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document == {
        "format": "kaifang-draft/v1",
        "kind": "transfer_registered",
        "statement_id": draft.statement_id.hex(),
        "statement": b64encode(draft.statement),
        "needs": [OWNER.party_id, LICENSEE.party_id, BANK.party_id],
        "signatures": [
            {
                "signer": OWNER.party_id,
                "key_fingerprint": b64encode(draft.signatures[0].key_fingerprint),
                "signature": b64encode(draft.signatures[0].signature),
            }
        ],
    }
    assert path.stat().st_mode & 0o777 == 0o600


def test_describe_names_kind_subject_signers_and_who_is_missing() -> None:
    text = _transfer().sign(OWNER).describe()
    assert f"transfer_registered: patent {NUMBER}" in text
    assert f"signed by: {OWNER.party_id}" in text
    assert f"missing: {LICENSEE.party_id}, {BANK.party_id}" in text
    with pytest.raises(DraftError, match=f"still needs the signature of {LICENSEE.party_id}"):
        _transfer().sign(OWNER).check_complete()


def test_signing_twice_as_the_same_signer_is_refused() -> None:
    draft = _transfer().sign(OWNER)
    with pytest.raises(DraftError, match="already signed"):
        draft.sign(OWNER)
    # Another key claiming the same name is a second signature of that signer too.
    with pytest.raises(DraftError, match="already signed"):
        draft.sign(CO_OWNER, signer=OWNER.party_id)


def test_a_signer_the_draft_does_not_need_is_refused() -> None:
    with pytest.raises(DraftError, match="is not among the signers"):
        _transfer().sign(CO_OWNER)


def test_a_note_key_must_be_told_whom_it_signs_for() -> None:
    register = Signer.generate(REGISTER)
    draft, _, _ = CASES["patent_recorded"]()
    with pytest.raises(DraftError, match="say whom"):
        draft.sign(register)
    signed = draft.sign(register, REGISTER)
    verify(signed.statement, signed.signatures[0], register.public_key)


def test_a_key_rotation_is_signed_by_the_old_key_and_then_the_new() -> None:
    old, new = generate_key(), generate_key()
    draft = b.rotate_key(party_id=old.party_id, new_public_key=new.public_key)
    with pytest.raises(DraftError, match="already signed this draft with this key"):
        draft.sign(old).sign(old)
    with pytest.raises(DraftError, match="with the new key too"):
        draft.sign(old).sign(generate_key(), signer=old.party_id)
    done = draft.sign(old).sign(new)  # the new key signs for the party by default
    assert done.signers == (old.party_id, old.party_id)
    assert done.missing == ()


def test_a_loaded_signature_the_statement_can_check_is_checked(tmp_path: Path) -> None:
    draft, _, _ = CASES["party_registered"]()
    path = tmp_path / "register.json"
    forged = pb.Signature(
        signer=OWNER.party_id,
        key_fingerprint=draft.sign(OWNER).signatures[0].key_fingerprint,
        signature=bytes(64),
    )
    document = json.loads(draft.to_json())
    document["signatures"] = [
        {
            "signer": forged.signer,
            "key_fingerprint": b64encode(forged.key_fingerprint),
            "signature": b64encode(forged.signature),
        }
    ]
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(DraftError, match=r"signatures\[0\]: .* does not verify"):
        Draft.load(path)


def _tampered(tmp_path: Path, change: Callable[[dict[str, object]], object]) -> Path:
    path = tmp_path / "draft.json"
    document = json.loads(_transfer().sign(OWNER).to_json())
    change(document)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _flip_a_byte(document: dict[str, object]) -> None:
    raw = bytearray(b64decode_canonical(str(document["statement"])))
    at = raw.index(b"TR-1")
    raw[at : at + 4] = b"TR-9"  # still a well-formed statement, but not the one signed
    document["statement"] = b64encode(bytes(raw))


def _truncate(document: dict[str, object]) -> None:
    document["statement"] = b64encode(b64decode_canonical(str(document["statement"]))[:-3])
    del document["statement_id"]


TAMPERING: dict[str, tuple[Callable[[dict[str, object]], object], str]] = {
    "statement byte changed": (_flip_a_byte, "statement_id does not match"),
    "statement cut short": (_truncate, "the statement is malformed"),
    "wrong format": (lambda d: d.update(format="kaifang-draft/v0"), "format is 'kaifang-draft/v0'"),
    "kind differs": (lambda d: d.update(kind="pledge_registered"), "but the statement is a"),
    "unknown field": (lambda d: d.update(extra=1), "unknown field 'extra'"),
    "needs missing": (lambda d: d.pop("needs"), "'needs' is missing"),
    "needs not names": (lambda d: d.update(needs=[1]), "needs is not a list"),
    "statement not base64": (lambda d: d.update(statement="@@"), "not canonical base64"),
    "signature too short": (
        lambda d: d["signatures"][0].update(signature=b64encode(bytes(10))),  # type: ignore[index]
        r"signatures\[0\]\.signature is 10 bytes",
    ),
    "signature duplicated": (
        lambda d: d["signatures"].append(d["signatures"][0]),  # type: ignore[attr-defined,index]
        r"signatures\[1\]: .* already signed",
    ),
    "signer not needed": (
        lambda d: d["signatures"][0].update(signer=CO_OWNER.party_id),  # type: ignore[index]
        "is not among the signers",
    ),
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_a_damaged_draft_file_is_refused_naming_the_problem(tmp_path: Path, how: str) -> None:
    change, message = TAMPERING[how]
    path = _tampered(tmp_path, change)
    with pytest.raises(DraftError, match=message) as caught:
        Draft.load(path)
    assert str(caught.value).startswith(str(path))


def test_a_file_that_is_not_json_or_is_missing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "draft.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DraftError, match="is not JSON"):
        Draft.load(path)
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(DraftError, match="not a JSON object"):
        Draft.load(path)
    with pytest.raises(DraftError, match="cannot be read"):
        Draft.load(tmp_path / "nowhere.json")


# Every kind, admitted by a real node.


@dataclass
class Desk:
    """A node, the register's and operator's keys, and the kinds admitted so far."""

    stub: exchange_pb2_grpc.ExchangeServiceAsyncStub
    register: Signer
    operator: Signer
    admitted: list[str] = field(default_factory=list)

    async def submit(self, draft: Draft) -> bytes:
        """Submit a complete draft; it must be sequenced now. Returns its id."""
        draft.check_complete()
        response = await self.stub.SubmitStatement(
            api.SubmitStatementRequest(signed=draft.signed())
        )
        assert not response.duplicate
        assert response.statement_id == draft.statement_id
        self.admitted.append(draft.kind)
        return response.statement_id


@pytest.fixture
async def desk(db_url: str, tmp_path: Path) -> AsyncIterator[Desk]:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )
    async with (
        start_node(config) as node,
        grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel,
    ):
        # The node creates its operator and register keys next to its log key.
        yield Desk(
            exchange_pb2_grpc.ExchangeServiceStub(channel),
            load_key_file(config.register_key_file()),
            load_key_file(config.operator_key_file()),
        )


def _py(day: pb.Date) -> dt.date:
    return dt.date(day.year, day.month, day.day)


def _days(n: int) -> dt.date:
    return story.today() + dt.timedelta(days=n)


async def _register(desk: Desk, kind: pb.PartyKind.ValueType, rng: random.Random) -> PartyKey:
    key = generate_key()
    region = rng.choice(REGIONS)
    code = "" if kind == pb.PARTY_KIND_INDIVIDUAL else credit_code(rng, region)
    draft = b.register_party(
        public_key=key.public_key, name=f"party {rng.randrange(10**6)}", kind=kind,
        region=region, identity_code=code,
    )  # fmt: skip
    await desk.submit(draft.sign(key))
    return key


async def test_a_statement_of_every_kind_built_here_is_admitted(desk: Desk, tmp_path: Path) -> None:
    rng = random.Random(5)
    owner, licensee, buyer, mediator, supervisor = [
        await _register(desk, pb.PARTY_KIND_ENTERPRISE, rng) for _ in range(5)
    ]
    bank = await _register(desk, pb.PARTY_KIND_BANK, rng)
    debtor = await _register(desk, pb.PARTY_KIND_INDIVIDUAL, rng)
    operator = f"operator:{ORIGIN}"

    rotated = generate_key()
    rotation = b.rotate_key(party_id=debtor.party_id, new_public_key=rotated.public_key)
    await desk.submit(rotation.sign(debtor).sign(rotated))
    for who, role in ((mediator, pb.ROLE_MEDIATOR), (supervisor, pb.ROLE_SUPERVISOR)):
        grant = b.grant_role(party_id=who.party_id, role=role, origin=ORIGIN)
        await desk.submit(grant.sign(desk.operator, operator))

    numbers = []
    for patent in generate(9, parties=1, patents=3).patents:
        record = b.record_patent(
            application_number=patent.application_number, title=patent.title,
            ipc=list(patent.ipc), owners=[owner.party_id],
            filing_date=_py(patent.filing_date), grant_date=_py(patent.grant_date),
            expiry_date=_days(12 * 365), status=pb.PATENT_STATUS_IN_FORCE,
            fees_paid_until=_days(365), region=patent.region,
        )  # fmt: skip
        await desk.submit(record.sign(desk.register, REGISTER))
        numbers.append(patent.application_number)
    offered, granted, pledged = numbers
    paid_up = b.change_patent_status(
        application_number=granted, change=pb.STATUS_CHANGE_FEES_PAID, effective_date=_days(0),
        fees_paid_until=_days(2 * 365), reference="CNIPA-2026-1",
    )  # fmt: skip
    await desk.submit(paid_up.sign(desk.register, REGISTER))

    # An open licence: declared, accepted, recorded, then withdrawn.
    terms = b.lump_sum(2_000_000, "CNY")
    offer = b.publish_offer(
        application_number=offered, terms=terms, licence_term_months=24,
        signers=[owner.party_id], evaluation_report="EVAL-2026-001",
    )  # fmt: skip
    offer_id = await desk.submit(offer.sign(owner))
    acceptance = b.accept_offer(
        offer_id=offer_id, licensee=licensee.party_id, terms=terms, start_date=_days(0),
        payment=b.paid(2_000_000, "CNY", _days(0), "TX-1"),
    )  # fmt: skip
    licence_id = await desk.submit(acceptance.sign(licensee))
    recordal = b.record_licence(
        license_id=licence_id, recordal_number="2026440000001", recorded_on=_days(0),
        signers=[licensee.party_id],
    )  # fmt: skip
    await desk.submit(recordal.sign(licensee))
    withdrawal = b.withdraw_offer(offer_id=offer_id, signers=[owner.party_id], reason="enough")
    await desk.submit(withdrawal.sign(owner))

    # A negotiated licence.
    negotiated = b.grant_licence(
        application_number=granted, licensors=[owner.party_id], licensee=licensee.party_id,
        type=pb.LICENSE_TYPE_ORDINARY, start_date=_days(0), end_date=_days(365),
        terms=b.entry_fee_and_royalty(
            100_000, "CNY", pb.ROYALTY_BASIS_SALES, rate_basis_points=300
        ),
        contract_reference="LIC-1",
    )  # fmt: skip
    await desk.submit(negotiated.sign(owner).sign(licensee))

    # A pledge drafted by the owner and passed to the bank as a file.
    path = tmp_path / "pledge.json"
    b.register_pledge(
        application_number=pledged, pledgors=[owner.party_id], pledgee=bank.party_id,
        secured_minor=50_000_000, currency="CNY", debt_start=_days(0), debt_end=_days(365),
        contract_reference="LOAN-1",
    ).sign(owner).save(path)  # fmt: skip
    await _refused_for_want_of(desk, Draft.load(path), bank.party_id)
    Draft.load(path).sign(bank).save(path)
    pledge_id = await desk.submit(Draft.load(path))

    # Pledged, so the bank consents to the transfer; then releases the pledge.
    transfer = b.register_transfer(
        application_number=pledged, assignors=[owner.party_id], assignees=[buyer.party_id],
        price=b.money(80_000_000, "CNY"), contract_reference="TR-1", also=[bank.party_id],
    )  # fmt: skip
    await desk.submit(transfer.sign(owner).sign(buyer).sign(bank))
    release = b.release_pledge(pledge_id=pledge_id, pledgee=bank.party_id, reason="repaid")
    await desk.submit(release.sign(bank))

    # A dispute about the open licence, mediated; a credit event, repaired.
    dispute = b.file_dispute(
        application_number=offered, subject_id=licence_id, kind=pb.DISPUTE_KIND_OPEN_LICENSE,
        claimant=licensee.party_id, respondents=[owner.party_id],
        summary="the licensor refuses the technical documents",
    )  # fmt: skip
    dispute_id = await desk.submit(dispute.sign(licensee))
    mediation = b.record_mediation(
        dispute_id=dispute_id, mediator=mediator.party_id,
        outcome=pb.MEDIATION_OUTCOME_AGREEMENT, summary="documents within 30 days",
        concluded_on=_days(0),
    )  # fmt: skip
    await desk.submit(mediation.sign(mediator))
    event = b.record_credit_event(
        party_id=debtor.party_id, kind=pb.CREDIT_EVENT_KIND_PAYMENT_DEFAULT,
        supervisor=supervisor.party_id, evidence=[(ORIGIN, 0)], summary="royalty unpaid",
        occurred_on=_days(0),
    )  # fmt: skip
    event_id = await desk.submit(event.sign(supervisor))
    repair = b.repair_credit_event(
        event_id=event_id, supervisor=supervisor.party_id, summary="paid in full"
    )
    await desk.submit(repair.sign(supervisor))

    assert set(desk.admitted) == ALL_KINDS
    state = await desk.stub.GetPatent(api.GetPatentRequest(application_number=pledged))
    assert list(state.owners) == [buyer.party_id]
    assert not state.pledgee
    credit = await desk.stub.GetCreditRecord(api.GetCreditRecordRequest(party_id=debtor.party_id))
    assert credit.outstanding == 0


async def _refused_for_want_of(desk: Desk, draft: Draft, missing: str) -> None:
    """Submitting ``draft`` as it stands must be refused: ``missing`` has not signed."""
    assert draft.missing == (missing,)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await desk.stub.SubmitStatement(api.SubmitStatementRequest(signed=draft.signed()))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value.details()
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.domain, info.reason) == (ERROR_DOMAIN, "SIGNATURE_MISSING")
    assert dict(info.metadata)["missing"] == missing
