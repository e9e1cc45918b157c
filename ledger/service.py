"""``kaifang.ledger.v1.LedgerService``: the ledger's read API over gRPC.

A thin shell over :class:`ledger.store.LogStore`: it validates each request,
calls the store, and turns domain errors into gRPC statuses in one table
(:data:`STATUS_OF`), with ``google.rpc.Status`` details — ``BadRequest`` field
violations for malformed input and ``ErrorInfo`` with a stable reason for the
rest — so that clients can act on them without parsing messages.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from sqlalchemy.exc import InterfaceError, OperationalError

from kaifang.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ledger.errors import (
    EntryNotFoundError,
    EntryTooLargeError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    LedgerError,
    ProofShapeError,
    SizeNotSignedError,
    UnknownLogError,
)
from ledger.merkle import HASH_SIZE
from ledger.rpc import (
    StreamLimiter,
    TooManyStreamsError,
    abort_with,
    build_status,
    caller_host,
    field_violation,
    register_service,
    too_many_streams_status,
)
from ledger.store import LogStore

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "ledger.kaifang"
# Origins are stored in a 255-character column; longer ones name no log.
MAX_ORIGIN = 255
# Sizes and indices are stored as signed 64-bit integers.
MAX_INDEX = 2**63 - 1
DEFAULT_BATCH = 256
MAX_BATCH = 1000
# Stay well under gRPC's default 4 MiB message limit whatever the entry sizes.
MAX_BATCH_BYTES = 1 << 20
READ_ROWS = 64
# Open GetEntries streams per client address. A stream reads a few rows at a
# time and holds no connection while its reader lags, but each one open holds
# a response in flight: a mirror or an auditor reads a log with one, or a few
# in parallel ranges.
MAX_ENTRY_STREAMS_PER_CLIENT = 8

# The one table from domain errors to gRPC statuses. Looked up along the
# exception's MRO, so a subclass maps like its nearest listed ancestor.
STATUS_OF: Mapping[type[LedgerError], tuple[grpc.StatusCode, str]] = {
    InvalidArgumentError: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ProofShapeError: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PROOF_REQUEST"),
    EntryTooLargeError: (grpc.StatusCode.INVALID_ARGUMENT, "ENTRY_TOO_LARGE"),
    IndexOutOfRangeError: (grpc.StatusCode.OUT_OF_RANGE, "BEYOND_LOG"),
    SizeNotSignedError: (grpc.StatusCode.NOT_FOUND, "SIZE_NOT_SIGNED"),
    EntryNotFoundError: (grpc.StatusCode.NOT_FOUND, "ENTRY_NOT_FOUND"),
    UnknownLogError: (grpc.StatusCode.NOT_FOUND, "UNKNOWN_LOG"),
    LedgerError: (grpc.StatusCode.INTERNAL, "LEDGER_ERROR"),
}


def status_for(error: LedgerError) -> status_pb2.Status:
    """Return the ``google.rpc.Status`` (code, message, details) for a domain error."""
    code, reason = next(STATUS_OF[t] for t in type(error).__mro__ if t in STATUS_OF)
    extra: list[Message] = []
    metadata: dict[str, str] = {}
    if isinstance(error, InvalidArgumentError):
        metadata["field"] = error.field
        extra.append(field_violation(error.field, error.reason))
    return _status(code, reason, str(error), extra, metadata)


def _status(
    code: grpc.StatusCode,
    reason: str,
    message: str,
    extra: list[Message],
    metadata: dict[str, str] | None = None,
) -> status_pb2.Status:
    return build_status(ERROR_DOMAIN, code, reason, message, extra, metadata)


async def _abort(context: Any, error: Exception) -> None:
    """End the call with the status for ``error`` (raises, as grpc's abort does).

    Errors that are not the ledger's own are logged here and answered without
    their text, which may hold SQL and parameters: UNAVAILABLE when the
    database is unreachable or busy (the client may retry), INTERNAL otherwise.
    """
    if isinstance(error, LedgerError):
        status = status_for(error)
    elif isinstance(error, TooManyStreamsError):
        status = too_many_streams_status(ERROR_DOMAIN, error)
    else:
        logger.exception("unexpected error serving a ledger request")
        transient = isinstance(error, (OperationalError, InterfaceError, TimeoutError))
        code = grpc.StatusCode.UNAVAILABLE if transient else grpc.StatusCode.INTERNAL
        reason = "DATABASE_UNAVAILABLE" if transient else "INTERNAL"
        status = _status(code, reason, "the ledger could not answer; see the node's log", [])
    await abort_with(context, status)


T = TypeVar("T")


def _index(value: int, field: str) -> int:
    if value > MAX_INDEX:
        raise InvalidArgumentError(field, f"{value} exceeds the largest possible index 2^63-1")
    return value


class LedgerService(ledger_pb2_grpc.LedgerServiceServicer):
    """Serves the logs of one database; the empty origin names the node's own log."""

    def __init__(self, own: LogStore, *, entry_streams: StreamLimiter | None = None) -> None:
        """Serve ``own`` and, by origin, any other log stored in the same database.

        ``entry_streams`` caps each client's open GetEntries streams (default:
        :data:`MAX_ENTRY_STREAMS_PER_CLIENT`).
        """
        self._own = own
        self._logs: dict[str, LogStore] = {own.origin: own}
        self.entry_streams = (
            entry_streams
            if entry_streams is not None
            else StreamLimiter("GetEntries streams", MAX_ENTRY_STREAMS_PER_CLIENT)
        )

    async def _log(self, origin: str) -> LogStore:
        if not origin:
            return self._own
        if len(origin) > MAX_ORIGIN or not origin.isprintable():
            raise InvalidArgumentError(
                "origin", f"not a log origin (printable, at most {MAX_ORIGIN} characters)"
            )
        log = self._logs.get(origin)
        if log is None:
            log = await LogStore.open(self._own.db, origin)
            self._logs[origin] = log
        return log

    @staticmethod
    def _size(message: Any, field: str) -> int | None:
        return _index(getattr(message, field), field) if message.HasField(field) else None

    @staticmethod
    async def _at_sizes(log: LogStore, call: Awaitable[T], **sizes: int | None) -> T:
        """Await ``call``; if a size was never signed, tell beyond-the-log from a gap.

        A size above the latest signed one is OUT_OF_RANGE; one below it that
        was never signed stays NOT_FOUND. The latest size is only looked up
        on that failure path, so a good request costs one read.
        """
        try:
            return await call
        except SizeNotSignedError:
            latest = (await log.latest_checkpoint()).size
            for field, size in sizes.items():
                if size is not None and size > latest:
                    raise IndexOutOfRangeError(
                        f"{field} {size} exceeds the log's size {latest}"
                    ) from None
            raise

    async def GetCheckpoint(
        self, request: ledger_pb2.GetCheckpointRequest, context: Any
    ) -> ledger_pb2.GetCheckpointResponse:
        log = await self._log(request.origin)
        size = self._size(request, "tree_size")
        cp = await self._at_sizes(log, log.checkpoint(size), tree_size=size)
        return ledger_pb2.GetCheckpointResponse(
            checkpoint=cp.note, tree_size=cp.size, root_hash=cp.root_hash
        )

    async def GetEntries(
        self, request: ledger_pb2.GetEntriesRequest, context: Any
    ) -> AsyncIterator[ledger_pb2.GetEntriesResponse]:
        log = await self._log(request.origin)
        start = _index(request.start, "start")
        batch = request.batch_size or DEFAULT_BATCH
        if batch > MAX_BATCH:
            raise InvalidArgumentError("batch_size", f"{batch} exceeds the maximum {MAX_BATCH}")
        latest = (await log.latest_checkpoint()).size
        end = self._size(request, "end")
        if end is None:
            end = latest
        if end > latest:
            raise IndexOutOfRangeError(f"end {end} exceeds the log's signed size {latest}")
        if start > end:
            raise InvalidArgumentError("start", f"start {start} is after end {end}")
        # A valid request takes a slot, held until the stream ends however it ends.
        with self.entry_streams.hold(caller_host(context.peer())):
            response = ledger_pb2.GetEntriesResponse()
            size = 0
            # Read few rows at a time: a row may be 64 KiB, and a stream should
            # hold a message's worth of them, not a batch of 1,000.
            async for rows in log.entries(start, end, batch=min(batch, READ_ROWS)):
                for index, data in rows:
                    full = len(response.entries) == batch or size + len(data) > MAX_BATCH_BYTES
                    if response.entries and full:
                        yield response
                        response, size = ledger_pb2.GetEntriesResponse(), 0
                    response.entries.add(index=index, data=data)
                    size += len(data)
            if response.entries:
                yield response

    async def GetInclusionProof(
        self, request: ledger_pb2.GetInclusionProofRequest, context: Any
    ) -> ledger_pb2.GetInclusionProofResponse:
        log = await self._log(request.origin)
        size = self._size(request, "tree_size")
        which = request.WhichOneof("leaf")
        if which == "leaf_hash":
            if len(request.leaf_hash) != HASH_SIZE:
                raise InvalidArgumentError(
                    "leaf_hash", f"is {len(request.leaf_hash)} bytes, not {HASH_SIZE}"
                )
            index = await log.index_of(request.leaf_hash)
        elif which == "index":
            index = _index(request.index, "index")
        else:
            raise InvalidArgumentError("leaf", "set either index or leaf_hash")
        proof, cp = await self._at_sizes(log, log.inclusion_proof(index, size), tree_size=size)
        return ledger_pb2.GetInclusionProofResponse(
            index=index, tree_size=cp.size, hashes=proof, checkpoint=cp.note
        )

    async def GetConsistencyProof(
        self, request: ledger_pb2.GetConsistencyProofRequest, context: Any
    ) -> ledger_pb2.GetConsistencyProofResponse:
        log = await self._log(request.origin)
        old = _index(request.old_size, "old_size")
        new = self._size(request, "new_size")
        if new is not None and old > new:
            raise InvalidArgumentError("old_size", f"old size {old} exceeds new size {new}")
        proof, cp = await self._at_sizes(
            log, log.consistency_proof(old, new), new_size=new, old_size=old
        )
        return ledger_pb2.GetConsistencyProofResponse(
            old_size=old, new_size=cp.size, hashes=proof, checkpoint=cp.note
        )

    async def GetReceipt(
        self, request: ledger_pb2.GetReceiptRequest, context: Any
    ) -> ledger_pb2.GetReceiptResponse:
        log = await self._log(request.origin)
        index = _index(request.index, "index")
        size = self._size(request, "tree_size")
        receipt = await self._at_sizes(log, log.receipt(index, size), tree_size=size)
        return ledger_pb2.GetReceiptResponse(receipt=receipt.format())


def add_ledger_service(servicer: LedgerService, server: grpc.aio.Server) -> None:
    """Register ``servicer`` on ``server`` (undecodable requests: INVALID_ARGUMENT)."""
    register_service(servicer, server, ledger_pb2, "LedgerService", _abort, InvalidArgumentError)
