"""Peers that lie, with the honest nodes as real processes.

- A rogue origin ``r`` signs two checkpoints of the same size with different
  roots, showing one history to ``y`` and the other to ``z``. The honest
  nodes find out by comparing heads, keep both signed notes as evidence and
  stop applying ``r``; a witness that cosigned the first refuses the second.
  Evidence of that kind proves itself, so it travels: a node that was only
  ever shown one history (whichever peers it happened to replicate from)
  learns of the fork from a peer's evidence and halts too.
- A relay ``r`` between ``a`` and ``x`` (``x`` replicates only through it)
  alters an entry, drops one, or reorders two: ``x`` refuses every such
  batch and applies nothing, until the relay passes the entries on intact.
- A caller whose certificate the network file does not list is refused.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.localnet import LocalNetwork
from exchange.network import (
    channel_credentials,
    channel_options,
    create_ca,
    issue_certificate,
    private_key_pem,
)
from exchange.statements import statement_id
from kaifang.federation.v1 import federation_pb2 as fed
from kaifang.federation.v1 import federation_pb2_grpc as fed_grpc
from ledger.cosignature import CosignatureVerifier
from ledger.note import parse_note
from tests.exchange import story
from tests.federation.net import eventually, network_dir, offer_visible, seed, submit
from tests.federation.peers import FakeMember, forged_log


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details)
    return info.reason


async def _evidence(net: LocalNetwork, at: str) -> list[fed.ForkEvidence]:
    async with net.peer_channel(at, as_member=at) as channel:
        found = await fed_grpc.FederationServiceStub(channel).ListForkEvidence(
            fed.ListForkEvidenceRequest(origin="r"), timeout=10
        )
    return list(found.evidence)


@pytest.fixture
async def rogue_net(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    # y and z do not hear from x, whose witnessing finds the fork first: they
    # must find it themselves, by comparing what r showed each of them.
    peers = {"y": ["z", "r"], "z": ["y", "r"]}
    network = LocalNetwork.create(network_dir(tmp_path), ["x", "y", "z", "r"], peers=peers)
    try:
        await network.start_all(["x", "y", "z"])
        yield network
    finally:
        await network.close()


async def test_a_rogue_origin_showing_two_histories_is_caught_and_halted(
    rogue_net: LocalNetwork,
) -> None:
    net = rogue_net
    fork_one = [b"r entry 0", b"fork one"]
    forks = {
        "y": forged_log(net, "r", fork_one),
        "z": forged_log(net, "r", [b"r entry 0", b"fork two"]),
    }
    logs = {"y": fork_one, "z": [b"r entry 0", b"fork two"]}
    assert forks["y"].tree_size == forks["z"].tree_size
    assert forks["y"].root_hash != forks["z"].root_hash

    async def heads(caller: str) -> list[fed.Head]:
        return [forks[caller]] if caller in forks else []

    async def stream(
        caller: str, request: fed.StreamEntriesRequest
    ) -> AsyncIterator[fed.StreamEntriesResponse]:
        if caller in forks:
            yield fed.StreamEntriesResponse(
                origin="r", start=request.start, entries=logs[caller][request.start :],
                checkpoint=forks[caller].checkpoint,
            )  # fmt: skip

    # Witnessing: x cosigns the first checkpoint, refuses the second.
    async with net.peer_channel("x", as_member="r") as channel:
        witness = fed_grpc.FederationServiceStub(channel)
        first = await witness.AddCheckpoint(
            fed.AddCheckpointRequest(old_size=0, checkpoint=forks["y"].checkpoint), timeout=10
        )
        body = parse_note(forks["y"].checkpoint).text
        (line,) = parse_note(forks["y"].checkpoint + first.cosignature).signatures[1:]
        CosignatureVerifier.from_vkey(first.witness_vkey).verify_cosignature(body, line)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await witness.AddCheckpoint(
                fed.AddCheckpointRequest(old_size=2, checkpoint=forks["z"].checkpoint), timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(refused.value) == "FORK_DETECTED"
    (kept,) = await _evidence(net, "x")
    assert kept.kind == "SAME_SIZE_DIFFERENT_ROOT"
    assert (kept.checkpoint_a, kept.checkpoint_b) == (forks["y"].checkpoint, forks["z"].checkpoint)

    # Replication: y and z each hold one history and see the other in the heads.
    async with FakeMember(net, "r", heads, stream):
        for node in ("y", "z"):
            await eventually(
                functools.partial(_has_evidence, net, node), within_s=30, what=f"evidence at {node}"
            )
        # The rogue grows the first history: nobody applies it any more.
        fork_one.append(b"after the fork")
        forks["y"] = forged_log(net, "r", fork_one)
        await asyncio.sleep(3)
        held = [h for n in ("y", "z") for h in (await net.heads(n)).heads if h.origin == "r"]
        assert held, "neither y nor z replicated anything of r"
        for head in held:
            assert head.halted
            assert head.tree_size == head.entries_held == 2
        # x refused r's second checkpoint before replicating anything of it.
        assert not [h for h in (await net.heads("x")).heads if h.origin == "r"]
    for node in ("y", "z"):
        evidence = await _evidence(net, node)
        assert evidence[0].kind == "SAME_SIZE_DIFFERENT_ROOT"
        notes = {evidence[0].checkpoint_a, evidence[0].checkpoint_b}
        assert notes == {forks["z"].checkpoint, forged_log(net, "r", fork_one[:2]).checkpoint}


async def _has_evidence(net: LocalNetwork, node: str) -> bool:
    return bool(await _evidence(net, node))


@pytest.fixture
async def relayed(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    network = LocalNetwork.create(network_dir(tmp_path), ["a", "x", "r"], peers={"x": ["r"]})
    try:
        await network.start_all(["a", "x"])
        yield network
    finally:
        await network.close()


async def test_a_relay_that_alters_drops_or_reorders_entries_gets_nothing_applied(
    relayed: LocalNetwork,
) -> None:
    net = relayed
    sample = await seed(net, "a", 601)
    offer = story.offer(sample.patents[0].application_number, [sample.parties[0]])
    await submit(net, "a", offer)
    mode = "alter"
    served: dict[str, int] = {}

    async def heads(caller: str) -> list[fed.Head]:
        return [h for h in (await net.heads("a")).heads if h.origin == "a"]

    async def stream(
        caller: str, request: fed.StreamEntriesRequest
    ) -> AsyncIterator[fed.StreamEntriesResponse]:
        async with net.peer_channel("a", as_member="r") as channel:
            upstream = fed_grpc.FederationServiceStub(channel).StreamEntries(
                fed.StreamEntriesRequest(origin="a", start=request.start, follow=False)
            )
            async for batch in upstream:
                entries = list(batch.entries)
                if mode == "alter" and entries:
                    entries[-1] = entries[-1][:-1] + bytes([entries[-1][-1] ^ 1])
                elif mode == "drop" and len(entries) > 1:
                    del entries[1]
                elif mode == "reorder" and len(entries) > 1:
                    entries[0], entries[1] = entries[1], entries[0]
                served[mode] = served.get(mode, 0) + 1
                yield fed.StreamEntriesResponse(
                    origin=batch.origin, start=batch.start, entries=entries,
                    checkpoint=batch.checkpoint, consistency_proof=batch.consistency_proof,
                )  # fmt: skip

    async def x_holds_nothing_of_a() -> None:
        for head in (await net.heads("x")).heads:
            if head.origin == "a":
                assert head.entries_held == 0

    async with FakeMember(net, "r", heads, stream):
        for mode in ("alter", "drop", "reorder"):
            await eventually(
                functools.partial(_served, served, mode), within_s=30, what=f"a {mode} batch"
            )
            await asyncio.sleep(0.5)
            await x_holds_nothing_of_a()
            assert not await offer_visible(net, "x", statement_id(offer.statement))
        mode = "honest"
        await eventually(
            functools.partial(offer_visible, net, "x", statement_id(offer.statement)),
            within_s=30, what="the offer at x through an honest relay",
        )  # fmt: skip


async def _served(served: dict[str, int], mode: str) -> bool:
    return served.get(mode, 0) > 0


async def test_callers_without_a_listed_certificate_are_refused(relayed: LocalNetwork) -> None:
    net = relayed
    member = net.network.member("a")
    ca_dir = net.directory / "ca"
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    # Issued by the network's own CA, but not in the network file.
    key, cert = issue_certificate(ca_key, ca_cert, "mallory")  # type: ignore[arg-type]
    unlisted = grpc.ssl_channel_credentials(
        net.network.ca_certificate,
        private_key_pem(key),
        cert.public_bytes(serialization.Encoding.PEM),
    )
    async with grpc.aio.secure_channel(
        member.address, unlisted, options=channel_options(member)
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await fed_grpc.FederationServiceStub(channel).GetHeads(
                fed.GetHeadsRequest(), timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _reason(refused.value) == "PEER_REFUSED"

    # Issued by another CA: the TLS handshake itself fails.
    other_key, other_ca = create_ca("another network")
    key, cert = issue_certificate(other_key, other_ca, "x")
    foreign = grpc.ssl_channel_credentials(
        net.network.ca_certificate,
        private_key_pem(key),
        cert.public_bytes(serialization.Encoding.PEM),
    )
    for credentials in (foreign, grpc.ssl_channel_credentials(net.network.ca_certificate)):
        async with grpc.aio.secure_channel(
            member.address, credentials, options=channel_options(member)
        ) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await fed_grpc.FederationServiceStub(channel).GetHeads(
                    fed.GetHeadsRequest(), timeout=10
                )
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE

    # The client port has no TLS, hence no certificate: the peer API refuses.
    async with net.client_channel("a") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as plain:
            await fed_grpc.FederationServiceStub(channel).GetHeads(
                fed.GetHeadsRequest(), timeout=10
            )
    assert plain.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # A listed member is served.
    async with grpc.aio.secure_channel(
        member.address,
        channel_credentials(net.network, net.identity("x")),
        options=channel_options(member),
    ) as channel:
        heads = await fed_grpc.FederationServiceStub(channel).GetHeads(
            fed.GetHeadsRequest(), timeout=10
        )
    assert heads.node == "a"
