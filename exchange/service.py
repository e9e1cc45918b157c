"""``kaifang.exchange.v1.ExchangeService``: submit statements, read the views.

A thin shell over :class:`exchange.node.Exchange`. Refusals become gRPC
statuses in one table (:data:`STATUS_OF`) with ``google.rpc.Status`` details:
``BadRequest`` for malformed fields, ``ErrorInfo`` with a stable reason and,
where a legal rule refused, the metadata ``legal_basis``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from sqlalchemy import Connection

from exchange.errors import (
    ExchangeError,
    InvalidFieldError,
    NotHomeError,
    PatentNotFoundError,
    RuleViolationError,
    SignatureInvalidError,
    SignerError,
    ViewOrderError,
)
from exchange.identifiers import parse_application_number
from exchange.node import MAX_SUBMIT_BATCH, Exchange, Submitted, home_of
from exchange.rules import PatentState
from kaifang.exchange.v1 import exchange_pb2
from ledger.errors import LedgerError
from ledger.rpc import abort_with, build_status, field_violation, register_service
from ledger.service import status_for as ledger_status_for

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "exchange.kaifang"

# The one table from exchange errors to gRPC statuses (looked up along the MRO).
STATUS_OF: Mapping[type[ExchangeError], tuple[grpc.StatusCode, str]] = {
    InvalidFieldError: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    SignatureInvalidError: (grpc.StatusCode.PERMISSION_DENIED, "SIGNATURE_INVALID"),
    SignerError: (grpc.StatusCode.PERMISSION_DENIED, "SIGNATURE_MISSING"),
    RuleViolationError: (grpc.StatusCode.FAILED_PRECONDITION, "RULE_VIOLATION"),
    NotHomeError: (grpc.StatusCode.FAILED_PRECONDITION, "NOT_HOME"),
    PatentNotFoundError: (grpc.StatusCode.NOT_FOUND, "PATENT_NOT_FOUND"),
    ViewOrderError: (grpc.StatusCode.INTERNAL, "VIEWS_OUT_OF_ORDER"),
    ExchangeError: (grpc.StatusCode.INTERNAL, "EXCHANGE_ERROR"),
}


def status_for(error: ExchangeError) -> status_pb2.Status:
    """Return the ``google.rpc.Status`` for an exchange error."""
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
    elif isinstance(error, NotHomeError):
        metadata = {"home": error.home}
    return build_status(ERROR_DOMAIN, code, reason, str(error), extra, metadata)


async def _abort(context: Any, error: Exception) -> None:
    if isinstance(error, ExchangeError):
        status = status_for(error)
    elif isinstance(error, LedgerError):
        status = ledger_status_for(error)
    else:
        logger.exception("unexpected error serving an exchange request")
        status = build_status(
            ERROR_DOMAIN, grpc.StatusCode.INTERNAL, "INTERNAL",
            "the exchange could not answer; see the node's log",
        )  # fmt: skip
    await abort_with(context, status)


class ExchangeService:
    """Serves one exchange node."""

    def __init__(self, exchange: Exchange) -> None:
        """Admit through ``exchange``."""
        self.exchange = exchange

    async def SubmitStatement(
        self, request: exchange_pb2.SubmitStatementRequest, context: Any
    ) -> exchange_pb2.SubmitStatementResponse:
        if not request.HasField("signed"):
            raise InvalidFieldError("signed", "is required")
        return _submitted(await self.exchange.submit(request.signed))

    async def SubmitStatements(
        self, request: exchange_pb2.SubmitStatementsRequest, context: Any
    ) -> exchange_pb2.SubmitStatementsResponse:
        if len(request.signed) > MAX_SUBMIT_BATCH:
            raise InvalidFieldError(
                "signed", f"{len(request.signed)} statements; at most {MAX_SUBMIT_BATCH} per call"
            )
        outcomes = await self.exchange.submit_many(request.signed)
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
        number = str(parse_application_number(request.application_number))
        exchange = self.exchange

        def read(conn: Connection) -> tuple[PatentState | None, str | None]:
            return exchange.world(conn).patent(number), home_of(conn, number, None)

        state, home = await exchange.db.read(read)
        if state is None:
            raise PatentNotFoundError(f"no patent {number} is recorded")
        return exchange_pb2.GetPatentResponse(
            application_number=number,
            owners=state.owners,
            status=state.status,
            active_offer_id=state.offer.offer_id if state.offer else b"",
            licence_count=len(state.licences),
            pledgee=state.pledge.pledgee if state.pledge else "",
            home=home or "",
        )


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
