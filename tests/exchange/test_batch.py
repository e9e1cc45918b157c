"""Batched admission: many statements share one transaction yet are judged in order.

On a real node over gRPC, both engines: a batch with admitted, refused and
duplicate statements gets one outcome each; a statement later in a batch
sees what an earlier one did; concurrent unary submissions are sequenced
into one gap-free log whose views are in step with it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import select

from exchange.config import NodeConfig
from exchange.errors import SignatureInvalidError
from exchange.models import ViewCursor
from exchange.node import MAX_SUBMIT_BATCH
from exchange.sample import generate
from exchange.server import RunningNode, start_node
from exchange.statements import VERIFIED, statement_id
from kaifang.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.keys import load_key_file
from ledger.receipt import verify_receipt
from tests.conftest import ORIGIN
from tests.exchange import story


@pytest.fixture
async def node(db_url: str, tmp_path: Path) -> AsyncIterator[RunningNode]:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )
    async with start_node(config) as running:
        yield running


@pytest.fixture
async def stub(node: RunningNode) -> AsyncIterator[exchange_pb2_grpc.ExchangeServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        yield exchange_pb2_grpc.ExchangeServiceStub(channel)


def _reason(outcome: exchange_pb2.SubmitOutcome) -> tuple[int, str]:
    status = status_pb2.Status.FromString(outcome.status)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return status.code, info.reason


async def test_a_batch_is_judged_in_order_with_one_outcome_each(
    node: RunningNode, stub: exchange_pb2_grpc.ExchangeServiceAsyncStub, tmp_path: Path
) -> None:
    sample = generate(31, parties=3, patents=1)
    owner, early, late = sample.parties
    register = load_key_file(tmp_path / "register.key")
    number = sample.patents[0].application_number
    published = story.offer(number, [owner])
    offer_id = statement_id(published.statement)
    first = story.registration(owner)
    batch = [
        first,
        story.registration(early),
        story.registration(late),
        story.record(sample.patents[0], [owner], register),
        published,
        story.acceptance(offer_id, early),
        story.withdrawal(offer_id, [owner]),
        story.acceptance(offer_id, late),  # refused: withdrawn earlier in this batch
        first,  # a duplicate inside the batch
        pb.SignedStatement(statement=b"\xff\xffnot a statement"),
    ]
    size = (await node.store.latest_checkpoint()).size
    response = await stub.SubmitStatements(exchange_pb2.SubmitStatementsRequest(signed=batch))
    outcomes = response.outcomes
    assert len(outcomes) == len(batch)
    admitted = [o.submitted for o in outcomes[:7]]
    assert [a.index for a in admitted] == list(range(size, size + 7))
    for a in admitted:
        assert not a.duplicate
        verify_receipt(a.receipt, node.signer.verifier())
    assert _reason(outcomes[7]) == (
        grpc.StatusCode.FAILED_PRECONDITION.value[0],
        "OFFER_NOT_ACTIVE",
    )
    assert outcomes[8].submitted.duplicate
    assert outcomes[8].submitted.index == admitted[0].index
    assert _reason(outcomes[9])[0] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # Exactly the admitted statements were written.
    assert (await node.store.latest_checkpoint()).size == size + 7


async def test_an_oversized_batch_is_refused_whole(
    node: RunningNode, stub: exchange_pb2_grpc.ExchangeServiceAsyncStub
) -> None:
    party = generate(32, parties=1, patents=1).parties[0]
    batch = [story.registration(party)] * (MAX_SUBMIT_BATCH + 1)
    size = (await node.store.latest_checkpoint()).size
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SubmitStatements(exchange_pb2.SubmitStatementsRequest(signed=batch))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await node.store.latest_checkpoint()).size == size


async def test_concurrent_submissions_make_one_gap_free_log_in_step_with_the_views(
    node: RunningNode, stub: exchange_pb2_grpc.ExchangeServiceAsyncStub
) -> None:
    parties = generate(33, parties=60, patents=1).parties
    size = (await node.store.latest_checkpoint()).size

    async def submit(party: story.SampleParty) -> exchange_pb2.SubmitStatementResponse:
        request = exchange_pb2.SubmitStatementRequest(signed=story.registration(party))
        return await stub.SubmitStatement(request)

    responses = await asyncio.gather(*(submit(p) for p in parties))
    assert sorted(r.index for r in responses) == list(range(size, size + len(parties)))
    assert (await node.store.latest_checkpoint()).size == size + len(parties)
    query = select(ViewCursor.next_index).where(ViewCursor.origin == ORIGIN)
    cursor = await node.exchange.db.read(lambda c: c.execute(query).scalar_one())
    assert cursor == size + len(parties)


async def test_signatures_checked_ahead_still_refuse_a_forgery(node: RunningNode) -> None:
    # Large submissions arriving while a batch is being admitted have their
    # signatures checked on another thread first; a forged one among them is
    # still refused, and the others are admitted.
    parties = generate(34, parties=80, patents=1).parties
    batches = [[story.registration(p) for p in parties[i : i + 20]] for i in range(0, 80, 20)]
    forged = batches[2][5]
    forged.signatures[0].signature = bytes(64)
    outcomes = await asyncio.gather(*(node.exchange.submit_many(b) for b in batches))
    flat = [o for batch in outcomes for o in batch]
    refused = [o for o in flat if isinstance(o, Exception)]
    assert len(refused) == 1
    assert isinstance(refused[0], SignatureInvalidError)
    assert outcomes[2][5] is refused[0]
    assert len({o.index for o in flat if not isinstance(o, Exception)}) == 79
    statement = batches[0][0]
    key = parties[0].registration.public_key
    digest = hashlib.sha256(statement.statement).digest()
    assert (key, statement.signatures[0].signature, digest) in VERIFIED
