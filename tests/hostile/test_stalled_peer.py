"""A peer that stalls its stream must not stop a node from replicating what others can give it.

Member ``a`` runs in this process; ``b`` and ``c`` are played by the test.
``b`` is an origin whose heads say its log has entries, but whose stream of
them, once opened, never sends anything (it answers pings, so keepalive
sees nothing wrong). ``c`` holds ``b``'s log too and serves it honestly. A
node that has opened its stream of ``b`` from ``b`` must not wait on it
forever: the entries are there to be had from ``c``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from clients.localnet import free_port_block
from exchange.config import load_config
from exchange.network import Network, TlsIdentity, init_network, load_network, server_credentials
from exchange.server import start_node
from kaifang.federation.v1 import federation_pb2 as fed
from kaifang.federation.v1 import federation_pb2_grpc as fed_grpc
from kaifang.ledger.v1 import ledger_pb2 as lg
from kaifang.ledger.v1 import ledger_pb2_grpc as lg_grpc
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.keys import load_key_file
from ledger.merkle import leaf_hash, root_hash

ENTRIES = [f"b entry {i}".encode() for i in range(5)]
# Several polls of the peers' heads (one a second), the time a stream may
# deliver nothing before it is given up (exchange.federation.STALL_S), and the
# time to replicate.
WITHIN_S = 20.0


class _Played(fed_grpc.FederationServiceServicer):
    """A member whose heads show ``b``'s log; its stream of it stalls or is honest."""

    def __init__(self, head: fed.Head, *, stalls: bool) -> None:
        self.head = head
        self.stalls = stalls
        self.streams = 0

    async def GetHeads(self, request: fed.GetHeadsRequest, context: Any) -> fed.GetHeadsResponse:
        return fed.GetHeadsResponse(heads=[self.head])

    async def StreamEntries(
        self, request: fed.StreamEntriesRequest, context: Any
    ) -> AsyncIterator[fed.StreamEntriesResponse]:
        self.streams += 1
        if self.stalls:
            await asyncio.Event().wait()  # never sends; answers pings all along
        yield fed.StreamEntriesResponse(
            origin="b", start=request.start, entries=ENTRIES[request.start :],
            checkpoint=self.head.checkpoint,
        )  # fmt: skip

    async def _unavailable(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "not played by this test")

    AddCheckpoint = _unavailable
    ForwardStatement = _unavailable
    GetInclusionProof = _unavailable
    GetConsistencyProof = _unavailable

    async def ListForkEvidence(
        self, request: fed.ListForkEvidenceRequest, context: Any
    ) -> fed.ListForkEvidenceResponse:
        return fed.ListForkEvidenceResponse()


def _server(network: Network, directory: Path, name: str, played: _Played) -> grpc.aio.Server:
    server = grpc.aio.server()
    fed_grpc.add_FederationServiceServicer_to_server(played, server)
    identity = TlsIdentity.load(directory / name / "tls.key", directory / name / "tls.pem")
    server.add_secure_port(network.member(name).address, server_credentials(network, identity))
    return server


async def test_a_stalled_stream_of_an_origin_gives_way_to_a_peer_that_serves_it(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "net"
    init_network(directory, ["a", "b", "c"], base_port=free_port_block(6))
    network = load_network(directory / "network.toml")
    root = root_hash([leaf_hash(e) for e in ENTRIES])
    b_key = load_key_file(directory / "b" / "log.key")
    note = sign_checkpoint(Checkpoint("b", len(ENTRIES), root), b_key)
    head = fed.Head(
        origin="b", tree_size=len(ENTRIES), root_hash=root, checkpoint=note,
        entries_held=len(ENTRIES),
    )  # fmt: skip
    stalling, honest = _Played(head, stalls=True), _Played(head, stalls=False)
    b = _server(network, directory, "b", stalling)
    c = _server(network, directory, "c", honest)
    config = load_config(directory / "a" / "kaifang.toml")
    config = dataclasses.replace(config, listen="127.0.0.1:0")
    await b.start()
    try:
        async with start_node(config) as a:
            # a opens its stream of b from b itself, which stalls; then c appears.
            deadline = time.monotonic() + WITHIN_S
            while not stalling.streams:
                assert time.monotonic() < deadline, "a never asked b for its log"
                await asyncio.sleep(0.1)
            await c.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel:
                ledger = lg_grpc.LedgerServiceStub(channel)
                deadline = time.monotonic() + WITHIN_S
                while True:
                    try:
                        held = await ledger.GetCheckpoint(lg.GetCheckpointRequest(origin="b"))
                        if held.tree_size == len(ENTRIES):
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    assert time.monotonic() < deadline, (
                        f"b's log not replicated from c in {WITHIN_S} s "
                        f"({honest.streams} streams asked of c)"
                    )
                    await asyncio.sleep(0.2)
    finally:
        await b.stop(0)
        await c.stop(0)
