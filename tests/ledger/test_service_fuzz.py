"""Hostile bytes at every ledger RPC: never UNKNOWN or INTERNAL, and nothing changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.config import NodeConfig
from exchange.server import RunningNode, start_node
from kaifang.ledger.v1 import ledger_pb2

UNARY = ["GetCheckpoint", "GetInclusionProof", "GetConsistencyProof", "GetReceipt"]
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
}

# Raw bytes, and well-formed requests with arbitrary field values.
_uint64 = st.integers(0, 2**64 - 1)
_origin = st.sampled_from(["", "fuzz.kaifang.example/log", "x" * 300, "a\x00b"]) | st.text(
    max_size=40
)
REQUESTS = {
    "GetCheckpoint": st.builds(ledger_pb2.GetCheckpointRequest, origin=_origin, tree_size=_uint64),
    "GetInclusionProof": st.one_of(
        st.builds(
            ledger_pb2.GetInclusionProofRequest, origin=_origin, index=_uint64, tree_size=_uint64
        ),
        st.builds(ledger_pb2.GetInclusionProofRequest, leaf_hash=st.binary(max_size=40)),
    ),
    "GetConsistencyProof": st.builds(
        ledger_pb2.GetConsistencyProofRequest, origin=_origin, old_size=_uint64, new_size=_uint64
    ),
    "GetReceipt": st.builds(ledger_pb2.GetReceiptRequest, index=_uint64, tree_size=_uint64),
}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    config = NodeConfig(
        origin="fuzz.kaifang.example/log",
        listen="127.0.0.1:0",
        database=f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}",
        log_key=tmp_path / "log.key",
    )
    async with start_node(config) as running:
        await running.store.sequence([f"entry {i}".encode() for i in range(20)], running.signer)
        yield running


async def _call(channel: grpc.aio.Channel, method: str, payload: bytes) -> grpc.StatusCode:
    rpc = channel.unary_unary(f"/kaifang.ledger.v1.LedgerService/{method}", None, None)
    try:
        await rpc(payload, timeout=10)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def _stream(channel: grpc.aio.Channel, payload: bytes) -> grpc.StatusCode:
    rpc = channel.unary_stream("/kaifang.ledger.v1.LedgerService/GetEntries", None, None)
    try:
        async for _ in rpc(payload, timeout=10):
            pass
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(UNARY), payload=st.binary(max_size=64), data=st.data())
async def test_random_requests_get_a_client_error_never_a_server_error(
    node: RunningNode, method: str, payload: bytes, data: st.DataObject
) -> None:
    before = await node.store.latest_checkpoint()
    request = data.draw(REQUESTS[method]).SerializeToString()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        for body in (payload, request):
            assert await _call(channel, method, body) in ALLOWED
        entries = ledger_pb2.GetEntriesRequest(
            start=data.draw(_uint64), batch_size=data.draw(st.integers(0, 2**32 - 1))
        )
        for body in (payload, entries.SerializeToString()):
            assert await _stream(channel, body) in ALLOWED
    assert await node.store.latest_checkpoint() == before


async def test_undecodable_request_is_invalid_argument_naming_the_request(
    node: RunningNode,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        rpc = channel.unary_unary("/kaifang.ledger.v1.LedgerService/GetReceipt", None, None)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await rpc(b"\xff\xff\xff", timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "GetReceiptRequest" in (raised.value.details() or "")
