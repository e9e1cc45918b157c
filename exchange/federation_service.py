"""``kaifang.federation.v1.FederationService``: the peer API, served over mutual TLS.

A thin shell over :class:`exchange.federation.Federation`. Every call first
identifies its caller by the client certificate of the TLS connection
(:func:`exchange.network.peer_of`): a caller that is not a member of the
network file is refused ``UNAUTHENTICATED``, and nothing else is looked at.
Errors map to statuses as on the client API: ledger errors through
:func:`ledger.service.status_for`, exchange errors (a forwarded statement's
refusal, a witness's) through :func:`exchange.service.status_for`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from exchange.errors import ExchangeError, InvalidFieldError
from exchange.federation import Federation, network_digest
from exchange.limits import MAX_STREAM_BATCH, max_streams_per_member
from exchange.network import Member, NetworkError, peer_of
from exchange.service import ERROR_DOMAIN, statement_date_error
from exchange.service import status_for as exchange_status_for
from kaifang.federation.v1 import federation_pb2 as fed
from ledger.errors import LedgerError
from ledger.merkle import HASH_SIZE
from ledger.rpc import (
    StreamLimiter,
    TooManyStreamsError,
    abort_with,
    build_status,
    register_service,
    too_many_streams_status,
)
from ledger.service import MAX_INDEX
from ledger.service import status_for as ledger_status_for

logger = logging.getLogger(__name__)

# A consistency proof of any tree below 2^64 entries has fewer hashes.
MAX_PROOF_HASHES = 128


async def _abort(context: Any, error: Exception) -> None:
    if isinstance(error, NetworkError):
        status = build_status(
            ERROR_DOMAIN, grpc.StatusCode.UNAUTHENTICATED, "PEER_REFUSED", str(error)
        )
    elif isinstance(error, ExchangeError):
        status = exchange_status_for(error)
    elif isinstance(error, LedgerError):
        status = ledger_status_for(error)
    elif isinstance(error, TooManyStreamsError):
        status = too_many_streams_status(ERROR_DOMAIN, error)
    else:
        logger.exception("unexpected error serving a federation request")
        status = build_status(
            ERROR_DOMAIN, grpc.StatusCode.INTERNAL, "INTERNAL",
            "the node could not answer; see its log",
        )  # fmt: skip
    await abort_with(context, status)


def _index(field: str, value: int) -> int:
    """An index or size of a request, refused beyond what the database can store."""
    if value > MAX_INDEX:
        raise InvalidFieldError(field, f"{value} is beyond any log (at most {MAX_INDEX})")
    return value


def _check_hashes(field: str, hashes: Any) -> list[bytes]:
    if len(hashes) > MAX_PROOF_HASHES:
        raise InvalidFieldError(
            field, f"{len(hashes)} hashes; a proof has at most {MAX_PROOF_HASHES}"
        )
    for i, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise InvalidFieldError(f"{field}[{i}]", f"is {len(h)} bytes, not {HASH_SIZE}")
    return list(hashes)


class FederationService:
    """Serves one node's federation API to the members of its network."""

    def __init__(self, federation: Federation, *, streams: StreamLimiter | None = None) -> None:
        """Serve through ``federation``; ``streams`` caps each member's open StreamEntries.

        The default cap grows with the network (:func:`exchange.limits.max_streams_per_member`).
        """
        self.federation = federation
        members = len(federation.network.members)
        self.streams = (
            streams
            if streams is not None
            else StreamLimiter("StreamEntries streams", max_streams_per_member(members))
        )

    def _caller(self, context: Any) -> Member:
        return peer_of(context.auth_context(), self.federation.network)

    async def _log(self, origin: str) -> Any:
        if not origin:
            raise InvalidFieldError("origin", "is required")
        return await self.federation.exchange.log(origin)

    async def GetHeads(self, request: fed.GetHeadsRequest, context: Any) -> fed.GetHeadsResponse:
        self._caller(context)
        heads = await self.federation.heads()
        return fed.GetHeadsResponse(
            node=self.federation.name,
            heads=[
                fed.Head(
                    origin=h.origin, tree_size=h.checkpoint.size,
                    root_hash=h.checkpoint.root_hash, checkpoint=h.note, halted=h.halted,
                    entries_held=h.held,
                )
                for h in heads
            ],
            network_digest=network_digest(
                (h.origin, h.checkpoint.size, h.checkpoint.root_hash) for h in heads
            ),
        )  # fmt: skip

    async def StreamEntries(
        self, request: fed.StreamEntriesRequest, context: Any
    ) -> AsyncIterator[fed.StreamEntriesResponse]:
        caller = self._caller(context)
        if request.max_batch > MAX_STREAM_BATCH:
            raise InvalidFieldError(
                "max_batch", f"{request.max_batch} entries; at most {MAX_STREAM_BATCH} per batch"
            )
        await self._log(request.origin)
        start = _index("start", request.start)
        # A valid request takes a slot, held until the stream ends however it ends.
        with self.streams.hold(caller.name):
            async for batch in self.federation.batches(
                request.origin, start, follow=request.follow, max_batch=request.max_batch
            ):
                yield batch

    async def GetInclusionProof(
        self, request: fed.GetInclusionProofRequest, context: Any
    ) -> fed.GetInclusionProofResponse:
        self._caller(context)
        store = await self._log(request.origin)
        size = _index("tree_size", request.tree_size) if request.HasField("tree_size") else None
        proof, checkpoint = await store.inclusion_proof(_index("index", request.index), size)
        return fed.GetInclusionProofResponse(proof=proof, checkpoint=checkpoint.note)

    async def GetConsistencyProof(
        self, request: fed.GetConsistencyProofRequest, context: Any
    ) -> fed.GetConsistencyProofResponse:
        self._caller(context)
        store = await self._log(request.origin)
        new_size = _index("new_size", request.new_size) if request.HasField("new_size") else None
        old_size = _index("old_size", request.old_size)
        proof, checkpoint = await store.consistency_proof(old_size, new_size)
        return fed.GetConsistencyProofResponse(proof=proof, checkpoint=checkpoint.note)

    async def ForwardStatement(
        self, request: fed.ForwardStatementRequest, context: Any
    ) -> fed.ForwardStatementResponse:
        self._caller(context)
        if not request.HasField("signed"):
            raise InvalidFieldError("signed", "is required")
        error = statement_date_error(request.signed)
        if error is not None:
            raise error
        done = await self.federation.forward_in(request.signed)
        return fed.ForwardStatementResponse(
            statement_id=done.statement_id, origin=done.origin, index=done.index,
            receipt=done.receipt, duplicate=done.duplicate,
        )  # fmt: skip

    async def AddCheckpoint(
        self, request: fed.AddCheckpointRequest, context: Any
    ) -> fed.AddCheckpointResponse:
        caller = self._caller(context)
        if not request.checkpoint:
            raise InvalidFieldError("checkpoint", "is required")
        proof = _check_hashes("consistency_proof", request.consistency_proof)
        old_size = _index("old_size", request.old_size)
        line = await self.federation.cosign(caller, old_size, proof, request.checkpoint)
        return fed.AddCheckpointResponse(
            cosignature=line, witness_vkey=self.federation.witness.verifier_key()
        )

    async def ListForkEvidence(
        self, request: fed.ListForkEvidenceRequest, context: Any
    ) -> fed.ListForkEvidenceResponse:
        self._caller(context)
        return fed.ListForkEvidenceResponse(evidence=await self.federation.evidence(request.origin))


def add_federation_service(servicer: FederationService, server: grpc.aio.Server) -> None:
    """Register ``servicer`` on ``server`` (undecodable requests: INVALID_ARGUMENT)."""
    register_service(servicer, server, fed, "FederationService", _abort, InvalidFieldError)
