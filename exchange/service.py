"""``kaifang.exchange.v1.ExchangeService``: submit statements, read the views.

A thin shell over :class:`exchange.node.Exchange`. Refusals become gRPC
statuses in one table (:data:`STATUS_OF`) with ``google.rpc.Status`` details:
``BadRequest`` for malformed fields, ``ErrorInfo`` with a stable reason and,
where a legal rule refused, the metadata ``legal_basis``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from exchange import queries
from exchange.errors import (
    ExchangeError,
    ForwardedError,
    HomeUnavailableError,
    InvalidFieldError,
    NotFoundError,
    NotHomeError,
    NotWitnessedHereError,
    NotYetWitnessedError,
    RuleViolationError,
    SignatureInvalidError,
    SignerError,
    StoppingError,
    ViewOrderError,
    WitnessRefusedError,
)
from exchange.limits import MAX_SUBMIT_BATCH, MAX_WATCHES, MAX_WATCHES_PER_CLIENT
from exchange.node import Exchange, Submitted
from kaifang.exchange.v1 import exchange_pb2
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.errors import LedgerError
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
from ledger.service import MAX_INDEX, MAX_ORIGIN
from ledger.service import status_for as ledger_status_for

logger = logging.getLogger(__name__)

# Witnesses are asked to cosign every new checkpoint within about half a
# second (exchange.federation), so a history not yet witnessed soon will be.
WITNESS_RETRY_S = 1.0

ERROR_DOMAIN = "exchange.kaifang"
# A watch re-reads at least this often (seconds), even if no commit of this
# process woke it: another process (a bulk import) may have applied offers.
WATCH_POLL_S = 5.0

# The one table from exchange errors to gRPC statuses (looked up along the MRO).
STATUS_OF: Mapping[type[ExchangeError], tuple[grpc.StatusCode, str]] = {
    InvalidFieldError: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    SignatureInvalidError: (grpc.StatusCode.PERMISSION_DENIED, "SIGNATURE_INVALID"),
    SignerError: (grpc.StatusCode.PERMISSION_DENIED, "SIGNATURE_MISSING"),
    RuleViolationError: (grpc.StatusCode.FAILED_PRECONDITION, "RULE_VIOLATION"),
    NotHomeError: (grpc.StatusCode.FAILED_PRECONDITION, "NOT_HOME"),
    NotYetWitnessedError: (grpc.StatusCode.UNAVAILABLE, "NOT_YET_WITNESSED"),
    NotWitnessedHereError: (grpc.StatusCode.FAILED_PRECONDITION, "NOT_WITNESSED_HERE"),
    HomeUnavailableError: (grpc.StatusCode.UNAVAILABLE, "HOME_UNAVAILABLE"),
    WitnessRefusedError: (grpc.StatusCode.FAILED_PRECONDITION, "WITNESS_REFUSED"),
    NotFoundError: (grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
    StoppingError: (grpc.StatusCode.UNAVAILABLE, "NODE_STOPPING"),
    ViewOrderError: (grpc.StatusCode.INTERNAL, "VIEWS_OUT_OF_ORDER"),
    ExchangeError: (grpc.StatusCode.INTERNAL, "EXCHANGE_ERROR"),
}


def status_for(error: ExchangeError) -> status_pb2.Status:
    """Return the ``google.rpc.Status`` for an exchange error."""
    if isinstance(error, ForwardedError):
        return error.status
    code, reason = next(STATUS_OF[t] for t in type(error).__mro__ if t in STATUS_OF)
    metadata: dict[str, str] = {}
    extra: list[Message] = []
    if isinstance(error, InvalidFieldError):
        metadata["field"] = error.field
        extra.append(field_violation(error.field, error.reason))
    elif isinstance(error, RuleViolationError):
        reason = error.code
        metadata = {"field": error.field, "legal_basis": error.legal_basis}
    elif isinstance(error, SignerError):
        metadata = {"missing": ",".join(sorted(error.missing)), "legal_basis": error.legal_basis}
    elif isinstance(error, NotFoundError):
        metadata = {"field": error.field}
    elif isinstance(error, NotHomeError | NotWitnessedHereError):
        metadata = {"home": error.home}
    elif isinstance(error, HomeUnavailableError):
        metadata = {"home": error.home}
        extra.append(_retry_info(error.retry_after_s))
    elif isinstance(error, NotYetWitnessedError):
        extra.append(_retry_info(error.retry_after_s))
    elif isinstance(error, WitnessRefusedError):
        reason = error.code
        metadata = {"witnessed_size": str(error.witnessed_size)}
    return build_status(ERROR_DOMAIN, code, reason, str(error), extra, metadata)


def _index_value(value: object) -> bool:
    # bool is an int in Python, but no token holds one.
    return type(value) is int and 0 <= value <= MAX_INDEX


def _origin_value(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ORIGIN


def _check_page_token(request: Any, *shape: Any) -> None:
    """Refuse a page token whose sort key is not of ``shape`` (one check per element).

    The token's binding to the request is checked by
    :func:`exchange.queries.read_page_token`, but its digest is of public
    fields: anyone can make a token that passes it. What the queries then read
    from the key must be what they issued, or a forged one reaches the
    database as an impossible key (INTERNAL, not the client's mistake).
    """
    key = queries.read_page_token(request, request.page_token)
    if key is not None and (
        len(key) != len(shape) or not all(ok(v) for ok, v in zip(shape, key, strict=True))
    ):
        raise InvalidFieldError("page_token", "is not a token this service issued")


def _date_error(day: pb.Date, field: str) -> InvalidFieldError | None:
    try:
        dt.date(day.year, day.month, day.day)
    except (ValueError, OverflowError) as e:
        error = InvalidFieldError(field, f"{day.year}-{day.month}-{day.day} is not a date")
        error.__cause__ = e
        return error
    return None


def _check_dates(request: Any, *fields: str) -> None:
    """Refuse a Date of a query that is no day of the calendar.

    A Date's parts are uint32s: Python refuses one past a C int with an
    OverflowError, not the ValueError of an impossible date that the queries
    expect, so it is caught here before they convert it.
    """
    for field in fields:
        if request.HasField(field):
            error = _date_error(getattr(request, field), field)
            if error is not None:
                raise error


# Largest value of a C int: a Date part above it makes Python's date raise an
# OverflowError instead of the ValueError of an impossible date.
_C_INT_MAX = 2**31 - 1


def _first_overflowing_date(message: Message, prefix: str) -> InvalidFieldError | None:
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        repeated = field.is_repeated
        for i, child in enumerate(value if repeated else [value]):
            path = f"{prefix}{field.name}" + (f"[{i}]" if repeated else "")
            if field.message_type is pb.Date.DESCRIPTOR:
                if max(child.year, child.month, child.day) > _C_INT_MAX:
                    return InvalidFieldError(
                        path, f"{child.year}-{child.month}-{child.day} is not a date"
                    )
            else:
                error = _first_overflowing_date(child, path + ".")
                if error is not None:
                    return error
    return None


def statement_date_error(signed: pb.SignedStatement) -> InvalidFieldError | None:
    """The refusal of a statement holding a Date part past a C int, or None.

    Admission converts dates as it checks a statement's structure, and such
    a part escapes it as an OverflowError, not the ValueError it turns into
    INVALID_ARGUMENT: the statement, and with it the batch it came in, would
    fail INTERNAL. Refused here first, with the field path admission names;
    every other date, and bytes that are no statement, are left to admission
    to judge. Parsing again costs well under a microsecond a statement.
    """
    try:
        statement = pb.Statement.FromString(signed.statement)
    except DecodeError:
        return None
    return _first_overflowing_date(statement, "")


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(round(seconds * 1000))
    return error_details_pb2.RetryInfo(retry_delay=delay)


async def _abort(context: Any, error: Exception) -> None:
    if isinstance(error, ExchangeError):
        status = status_for(error)
    elif isinstance(error, LedgerError):
        status = ledger_status_for(error)
    elif isinstance(error, TooManyStreamsError):
        status = too_many_streams_status(ERROR_DOMAIN, error)
    else:
        logger.exception("unexpected error serving an exchange request")
        status = build_status(
            ERROR_DOMAIN, grpc.StatusCode.INTERNAL, "INTERNAL",
            "the exchange could not answer; see the node's log",
        )  # fmt: skip
    await abort_with(context, status)


class ExchangeService:
    """Serves one exchange node."""

    def __init__(self, exchange: Exchange, *, watches: StreamLimiter | None = None) -> None:
        """Admit through ``exchange``; ``watches`` caps open watches (default: exchange.limits)."""
        self.exchange = exchange
        self.watches = (
            watches
            if watches is not None
            else StreamLimiter("WatchOffers streams", MAX_WATCHES_PER_CLIENT, MAX_WATCHES)
        )

    async def SubmitStatement(
        self, request: exchange_pb2.SubmitStatementRequest, context: Any
    ) -> exchange_pb2.SubmitStatementResponse:
        if not request.HasField("signed"):
            raise InvalidFieldError("signed", "is required")
        error = statement_date_error(request.signed)
        if error is not None:
            raise error
        return _submitted(await self.exchange.submit(request.signed))

    async def SubmitStatements(
        self, request: exchange_pb2.SubmitStatementsRequest, context: Any
    ) -> exchange_pb2.SubmitStatementsResponse:
        if len(request.signed) > MAX_SUBMIT_BATCH:
            raise InvalidFieldError(
                "signed", f"{len(request.signed)} statements; at most {MAX_SUBMIT_BATCH} per call"
            )
        # Statements refused here keep their place among the outcomes; the
        # others are admitted in order, as if those had been refused there.
        early = [statement_date_error(signed) for signed in request.signed]
        admitted = iter(
            await self.exchange.submit_many(
                [signed for signed, error in zip(request.signed, early, strict=True) if not error]
            )
        )
        outcomes = [error or next(admitted) for error in early]
        return exchange_pb2.SubmitStatementsResponse(
            outcomes=[
                exchange_pb2.SubmitOutcome(status=status_for(o).SerializeToString())
                if isinstance(o, ExchangeError)
                else exchange_pb2.SubmitOutcome(submitted=_submitted(o))
                for o in outcomes
            ]
        )

    async def GetPatent(
        self, request: exchange_pb2.GetPatentRequest, context: Any
    ) -> exchange_pb2.GetPatentResponse:
        return await self.exchange.db.read(lambda c: queries.get_patent(c, request))

    async def GetOffer(
        self, request: exchange_pb2.GetOfferRequest, context: Any
    ) -> exchange_pb2.GetOfferResponse:
        return await self.exchange.db.read(lambda c: queries.get_offer(c, request))

    async def SearchOffers(
        self, request: exchange_pb2.SearchOffersRequest, context: Any
    ) -> exchange_pb2.SearchOffersResponse:
        _check_page_token(request, _index_value)
        return await self.exchange.db.scan(lambda c: queries.search_offers(c, request))

    async def WatchOffers(
        self, request: exchange_pb2.WatchOffersRequest, context: Any
    ) -> AsyncIterator[exchange_pb2.WatchOffersResponse]:
        conditions = queries.watch_filter(request)
        if request.after_cursor > MAX_INDEX:
            raise InvalidFieldError("after_cursor", f"is above {MAX_INDEX}, beyond any offer")
        cursor = request.after_cursor
        exchange = self.exchange
        # A valid request takes a slot, held until the stream ends however it ends.
        with self.watches.hold(caller_host(context.peer())):
            while not exchange.stopping:
                version = exchange.version
                read = functools.partial(
                    queries.watched_offers, conditions=conditions, after=cursor
                )
                offers = await exchange.db.scan(read)
                for offer in offers:
                    yield exchange_pb2.WatchOffersResponse(offer=offer)
                    cursor = offer.cursor
                if len(offers) < queries.WATCH_BATCH:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(WATCH_POLL_S):
                            await exchange.wait_for_change(version)
        raise StoppingError(f"the node is stopping; resume the watch after cursor {cursor}")

    async def ListLicences(
        self, request: exchange_pb2.ListLicencesRequest, context: Any
    ) -> exchange_pb2.ListLicencesResponse:
        _check_page_token(request, _origin_value, _index_value)
        return await self.exchange.db.read(lambda c: queries.list_licences(c, request))

    async def GetCreditRecord(
        self, request: exchange_pb2.GetCreditRecordRequest, context: Any
    ) -> exchange_pb2.GetCreditRecordResponse:
        return await self.exchange.db.read(lambda c: queries.get_credit_record(c, request))

    async def GetHistory(
        self, request: exchange_pb2.GetHistoryRequest, context: Any
    ) -> exchange_pb2.GetHistoryResponse:
        exchange = self.exchange
        if request.checkpoint_size > MAX_INDEX:
            raise InvalidFieldError("checkpoint_size", f"is above {MAX_INDEX}")
        if request.checkpoint_size and request.min_cosignatures:
            raise InvalidFieldError(
                "min_cosignatures", "give either checkpoint_size or min_cosignatures"
            )
        origin, indices = await exchange.db.read(lambda c: queries.history_indices(c, request))
        store = await exchange.log(origin)
        size = request.checkpoint_size or None
        if request.min_cosignatures:
            if origin != exchange.origin:
                raise NotWitnessedHereError(origin)
            needed = request.min_cosignatures
            size = await exchange.db.read(
                lambda c: queries.latest_cosigned_size(c, store.log_id, needed)
            )
            if size is None or (indices and indices[-1] >= size):
                raise NotYetWitnessedError(needed, WITNESS_RETRY_S)
        checkpoint = await store.checkpoint(size)
        note = checkpoint.note
        if origin == exchange.origin:
            note += "".join(
                await exchange.db.read(
                    lambda c: queries.cosignature_lines(c, store.log_id, checkpoint.size)
                )
            )
        response = exchange_pb2.GetHistoryResponse(origin=origin, checkpoint=note)
        for index in indices:
            if index >= checkpoint.size:  # after the checkpoint asked for, or applied since
                break
            proof, _ = await store.inclusion_proof(index, checkpoint.size)
            response.entries.append(
                exchange_pb2.HistoryEntry(index=index, entry=await store.entry(index), proof=proof)
            )
        return response

    async def GetStatistics(
        self, request: exchange_pb2.GetStatisticsRequest, context: Any
    ) -> exchange_pb2.GetStatisticsResponse:
        _check_dates(request, "from_date", "to_date")
        return await self.exchange.db.scan(lambda c: queries.get_statistics(c, request))


def _submitted(submitted: Submitted) -> exchange_pb2.SubmitStatementResponse:
    return exchange_pb2.SubmitStatementResponse(
        statement_id=submitted.statement_id,
        origin=submitted.origin,
        index=submitted.index,
        receipt=submitted.receipt,
        duplicate=submitted.duplicate,
    )


def add_exchange_service(servicer: ExchangeService, server: grpc.aio.Server) -> None:
    """Register ``servicer`` on ``server`` (undecodable requests: INVALID_ARGUMENT)."""
    register_service(servicer, server, exchange_pb2, "ExchangeService", _abort, InvalidFieldError)
