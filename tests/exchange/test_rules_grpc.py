"""The legal rules of open licensing on a real node over gRPC, on both engines.

For each rule, the lawful statement is admitted and the unlawful one is
refused: FAILED_PRECONDITION when a legal rule refuses it, PERMISSION_DENIED
when a signature the law requires is missing, each with its stable reason in
the ``google.rpc.ErrorInfo`` and the provision relied on in the metadata
``legal_basis``; and a refusal writes nothing (the log's size and every table
of the database are as they were). The provisions are compared with the
constants of :mod:`exchange.rules` and :mod:`exchange.parties`, so that a
refusal citing another provision than the one the rule names fails.

Where the block can be lifted, the very bytes refused earlier are submitted
again and admitted: the refusal left nothing behind (not even a dedup entry),
and it was the block, not the statement, that was wrong.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from exchange import parties, rules
from exchange.config import NodeConfig
from exchange.rules import REGISTER
from exchange.sample import SampleParty, generate
from exchange.server import RunningNode, start_node
from exchange.service import ERROR_DOMAIN
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.keys import load_key_file
from ledger.note import Signer
from tests.conftest import ORIGIN
from tests.exchange import story

CNY_30K = pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=3_000_000, currency="CNY"))
SUSPENSIONS = [
    pb.STATUS_CHANGE_SUSPENDED_OWNERSHIP_DISPUTE,
    pb.STATUS_CHANGE_SUSPENDED_COURT_PRESERVATION,
]


@dataclass
class Desk:
    """A node with eight registered parties, and how to submit to it and check refusals."""

    node: RunningNode
    stub: exchange_pb2_grpc.ExchangeServiceAsyncStub
    register: Signer
    operator: Signer
    patents: list[pb.PatentRecorded]
    owner: SampleParty
    co_owner: SampleParty
    licensee: SampleParty
    buyer: SampleParty
    bank: SampleParty
    mediator: SampleParty
    supervisor: SampleParty
    debtor: SampleParty

    def number(self, i: int) -> str:
        return self.patents[i].application_number

    async def admit(self, signed: pb.SignedStatement) -> bytes:
        """Submit ``signed``; it must be sequenced now (not a duplicate). Returns its id."""
        response = await self.stub.SubmitStatement(api.SubmitStatementRequest(signed=signed))
        assert not response.duplicate
        assert response.statement_id == statement_id(signed.statement)
        return response.statement_id

    async def record(self, i: int, *owners: SampleParty) -> str:
        """The register records patent ``i`` as owned by ``owners`` (the owner by default)."""
        await self.admit(story.record(self.patents[i], list(owners or [self.owner]), self.register))
        return self.number(i)

    async def patent(self, number: str) -> api.GetPatentResponse:
        return await self.stub.GetPatent(api.GetPatentRequest(application_number=number))

    async def refuse(
        self, signed: pb.SignedStatement, code: grpc.StatusCode, reason: str
    ) -> error_details_pb2.ErrorInfo:
        """Submit ``signed``; it must be refused with ``code`` and ``reason``, writing nothing."""
        size = (await self.node.store.latest_checkpoint()).size
        before = await story.database_digest(self.node.exchange.db)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await self.stub.SubmitStatement(api.SubmitStatementRequest(signed=signed))
        assert refused.value.code() == code, refused.value.details()
        status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
        assert status is not None
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        assert (info.domain, info.reason) == (ERROR_DOMAIN, reason), status.message
        assert (await self.node.store.latest_checkpoint()).size == size
        assert await story.database_digest(self.node.exchange.db) == before
        return info

    async def rule(self, signed: pb.SignedStatement, reason: str, basis: str, field: str) -> None:
        """A legal rule must refuse ``signed`` at ``field``, citing ``basis``."""
        info = await self.refuse(signed, grpc.StatusCode.FAILED_PRECONDITION, reason)
        assert basis  # a provision, never an empty string
        assert dict(info.metadata) == {"field": field, "legal_basis": basis}

    async def unsigned(self, signed: pb.SignedStatement, missing: set[str], basis: str) -> None:
        """``signed`` must be refused for want of signatures by ``missing``, citing ``basis``."""
        info = await self.refuse(signed, grpc.StatusCode.PERMISSION_DENIED, "SIGNATURE_MISSING")
        assert basis
        assert dict(info.metadata) == {"missing": ",".join(sorted(missing)), "legal_basis": basis}


@pytest.fixture
async def desk(db_url: str, tmp_path: Path) -> AsyncIterator[Desk]:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )
    async with (
        start_node(config) as node,
        grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel,
    ):
        sample = generate(51, parties=8, patents=3)
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        registered = await stub.SubmitStatements(
            api.SubmitStatementsRequest(signed=[story.registration(p) for p in sample.parties])
        )
        assert all(o.WhichOneof("result") == "submitted" for o in registered.outcomes)
        # The node keeps its operator and register keys next to its log key.
        yield Desk(
            node, stub, load_key_file(tmp_path / "register.key"),
            load_key_file(tmp_path / "operator.key"), list(sample.patents), *sample.parties,
        )  # fmt: skip


def _days(n: int) -> dt.date:
    return story.today() + dt.timedelta(days=n)


def _date(day: pb.Date) -> dt.date:
    return dt.date(day.year, day.month, day.day)


async def test_a_pledge_blocks_a_transfer_until_the_pledgee_co_signs(desk: Desk) -> None:
    number = await desk.record(0)
    await desk.admit(story.pledge(number, [desk.owner], desk.bank))
    await desk.unsigned(
        story.transfer(number, [desk.owner], [desk.buyer]), {desk.bank.party_id}, rules.CIVIL_444
    )
    await desk.admit(story.transfer(number, [desk.owner], [desk.buyer], desk.bank))
    state = await desk.patent(number)
    assert list(state.owners) == [desk.buyer.party_id]
    assert state.pledgee == desk.bank.party_id  # the pledge follows the right


async def test_a_pledge_blocks_a_declaration_until_the_pledgee_consents(desk: Desk) -> None:
    number = await desk.record(0)
    await desk.admit(story.pledge(number, [desk.owner], desk.bank))
    await desk.unsigned(story.offer(number, [desk.owner]), {desk.bank.party_id}, rules.REGS_86)
    await desk.admit(story.offer(number, [desk.owner, desk.bank]))


async def test_an_exclusive_licence_blocks_a_declaration(desk: Desk) -> None:
    exclusive, ordinary = await desk.record(0), await desk.record(1)
    await desk.admit(
        story.grant(exclusive, [desk.owner], desk.licensee, pb.LICENSE_TYPE_EXCLUSIVE, _days(365))
    )
    await desk.rule(
        story.offer(exclusive, [desk.owner]), "EXCLUSIVE_LICENSE_IN_FORCE", rules.REGS_86,
        "offer_published.application_number",
    )  # fmt: skip
    # An ordinary licence leaves the patentee free to license everyone.
    await desk.admit(
        story.grant(ordinary, [desk.owner], desk.licensee, pb.LICENSE_TYPE_ORDINARY, _days(365))
    )
    await desk.admit(story.offer(ordinary, [desk.owner]))


async def test_a_declaration_blocks_exclusive_and_sole_licences(desk: Desk) -> None:
    number = await desk.record(0)
    offer_id = await desk.admit(story.offer(number, [desk.owner]))
    refused = {}
    for kind in (pb.LICENSE_TYPE_EXCLUSIVE, pb.LICENSE_TYPE_SOLE):
        refused[kind] = story.grant(number, [desk.owner], desk.licensee, kind, _days(365))
        await desk.rule(refused[kind], "OPEN_LICENSE_ACTIVE", rules.ART_51, "license_granted.type")
    await desk.admit(story.withdrawal(offer_id, [desk.owner]))
    await desk.admit(refused[pb.LICENSE_TYPE_EXCLUSIVE])
    assert (await desk.patent(number)).licences[0].type == pb.LICENSE_TYPE_EXCLUSIVE


@pytest.mark.parametrize("suspension", SUSPENSIONS, ids=pb.StatusChange.Name)
async def test_a_suspension_blocks_transfers_pledges_and_declarations_until_lifted(
    desk: Desk, suspension: pb.StatusChange.ValueType
) -> None:
    number = await desk.record(0)
    await desk.admit(story.status_change(number, suspension, desk.register))
    assert list((await desk.patent(number)).suspensions) == [suspension]
    offer = story.offer(number, [desk.owner])
    pledge = story.pledge(number, [desk.owner], desk.bank)
    await desk.rule(
        story.transfer(number, [desk.owner], [desk.buyer]), "PROCEDURES_SUSPENDED",
        rules.REGS_103, "transfer_registered.application_number",
    )  # fmt: skip
    await desk.rule(
        pledge, "PROCEDURES_SUSPENDED", rules.PLEDGE_MEASURES,
        "pledge_registered.application_number",
    )  # fmt: skip
    await desk.rule(
        offer, "PROCEDURES_SUSPENDED", rules.REGS_86, "offer_published.application_number"
    )
    lift = story.status_change(
        number, pb.STATUS_CHANGE_SUSPENSION_LIFTED, desk.register, lifted=suspension
    )
    await desk.admit(lift)
    await desk.rule(
        story.status_change(
            number, pb.STATUS_CHANGE_SUSPENSION_LIFTED, desk.register, lifted=suspension
        ),
        "NOT_SUSPENDED", rules.REGS_103, "patent_status_changed.lifted",
    )  # fmt: skip
    await desk.admit(offer)
    await desk.admit(pledge)
    # Pledged now, so the pledgee co-signs the transfer.
    await desk.admit(story.transfer(number, [desk.owner], [desk.buyer], desk.bank))


async def test_an_overdue_fee_blocks_a_declaration_until_paid(desk: Desk) -> None:
    number = await desk.record(0)
    await desk.admit(story.status_change(number, pb.STATUS_CHANGE_FEE_UNPAID, desk.register))
    offer = story.offer(number, [desk.owner])
    await desk.rule(offer, "FEES_UNPAID", rules.REGS_86, "offer_published.application_number")
    paid = story.status_change(
        number, pb.STATUS_CHANGE_FEES_PAID, desk.register, fees_paid_until=_days(365)
    )
    await desk.admit(paid)
    await desk.admit(offer)


async def test_fees_paid_only_to_a_past_day_block_a_declaration(desk: Desk) -> None:
    number = desk.number(0)
    await desk.admit(
        story.record_with(desk.patents[0], [desk.owner], desk.register, fees_paid_until=_days(-1))
    )
    assert (await desk.patent(number)).status == pb.PATENT_STATUS_IN_FORCE  # yet not paid up
    offer = story.offer(number, [desk.owner])
    await desk.rule(offer, "FEES_UNPAID", rules.ART_50, "offer_published.application_number")
    paid = story.status_change(
        number, pb.STATUS_CHANGE_FEES_PAID, desk.register, fees_paid_until=_days(365)
    )
    await desk.admit(paid)
    await desk.admit(offer)


async def test_a_lapsed_patent_is_not_offered_transferred_or_pledged_until_restored(
    desk: Desk,
) -> None:
    number = await desk.record(0)
    await desk.admit(story.status_change(number, pb.STATUS_CHANGE_LAPSED, desk.register))
    offer = story.offer(number, [desk.owner])
    await desk.rule(
        offer, "PATENT_NOT_IN_FORCE", rules.ART_50, "offer_published.application_number"
    )
    await desk.rule(
        story.transfer(number, [desk.owner], [desk.buyer]), "PATENT_NOT_IN_FORCE", rules.ART_10,
        "transfer_registered.application_number",
    )  # fmt: skip
    await desk.rule(
        story.pledge(number, [desk.owner], desk.bank), "PATENT_NOT_IN_FORCE",
        rules.PLEDGE_MEASURES, "pledge_registered.application_number",
    )  # fmt: skip
    await desk.admit(story.status_change(number, pb.STATUS_CHANGE_RESTORED, desk.register))
    await desk.admit(offer)


async def test_a_patent_past_its_term_is_not_offered(desk: Desk) -> None:
    patent = desk.patents[0]
    filed = _date(patent.filing_date)
    await desk.admit(
        story.record_with(
            patent, [desk.owner], desk.register, grant_date=filed, expiry_date=_days(-1)
        )
    )
    await desk.rule(
        story.offer(patent.application_number, [desk.owner]), "PATENT_EXPIRED", rules.ART_50,
        "offer_published.application_number",
    )  # fmt: skip


async def test_a_licence_or_a_debt_beyond_the_patents_term_is_refused(desk: Desk) -> None:
    number = await desk.record(0)
    expiry = _date((await desk.patent(number)).expiry_date)
    late = expiry + dt.timedelta(days=1)
    ordinary = pb.LICENSE_TYPE_ORDINARY
    await desk.rule(
        story.grant(number, [desk.owner], desk.licensee, ordinary, late),
        "TERM_BEYOND_EXPIRY", rules.CIVIL_865, "license_granted.end_date",
    )  # fmt: skip
    await desk.rule(
        story.pledge_until(number, [desk.owner], desk.bank, late),
        "TERM_BEYOND_EXPIRY", rules.PLEDGE_MEASURES, "pledge_registered.debt_end",
    )  # fmt: skip
    # Up to and including the last day of the term is lawful.
    await desk.admit(story.grant(number, [desk.owner], desk.licensee, ordinary, expiry))
    await desk.admit(story.pledge_until(number, [desk.owner], desk.bank, expiry))


async def test_an_acceptance_on_stale_terms_is_refused(desk: Desk) -> None:
    number = await desk.record(0)
    first = await desk.admit(story.offer(number, [desk.owner], story.CNY_20K))
    await desk.admit(story.withdrawal(first, [desk.owner]))
    current = await desk.admit(story.offer(number, [desk.owner], CNY_30K))
    # The licensee read the first declaration: its terms are no longer the terms in force.
    await desk.rule(
        story.acceptance(current, desk.licensee, story.CNY_20K), "TERMS_NOT_IN_FORCE",
        rules.ART_51, "license_accepted.terms",
    )  # fmt: skip
    await desk.rule(
        story.acceptance(first, desk.licensee, story.CNY_20K), "OFFER_NOT_ACTIVE",
        rules.ART_50, "license_accepted.offer_id",
    )  # fmt: skip
    await desk.admit(story.acceptance(current, desk.licensee, CNY_30K))
    assert (await desk.patent(number)).active_offer.acceptances == 1


async def test_co_owners_must_all_declare_and_all_assign(desk: Desk) -> None:
    number = await desk.record(0, desk.owner, desk.co_owner)
    await desk.unsigned(story.offer(number, [desk.owner]), {desk.co_owner.party_id}, rules.ART_14)
    await desk.rule(
        story.transfer(number, [desk.owner], [desk.buyer]), "ASSIGNORS_NOT_OWNERS",
        rules.ART_14, "transfer_registered.assignors",
    )  # fmt: skip
    await desk.admit(story.offer(number, [desk.owner, desk.co_owner]))
    await desk.admit(story.transfer(number, [desk.owner, desk.co_owner], [desk.buyer]))


async def test_only_a_party_granted_the_mediator_role_records_a_mediation(desk: Desk) -> None:
    number = await desk.record(0)
    offer_id = await desk.admit(story.offer(number, [desk.owner]))
    licence_id = await desk.admit(story.acceptance(offer_id, desk.licensee))
    dispute_id = await desk.admit(story.dispute(number, licence_id, desk.licensee, [desk.owner]))
    mediation = story.mediation(dispute_id, desk.mediator)
    await desk.rule(mediation, "NOT_A_MEDIATOR", rules.ART_52, "mediation_recorded.mediator")
    # The supervisor role is not the mediator role.
    await desk.admit(story.role(desk.mediator, pb.ROLE_SUPERVISOR, desk.operator, ORIGIN))
    await desk.rule(mediation, "NOT_A_MEDIATOR", rules.ART_52, "mediation_recorded.mediator")
    await desk.admit(story.role(desk.mediator, pb.ROLE_MEDIATOR, desk.operator, ORIGIN))
    await desk.admit(mediation)


async def test_only_a_party_granted_the_supervisor_role_records_credit_events(desk: Desk) -> None:
    evidence = pb.EntryReference(origin=ORIGIN, index=0)
    event = story.credit_event(desk.debtor, desk.supervisor, evidence)
    field = "credit_event_recorded.supervisor"
    await desk.rule(event, "NOT_A_SUPERVISOR", parties.CREDIT_PROVISIONS, field)
    await desk.admit(story.role(desk.supervisor, pb.ROLE_MEDIATOR, desk.operator, ORIGIN))
    await desk.rule(event, "NOT_A_SUPERVISOR", parties.CREDIT_PROVISIONS, field)
    await desk.admit(story.role(desk.supervisor, pb.ROLE_SUPERVISOR, desk.operator, ORIGIN))
    await desk.admit(event)
    record = await desk.stub.GetCreditRecord(
        api.GetCreditRecordRequest(party_id=desk.debtor.party_id)
    )
    assert record.outstanding == 1


async def test_nobody_appoints_themself_only_the_operator_key_grants_roles(desk: Desk) -> None:
    who = desk.supervisor
    operator = f"{parties.OPERATOR_PREFIX}{ORIGIN}"

    def grant(*signers: tuple[str, SampleParty | Signer]) -> pb.SignedStatement:
        body = pb.RoleGranted(party_id=who.party_id, role=pb.ROLE_SUPERVISOR)
        return story.signed(pb.Statement(role_granted=body), *signers)

    # Signed by the party itself, or by the register: no operator signed at all.
    for signers in ((who.party_id, who), (REGISTER, desk.register)):
        await desk.unsigned(grant(signers), {parties.OPERATOR_PREFIX + "*"}, parties.REGISTRATION)
    # The party's own key claiming to be the operator, and an operator this node
    # does not know: signatures that do not stand for any operator's key.
    stranger = f"{parties.OPERATOR_PREFIX}elsewhere.example/log"
    for signers in ((operator, who), (stranger, desk.operator)):
        await desk.refuse(grant(signers), grpc.StatusCode.PERMISSION_DENIED, "SIGNATURE_INVALID")
    await desk.admit(grant((operator, desk.operator)))
    await desk.admit(story.credit_event(desk.debtor, who, pb.EntryReference(origin=ORIGIN)))
