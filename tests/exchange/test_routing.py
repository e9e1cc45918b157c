"""Statements about a subject whose home is another exchange are not sequenced here.

The other exchange's log is replicated into the node's database (as the
federation will do) and applied to the views; then a statement about one
of its patents is refused ``FAILED_PRECONDITION NOT_HOME`` naming the home,
with nothing written, or, on a node with a router, handed to the router
whose receipt the client gets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from exchange.config import NodeConfig
from exchange.node import Submitted, apply_log
from exchange.sample import generate
from exchange.server import RunningNode, start_node
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.keys import load_key_file
from ledger.note import Signer
from ledger.store import LogStore
from tests.conftest import ORIGIN
from tests.exchange import story

OTHER = "other.kaifang.example/log"
SAMPLE = generate(61, parties=2, patents=1)


@pytest.fixture
async def node(db_url: str, tmp_path: Path) -> AsyncIterator[RunningNode]:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )
    async with start_node(config) as running:
        # The other exchange's log, as replication would hold it: its parties
        # and a patent whose home it is.
        register = load_key_file(tmp_path / "register.key")
        other = Signer.generate(OTHER)
        store = await LogStore.create(running.exchange.db, OTHER, other.verifier_key())
        entries = []
        owner = SAMPLE.parties[0]
        for signed in (
            story.registration(owner),
            story.record(SAMPLE.patents[0], [owner], register),
        ):
            entry = pb.LogEntry(
                origin=OTHER, statement=signed.statement, signatures=signed.signatures
            )
            entry.sequenced_at.FromDatetime(dt.datetime.now(dt.UTC))
            entries.append(entry.SerializeToString())
        await store.sequence(entries, other)
        assert await apply_log(running.exchange.db, store) == 2
        yield running


async def test_a_statement_about_another_homes_patent_is_refused_naming_the_home(
    node: RunningNode,
) -> None:
    offer = story.offer(SAMPLE.patents[0].application_number, [SAMPLE.parties[0]])
    size = (await node.store.latest_checkpoint()).size
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SubmitStatement(api.SubmitStatementRequest(signed=offer))
        patent = await stub.GetPatent(
            api.GetPatentRequest(application_number=SAMPLE.patents[0].application_number)
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.metadata["home"]) == ("NOT_HOME", OTHER)
    assert (await node.store.latest_checkpoint()).size == size
    assert patent.home == OTHER
    assert not patent.HasField("active_offer")


async def test_a_router_receives_it_and_its_receipt_is_returned(node: RunningNode) -> None:
    offer = story.offer(SAMPLE.patents[0].application_number, [SAMPLE.parties[0]])
    routed: list[tuple[str, bytes]] = []

    async def router(home: str, signed: pb.SignedStatement) -> Submitted:
        routed.append((home, signed.statement))
        return Submitted(statement_id(signed.statement), home, 7, "receipt", duplicate=False)

    node.exchange.router = router
    size = (await node.store.latest_checkpoint()).size
    submitted = await node.exchange.submit(offer)
    assert routed == [(OTHER, offer.statement)]
    assert (submitted.origin, submitted.index) == (OTHER, 7)
    assert (await node.store.latest_checkpoint()).size == size  # nothing sequenced here
