"""The exchange API on a real node on a loopback port, on both engines.

The open-licence scenario of the issue over gRPC: parties register, the
register records a patent, the patentee publishes an offer, two licensees
accept, the patentee withdraws, a third acceptance is refused; every
refusal carries its status and details and changes nothing.
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

from exchange.config import NodeConfig
from exchange.rules import REGISTER
from exchange.sample import SampleParty, generate
from exchange.server import RunningNode, start_node
from exchange.statements import sign
from kaifang.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.keys import load_key_file
from ledger.note import Signer
from ledger.receipt import verify_receipt
from tests.conftest import ORIGIN


@dataclass
class Client:
    stub: exchange_pb2_grpc.ExchangeServiceAsyncStub
    register: Signer

    async def submit(
        self, statement: pb.Statement, *signers: tuple[str, object]
    ) -> exchange_pb2.SubmitStatementResponse:
        request = exchange_pb2.SubmitStatementRequest(signed=self.signed(statement, *signers))
        return await self.stub.SubmitStatement(request)

    def signed(self, statement: pb.Statement, *signers: tuple[str, object]) -> pb.SignedStatement:
        statement.nonce = statement.nonce or b"n" * 16
        statement.created_at.GetCurrentTime()
        data = statement.SerializeToString()
        return pb.SignedStatement(
            statement=data,
            signatures=[sign(data, name, key) for name, key in signers],  # type: ignore[arg-type]
        )


@pytest.fixture
async def node(db_url: str, tmp_path: Path) -> AsyncIterator[RunningNode]:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )
    async with start_node(config) as running:
        yield running


@pytest.fixture
async def client(node: RunningNode, tmp_path: Path) -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        yield Client(
            exchange_pb2_grpc.ExchangeServiceStub(channel), load_key_file(tmp_path / "register.key")
        )


def _error(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


async def _register(client: Client, party: SampleParty) -> None:
    await client.submit(
        pb.Statement(party_registered=party.registration), (party.party_id, party.key)
    )


async def test_open_licence_scenario_over_grpc(client: Client, node: RunningNode) -> None:
    sample = generate(21, parties=4, patents=1)
    owner, first, second, third = sample.parties
    for party in sample.parties:
        await _register(client, party)
    patent = pb.PatentRecorded()
    patent.CopyFrom(sample.patents[0])
    patent.owners[:] = [owner.party_id]
    patent.fees_paid_until.CopyFrom(pb.Date(year=2035, month=1, day=1))
    patent.expiry_date.CopyFrom(pb.Date(year=2040, month=1, day=1))
    await client.submit(pb.Statement(patent_recorded=patent), (REGISTER, client.register))

    terms = pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=2_000_000, currency="CNY"))
    offer = pb.OfferPublished(
        application_number=patent.application_number, terms=terms, licence_term_months=24,
        evaluation_report="EVAL-2026-001",
    )  # fmt: skip
    published = await client.submit(
        pb.Statement(offer_published=offer), (owner.party_id, owner.key)
    )
    checkpoint = verify_receipt(published.receipt, node.signer.verifier())
    assert checkpoint.size == published.index + 1

    today = dt.datetime.now(dt.UTC).date()

    def acceptance(who: SampleParty) -> pb.Statement:
        payment = pb.Payment(
            amount=terms.lump_sum, reference=f"TX-{who.party_id[:6]}",
            paid_on=pb.Date(year=today.year, month=today.month, day=today.day),
        )  # fmt: skip
        accepted = pb.LicenseAccepted(
            offer_id=published.statement_id, licensee=who.party_id, terms=terms,
            start_date=pb.Date(year=today.year, month=today.month, day=today.day),
            payment=payment,
        )  # fmt: skip
        return pb.Statement(nonce=who.party_id.encode()[:16], license_accepted=accepted)

    for who in (first, second):
        await client.submit(acceptance(who), (who.party_id, who.key))
    withdrawal = pb.Statement(offer_withdrawn=pb.OfferWithdrawn(offer_id=published.statement_id))
    await client.submit(withdrawal, (owner.party_id, owner.key))

    size = (await node.store.latest_checkpoint()).size
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.submit(acceptance(third), (third.party_id, third.key))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = _error(refused.value)
    assert info.reason == "OFFER_NOT_ACTIVE"
    assert info.metadata["legal_basis"] == "Patent Law Art. 50"
    assert (await node.store.latest_checkpoint()).size == size  # nothing written

    state = await client.stub.GetPatent(
        exchange_pb2.GetPatentRequest(application_number=patent.application_number)
    )
    assert state.licence_count == 2  # the first two licences stand
    assert state.active_offer_id == b""
    assert state.home == ORIGIN


async def test_resubmission_returns_the_first_receipt(client: Client) -> None:
    party = generate(22, parties=1, patents=1).parties[0]
    request = exchange_pb2.SubmitStatementRequest(
        signed=client.signed(
            pb.Statement(party_registered=party.registration), (party.party_id, party.key)
        )
    )
    first = await client.stub.SubmitStatement(request)
    again = await client.stub.SubmitStatement(request)
    assert (again.index, again.receipt, again.duplicate) == (first.index, first.receipt, True)
    assert not first.duplicate


@pytest.mark.parametrize(
    ("case", "code", "reason"),
    [
        ("forged", grpc.StatusCode.PERMISSION_DENIED, "SIGNATURE_INVALID"),
        ("unsigned", grpc.StatusCode.PERMISSION_DENIED, "SIGNATURE_MISSING"),
        ("malformed", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        ("bad_identifier", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        ("replayed", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ],
)
async def test_bad_submissions_are_refused_with_details_and_write_nothing(
    client: Client, node: RunningNode, case: str, code: grpc.StatusCode, reason: str
) -> None:
    party = generate(23, parties=1, patents=1).parties[0]
    registration = pb.PartyRegistered()
    registration.CopyFrom(party.registration)
    statement = pb.Statement(nonce=b"m" * 16, party_registered=registration)
    statement.created_at.GetCurrentTime()
    if case == "bad_identifier":
        statement.party_registered.identity_code = "91350100M000100Y44"
    if case == "replayed":
        statement.created_at.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    data = statement.SerializeToString()
    signatures = [] if case == "unsigned" else [sign(data, party.party_id, party.key)]
    if case == "forged":
        signatures[0].signature = bytes(64)
    if case == "malformed":
        data = b"\xff\xffnot a statement"
    size = (await node.store.latest_checkpoint()).size
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.stub.SubmitStatement(
            exchange_pb2.SubmitStatementRequest(
                signed=pb.SignedStatement(statement=data, signatures=signatures)
            )
        )
    assert refused.value.code() == code
    assert _error(refused.value).reason == reason
    assert (await node.store.latest_checkpoint()).size == size


async def test_unknown_patent_is_not_found(client: Client) -> None:
    number = generate(24, parties=1, patents=1).patents[0].application_number
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await client.stub.GetPatent(exchange_pb2.GetPatentRequest(application_number=number))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await client.stub.GetPatent(exchange_pb2.GetPatentRequest(application_number="nonsense"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
