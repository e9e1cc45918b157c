"""The federation API of one node, served in process on loopback: witnessing and bad requests.

The node is a member ``a`` of a network whose other members are not
running; the test calls it as member ``b``. Every refused request gets its
status code, reason and field, and leaves every table of the node's database
as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.localnet import free_port_block
from exchange.config import load_config
from exchange.network import (
    Network,
    TlsIdentity,
    channel_credentials,
    channel_options,
    init_network,
    load_network,
)
from exchange.sample import generate
from exchange.server import RunningNode, start_node
from kaifang.exchange.v1 import statements_pb2 as pb
from kaifang.federation.v1 import federation_pb2 as fed
from kaifang.federation.v1 import federation_pb2_grpc as fed_grpc
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import CosignatureVerifier
from ledger.keys import load_key_file
from ledger.merkle import consistency_plan, leaf_hash, root_hash
from ledger.note import Verifier, parse_note
from ledger.receipt import verify_receipt
from tests.exchange import story
from tests.exchange.story import database_digest


@dataclass
class Peer:
    node: RunningNode
    network: Network
    stub: Any  # the async FederationService stub, calling as member b
    directory: Path
    channel: grpc.aio.Channel


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    directory = tmp_path / "net"
    init_network(directory, ["a", "b"], base_port=free_port_block(4))
    network = load_network(directory / "network.toml")
    config = load_config(directory / "a" / "kaifang.toml")
    async with start_node(config) as node:
        member = network.member("a")
        identity = TlsIdentity.load(directory / "b" / "tls.key", directory / "b" / "tls.pem")
        credentials = channel_credentials(network, identity)
        async with grpc.aio.secure_channel(
            member.address, credentials, options=channel_options(member)
        ) as channel:
            stub = fed_grpc.FederationServiceStub(channel)
            yield Peer(node, network, stub, directory, channel)


def _forged(peer: Peer, entries: list[bytes]) -> str:
    """A checkpoint of b's log over ``entries``, signed with b's log key."""
    signer = load_key_file(peer.directory / "b" / "log.key")
    root = root_hash([leaf_hash(e) for e in entries])
    return sign_checkpoint(Checkpoint("b", len(entries), root), signer)


def _proof(entries: list[bytes], old: int, new: int) -> list[bytes]:
    """The consistency proof between two sizes of the tree of ``entries``."""
    plan = consistency_plan(old, new)
    hashes = {}
    for level, index in plan.nodes():
        leaves = entries[index << level : (index + 1) << level]
        hashes[(level, index)] = root_hash([leaf_hash(e) for e in leaves])
    return plan.assemble(hashes)


def _reason(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details)
    return info.reason, dict(info.metadata)


async def test_a_witness_cosigns_consistent_growth_and_keeps_evidence_of_a_bad_proof(
    peer: Peer,
) -> None:
    log = [f"b entry {i}".encode() for i in range(7)]
    first = await peer.stub.AddCheckpoint(
        fed.AddCheckpointRequest(old_size=0, checkpoint=_forged(peer, log[:2]))
    )
    witness = CosignatureVerifier.from_vkey(first.witness_vkey)
    assert first.witness_vkey == peer.network.member("a").witness_vkey
    grown = _forged(peer, log[:5])
    second = await peer.stub.AddCheckpoint(
        fed.AddCheckpointRequest(old_size=2, consistency_proof=_proof(log, 2, 5), checkpoint=grown)
    )
    (line,) = parse_note(grown + second.cosignature).signatures[1:]
    witness.verify_cosignature(parse_note(grown).text, line)

    # A stale old size is told what the witness holds.
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await peer.stub.AddCheckpoint(
            fed.AddCheckpointRequest(old_size=2, checkpoint=_forged(peer, log[:7]))
        )
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(stale.value) == ("OLD_SIZE_MISMATCH", {"witnessed_size": "5"})

    # A proof that fails between two signed checkpoints is evidence against b.
    forged = [*log[:5], b"rewritten", log[6]]
    with pytest.raises(grpc.aio.AioRpcError) as inconsistent:
        await peer.stub.AddCheckpoint(
            fed.AddCheckpointRequest(
                old_size=5, consistency_proof=_proof(log, 5, 7), checkpoint=_forged(peer, forged)
            )
        )
    assert _reason(inconsistent.value)[0] == "INCONSISTENT"
    (evidence,) = (await peer.stub.ListForkEvidence(fed.ListForkEvidenceRequest())).evidence
    assert evidence.kind == "INCONSISTENT"
    assert evidence.checkpoint_a == grown
    assert list(evidence.proof) == _proof(log, 5, 7)
    # b is halted: nothing more of it is cosigned.
    with pytest.raises(grpc.aio.AioRpcError) as halted:
        await peer.stub.AddCheckpoint(
            fed.AddCheckpointRequest(
                old_size=5, consistency_proof=_proof(log, 5, 7), checkpoint=_forged(peer, log)
            )
        )
    assert _reason(halted.value)[0] == "ORIGIN_HALTED"


async def test_a_forwarded_statement_is_sequenced_by_its_home(peer: Peer) -> None:
    party = generate(71, parties=1, patents=0).parties[0]
    done = await peer.stub.ForwardStatement(
        fed.ForwardStatementRequest(signed=story.registration(party))
    )
    assert (done.origin, done.index, done.duplicate) == ("a", 0, False)
    verify_receipt(done.receipt, Verifier.from_vkey(peer.network.member("a").vkey))


BIG = 2**64 - 1


def _bad_requests(peer: Peer) -> list[tuple[str, Any, grpc.StatusCode, str]]:
    a_note = _forged_as_a(peer)
    return [
        ("StreamEntries", fed.StreamEntriesRequest(), grpc.StatusCode.INVALID_ARGUMENT, "origin"),
        ("StreamEntries", fed.StreamEntriesRequest(origin="nope"), grpc.StatusCode.NOT_FOUND, ""),
        ("StreamEntries", fed.StreamEntriesRequest(origin="a", max_batch=10_001),
         grpc.StatusCode.INVALID_ARGUMENT, "max_batch"),
        ("StreamEntries", fed.StreamEntriesRequest(origin="a", start=BIG),
         grpc.StatusCode.INVALID_ARGUMENT, "start"),
        ("GetInclusionProof", fed.GetInclusionProofRequest(origin="a", index=3),
         grpc.StatusCode.OUT_OF_RANGE, ""),
        ("GetInclusionProof", fed.GetInclusionProofRequest(origin="a", index=0, tree_size=99),
         grpc.StatusCode.NOT_FOUND, ""),
        ("GetInclusionProof", fed.GetInclusionProofRequest(origin="a", index=BIG),
         grpc.StatusCode.INVALID_ARGUMENT, "index"),
        ("GetConsistencyProof", fed.GetConsistencyProofRequest(origin="a", old_size=5, new_size=0),
         grpc.StatusCode.OUT_OF_RANGE, ""),
        ("GetConsistencyProof", fed.GetConsistencyProofRequest(origin="", old_size=0),
         grpc.StatusCode.INVALID_ARGUMENT, "origin"),
        ("ForwardStatement", fed.ForwardStatementRequest(), grpc.StatusCode.INVALID_ARGUMENT,
         "signed"),
        ("ForwardStatement",
         fed.ForwardStatementRequest(signed=pb.SignedStatement(statement=b"\xff\x00junk")),
         grpc.StatusCode.INVALID_ARGUMENT, "statement"),
        ("AddCheckpoint", fed.AddCheckpointRequest(), grpc.StatusCode.INVALID_ARGUMENT,
         "checkpoint"),
        ("AddCheckpoint", fed.AddCheckpointRequest(checkpoint="not a note"),
         grpc.StatusCode.INVALID_ARGUMENT, "checkpoint"),
        # Signed by another member's key: a log is witnessed at its own request only.
        ("AddCheckpoint", fed.AddCheckpointRequest(checkpoint=a_note),
         grpc.StatusCode.INVALID_ARGUMENT, "checkpoint"),
        ("AddCheckpoint", fed.AddCheckpointRequest(
            checkpoint=_forged(peer, [b"x"]), consistency_proof=[b"short"]),
         grpc.StatusCode.INVALID_ARGUMENT, "consistency_proof[0]"),
        ("AddCheckpoint", fed.AddCheckpointRequest(old_size=3, checkpoint=_forged(peer, [b"x"])),
         grpc.StatusCode.INVALID_ARGUMENT, "old_size"),
        ("AddCheckpoint",
         fed.AddCheckpointRequest(old_size=1, checkpoint=_forged(peer, [b"x", b"y"])),
         grpc.StatusCode.FAILED_PRECONDITION, ""),
        ("AddCheckpoint", fed.AddCheckpointRequest(
            old_size=0, checkpoint=_forged(peer, [b"x", b"y"]), consistency_proof=[b"\0" * 32]),
         grpc.StatusCode.INVALID_ARGUMENT, "consistency_proof"),
        ("AddCheckpoint", fed.AddCheckpointRequest(old_size=BIG, checkpoint=_forged(peer, [b"x"])),
         grpc.StatusCode.INVALID_ARGUMENT, "old_size"),
    ]  # fmt: skip


def _forged_as_a(peer: Peer) -> str:
    signer = load_key_file(peer.directory / "a" / "log.key")
    return sign_checkpoint(Checkpoint("a", 0, root_hash([])), signer)


async def _call(peer: Peer, method: str, request: Any) -> None:
    call = getattr(peer.stub, method)(request)
    if method == "StreamEntries":
        async for _ in call:
            pass
    else:
        await call


async def test_bad_requests_are_refused_with_their_field_and_change_nothing(peer: Peer) -> None:
    db = peer.node.exchange.db
    before = await database_digest(db)
    for method, request, code, field in _bad_requests(peer):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _call(peer, method, request)
        assert refused.value.code() == code, (method, request, refused.value.details())
        if field:
            assert _reason(refused.value)[1].get("field") == field, (method, request)
        assert await database_digest(db) == before, (method, request)
    # Bytes that are no request at all.
    raw = peer.channel.unary_unary(
        "/kaifang.federation.v1.FederationService/AddCheckpoint",
        request_serializer=lambda b: b, response_deserializer=lambda b: b,
    )  # fmt: skip
    with pytest.raises(grpc.aio.AioRpcError) as undecodable:
        await raw(b"\xff\xff\xff")
    assert undecodable.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await database_digest(db) == before
