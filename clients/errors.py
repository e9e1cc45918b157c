"""Exceptions raised by the client library and the ``kaifang`` user commands.

Every exception the clients raise on purpose derives from :class:`ClientError`.
The tree, with the exit status the command line gives each class::

    ClientError                          1
    ├── KeyFileError                     5  a key file is missing, unreadable, too open or bad
    ├── DraftError                       2  a draft statement file is malformed or wrongly signed
    ├── VerificationError                6  what a server or a bundle says does not verify
    │   ├── ReceiptVerificationError        a receipt (signature, inclusion proof) fails
    │   ├── CheckpointVerificationError     a checkpoint is not signed by the log's key
    │   ├── WitnessPolicyError              too few witnesses cosigned a checkpoint
    │   └── BundleError                     an audit bundle fails verification (names what failed)
    └── ServerError                      (per gRPC code below)
        ├── InvalidRequestError          2  INVALID_ARGUMENT: a field is malformed (``field``)
        ├── NotFoundError                3  NOT_FOUND: no such patent, party, offer
        ├── SignatureRequiredError       7  PERMISSION_DENIED: a required signature is missing
        ├── RuleRefusedError             8  FAILED_PRECONDITION: a legal rule refused
        ├── UnavailableError             9  UNAVAILABLE / DEADLINE_EXCEEDED, retries exhausted
        └── UnexpectedServerError       10  any other status (INTERNAL, UNKNOWN, …)

A :class:`ServerError` carries the gRPC code, the stable reason of the
server's ``google.rpc.ErrorInfo``, the legal basis and field it names, and
the server's message, so that a caller can branch on ``reason`` and a person
can read ``str(error)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2


class ClientError(Exception):
    """Root of every error the clients raise on purpose."""

    exit_code = 1


class KeyFileError(ClientError):
    """A key file is missing, unreadable, readable by others, or its passphrase is wrong."""

    exit_code = 5


class DraftError(ClientError):
    """A draft statement file is malformed, or a signature on it does not verify."""

    exit_code = 2


class VerificationError(ClientError):
    """Something a server or a bundle said does not verify; no data is returned."""

    exit_code = 6


class ReceiptVerificationError(VerificationError):
    """A receipt's checkpoint signature or inclusion proof does not verify."""


class CheckpointVerificationError(VerificationError):
    """A checkpoint is not signed by the log key the client trusts, or has the wrong origin."""


class WitnessPolicyError(VerificationError):
    """Fewer trusted witnesses cosigned a checkpoint than the policy requires."""


class BundleError(VerificationError):
    """An audit bundle fails verification; ``what`` names the part that failed."""

    def __init__(self, what: str, message: str) -> None:
        """Say which part of the bundle (``what``) failed and why."""
        super().__init__(f"{what}: {message}")
        self.what = what


class ServerError(ClientError):
    """The server refused a call; the details are the server's ``google.rpc.Status``."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        field: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        """Carry the server's ``code``, ``message``, ErrorInfo ``reason`` and ``metadata``."""
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.field = field or self.metadata.get("field", "")
        self.legal_basis = self.metadata.get("legal_basis", "")
        self.retry_after_s = retry_after_s
        super().__init__(self.sentence())

    def sentence(self) -> str:
        """The refusal as one sentence: message, reason, field and legal basis."""
        parts = [self.message.rstrip(".") or self.code.name.lower()]
        extras = []
        if self.reason:
            extras.append(f"reason {self.reason}")
        if self.field:
            extras.append(f"field {self.field}")
        if self.legal_basis and self.legal_basis not in self.message:
            extras.append(f"legal basis: {self.legal_basis}")
        if extras:
            parts.append(f" ({'; '.join(extras)})")
        return "".join(parts)


class InvalidRequestError(ServerError):
    """INVALID_ARGUMENT: a field of the request or statement is malformed."""

    exit_code = 2


class NotFoundError(ServerError):
    """NOT_FOUND: the patent, party or offer named is not known to the exchange."""

    exit_code = 3


class SignatureRequiredError(ServerError):
    """PERMISSION_DENIED: a signature is invalid or one the law requires is missing."""

    exit_code = 7

    @property
    def missing(self) -> list[str]:
        """The signers whose signatures are missing, as the server named them."""
        text = self.metadata.get("missing", "")
        return [s for s in text.split(",") if s]


class RuleRefusedError(ServerError):
    """FAILED_PRECONDITION: a legal rule refuses the statement in the ledger's current state."""

    exit_code = 8


class UnavailableError(ServerError):
    """UNAVAILABLE or DEADLINE_EXCEEDED after the retries allowed: try later or elsewhere."""

    exit_code = 9


class UnexpectedServerError(ServerError):
    """Any other status: the server failed (INTERNAL, UNKNOWN, …) or refused oddly."""

    exit_code = 10


_BY_CODE: dict[grpc.StatusCode, type[ServerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.PERMISSION_DENIED: SignatureRequiredError,
    grpc.StatusCode.UNAUTHENTICATED: SignatureRequiredError,
    grpc.StatusCode.FAILED_PRECONDITION: RuleRefusedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: UnavailableError,
}


def server_error(
    code: grpc.StatusCode, message: str, status: status_pb2.Status | None
) -> ServerError:
    """Turn a gRPC status (and its rich details, if any) into the typed exception."""
    reason = ""
    metadata: dict[str, str] = {}
    field = ""
    retry_after_s: float | None = None
    for detail in status.details if status is not None else []:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            reason = info.reason
            metadata.update(info.metadata)
        elif detail.Unpack(bad) and bad.field_violations:
            violation = bad.field_violations[0]
            field = violation.field
            metadata.setdefault("field_reason", violation.description)
        elif detail.Unpack(retry):
            retry_after_s = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    if status is not None and status.message:
        message = status.message
    kind = _BY_CODE.get(code, UnexpectedServerError)
    return kind(
        code, message, reason=reason, metadata=metadata, field=field, retry_after_s=retry_after_s
    )
