"""The gRPC read API on a real server on a loopback port, on both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from exchange.config import NodeConfig
from exchange.server import RunningNode, start_node
from kaifang.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ledger.checkpoint import open_checkpoint
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.receipt import verify_receipt
from tests.conftest import ORIGIN

ENTRIES = [f"entry {i}".encode() * (i % 5 + 1) for i in range(40)]


@pytest.fixture
async def node(db_url: str, tmp_path: Path) -> AsyncIterator[RunningNode]:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )
    async with start_node(config) as running:
        # Three signed sizes: 10, 25, 40.
        for end in (10, 25, 40):
            await running.store.sequence(ENTRIES[:end], running.signer)
        yield running


@pytest.fixture
async def stub(node: RunningNode) -> AsyncIterator[ledger_pb2_grpc.LedgerServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        yield ledger_pb2_grpc.LedgerServiceStub(channel)


def _details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    info = error_details_pb2.ErrorInfo()
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    assert info.reason, "the error carries no ErrorInfo"
    return info, fields


async def test_checkpoint_latest_and_at_a_signed_size(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub, node: RunningNode
) -> None:
    latest = await stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest())
    assert latest.tree_size == 40
    cp = open_checkpoint(latest.checkpoint, node.signer.verifier())
    assert (cp.size, cp.root_hash) == (40, latest.root_hash)
    old = await stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(tree_size=25, origin=ORIGIN))
    assert old.tree_size == 25


async def test_entries_stream_in_batches_verbatim(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub,
) -> None:
    got: list[ledger_pb2.Entry] = []
    batches = 0
    async for response in stub.GetEntries(ledger_pb2.GetEntriesRequest(start=3, batch_size=7)):
        batches += 1
        assert 0 < len(response.entries) <= 7
        got.extend(response.entries)
    assert [e.index for e in got] == list(range(3, 40))
    assert [e.data for e in got] == ENTRIES[3:]
    assert batches == 6
    # A batch is as large as asked, however many rows the server reads at once.
    sizes = [
        len(r.entries) async for r in stub.GetEntries(ledger_pb2.GetEntriesRequest(batch_size=1000))
    ]
    assert sizes == [40]


async def test_inclusion_proof_by_index_and_by_leaf_hash_verifies(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub, node: RunningNode
) -> None:
    for request in (
        ledger_pb2.GetInclusionProofRequest(index=17, tree_size=25),
        ledger_pb2.GetInclusionProofRequest(leaf_hash=leaf_hash(ENTRIES[17]), tree_size=25),
    ):
        response = await stub.GetInclusionProof(request)
        cp = open_checkpoint(response.checkpoint, node.signer.verifier())
        assert (response.index, response.tree_size, cp.size) == (17, 25, 25)
        verify_inclusion(leaf_hash(ENTRIES[17]), 17, 25, list(response.hashes), cp.root_hash)


async def test_consistency_proof_between_signed_sizes_verifies(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub, node: RunningNode
) -> None:
    old = open_checkpoint(
        (await stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(tree_size=10))).checkpoint,
        node.signer.verifier(),
    )
    response = await stub.GetConsistencyProof(ledger_pb2.GetConsistencyProofRequest(old_size=10))
    new = open_checkpoint(response.checkpoint, node.signer.verifier())
    assert response.new_size == 40
    verify_consistency(10, 40, list(response.hashes), old.root_hash, new.root_hash)


async def test_receipt_verifies_offline(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub, node: RunningNode
) -> None:
    response = await stub.GetReceipt(ledger_pb2.GetReceiptRequest(index=30))
    cp = verify_receipt(response.receipt, node.signer.verifier())
    assert cp.size == 40


@pytest.mark.parametrize(
    ("call", "request_", "code", "reason", "field"),
    [
        ("GetInclusionProof", ledger_pb2.GetInclusionProofRequest(index=40),
         grpc.StatusCode.OUT_OF_RANGE, "BEYOND_LOG", None),
        ("GetInclusionProof", ledger_pb2.GetInclusionProofRequest(index=2**64 - 1),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "index"),
        ("GetInclusionProof", ledger_pb2.GetInclusionProofRequest(index=1, tree_size=24),
         grpc.StatusCode.NOT_FOUND, "SIZE_NOT_SIGNED", None),
        ("GetInclusionProof", ledger_pb2.GetInclusionProofRequest(index=1, tree_size=41),
         grpc.StatusCode.OUT_OF_RANGE, "BEYOND_LOG", None),
        ("GetInclusionProof", ledger_pb2.GetInclusionProofRequest(leaf_hash=b"short"),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "leaf_hash"),
        ("GetInclusionProof", ledger_pb2.GetInclusionProofRequest(leaf_hash=bytes(32)),
         grpc.StatusCode.NOT_FOUND, "ENTRY_NOT_FOUND", None),
        ("GetInclusionProof", ledger_pb2.GetInclusionProofRequest(),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "leaf"),
        ("GetCheckpoint", ledger_pb2.GetCheckpointRequest(tree_size=11),
         grpc.StatusCode.NOT_FOUND, "SIZE_NOT_SIGNED", None),
        ("GetCheckpoint", ledger_pb2.GetCheckpointRequest(tree_size=2**63),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "tree_size"),
        ("GetCheckpoint", ledger_pb2.GetCheckpointRequest(origin="nobody.example/log"),
         grpc.StatusCode.NOT_FOUND, "UNKNOWN_LOG", None),
        ("GetCheckpoint", ledger_pb2.GetCheckpointRequest(origin="a" * 100_000),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "origin"),
        ("GetCheckpoint", ledger_pb2.GetCheckpointRequest(origin="x\x00y"),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "origin"),
        ("GetConsistencyProof", ledger_pb2.GetConsistencyProofRequest(old_size=26, new_size=10),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "old_size"),
        ("GetConsistencyProof", ledger_pb2.GetConsistencyProofRequest(old_size=11),
         grpc.StatusCode.NOT_FOUND, "SIZE_NOT_SIGNED", None),
        ("GetConsistencyProof", ledger_pb2.GetConsistencyProofRequest(old_size=41),
         grpc.StatusCode.OUT_OF_RANGE, "BEYOND_LOG", None),
        ("GetReceipt", ledger_pb2.GetReceiptRequest(index=99),
         grpc.StatusCode.OUT_OF_RANGE, "BEYOND_LOG", None),
        ("GetReceipt", ledger_pb2.GetReceiptRequest(index=3, tree_size=2**64 - 1),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "tree_size"),
    ],
)  # fmt: skip
async def test_bad_requests_get_a_precise_status_with_details(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub,
    call: str,
    request_: object,
    code: grpc.StatusCode,
    reason: str,
    field: str | None,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(stub, call)(request_)
    assert raised.value.code() == code
    info, fields = _details(raised.value)
    assert info.reason == reason
    assert info.domain == "ledger.kaifang"
    if field is not None:
        assert fields == [field]


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (ledger_pb2.GetEntriesRequest(start=41), grpc.StatusCode.INVALID_ARGUMENT, "start"),
        (ledger_pb2.GetEntriesRequest(end=41), grpc.StatusCode.OUT_OF_RANGE, None),
        (ledger_pb2.GetEntriesRequest(batch_size=10**6), grpc.StatusCode.INVALID_ARGUMENT,
         "batch_size"),
        (ledger_pb2.GetEntriesRequest(start=2**64 - 1), grpc.StatusCode.INVALID_ARGUMENT, "start"),
    ],
)  # fmt: skip
async def test_bad_entry_ranges_are_refused(
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub,
    request_: ledger_pb2.GetEntriesRequest,
    code: grpc.StatusCode,
    field: str | None,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub.GetEntries(request_):
            pass
    assert raised.value.code() == code
    _, fields = _details(raised.value)
    if field is not None:
        assert fields == [field]


async def test_health_and_reflection_are_served(node: RunningNode) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(
            health_pb2.HealthCheckRequest(service="kaifang.ledger.v1.LedgerService")
        )
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in reflect.ServerReflectionInfo(iter([request])):
            names = {s.name for s in answer.list_services_response.service}
            assert "kaifang.ledger.v1.LedgerService" in names
            break
