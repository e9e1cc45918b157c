"""Members of a network played by a test: a federation server that follows its own rules.

A :class:`FakeMember` binds the member's federation address with the
member's real TLS identity, so the real nodes talk to it as to any peer; the
test decides what it answers. It is the seam where a rogue origin or a
dishonest relay is put in front of honest nodes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from clients.localnet import LocalNetwork
from exchange.network import peer_of, server_credentials
from kaifang.federation.v1 import federation_pb2 as fed
from kaifang.federation.v1 import federation_pb2_grpc as fed_grpc
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.keys import load_key_file
from ledger.merkle import leaf_hash, root_hash

Heads = Callable[[str], Awaitable[list[fed.Head]]]
Stream = Callable[[str, fed.StreamEntriesRequest], AsyncIterator[fed.StreamEntriesResponse]]


class _Servicer(fed_grpc.FederationServiceServicer):
    def __init__(self, member: FakeMember) -> None:
        self.member = member

    async def GetHeads(self, request: fed.GetHeadsRequest, context: Any) -> fed.GetHeadsResponse:
        caller = peer_of(context.auth_context(), self.member.net.network).name
        return fed.GetHeadsResponse(node=self.member.name, heads=await self.member.heads(caller))

    async def StreamEntries(
        self, request: fed.StreamEntriesRequest, context: Any
    ) -> AsyncIterator[fed.StreamEntriesResponse]:
        caller = peer_of(context.auth_context(), self.member.net.network).name
        async for batch in self.member.stream(caller, request):
            yield batch

    # What a fake member is not asked in these tests, it does not do.
    async def _unimplemented(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not played by this fake member")

    GetInclusionProof = _unimplemented
    GetConsistencyProof = _unimplemented
    ForwardStatement = _unimplemented
    AddCheckpoint = _unimplemented
    ListForkEvidence = _unimplemented


class FakeMember:
    """Member ``name`` of ``net``, served by the test's own ``heads`` and ``stream``."""

    def __init__(self, net: LocalNetwork, name: str, heads: Heads, stream: Stream) -> None:
        """Answer GetHeads by ``heads(caller)``, StreamEntries by ``stream(caller, request)``."""
        self.net = net
        self.name = name
        self.heads = heads
        self.stream = stream
        self.server = grpc.aio.server()
        fed_grpc.add_FederationServiceServicer_to_server(_Servicer(self), self.server)
        credentials = server_credentials(net.network, net.identity(name))
        self.server.add_secure_port(net.network.member(name).address, credentials)

    async def __aenter__(self) -> FakeMember:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(0)


def forged_log(net: LocalNetwork, origin: str, entries: list[bytes]) -> fed.Head:
    """A head of ``origin`` over ``entries``, signed with the origin's real log key."""
    signer = load_key_file(net.nodes[origin].directory / "log.key")
    root = root_hash([leaf_hash(e) for e in entries])
    note = sign_checkpoint(Checkpoint(origin, len(entries), root), signer)
    return fed.Head(
        origin=origin, tree_size=len(entries), root_hash=root, checkpoint=note,
        entries_held=len(entries),
    )  # fmt: skip
