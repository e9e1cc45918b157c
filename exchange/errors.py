"""Exceptions raised by the exchange (the ledger's personality).

Every exception the exchange raises on purpose derives from
:class:`ExchangeError`. The tree::

    ExchangeError
    ├── InvalidFieldError           a field of a request or statement is malformed
    │   └── IdentifierError         an identifier fails its format or check character
    ├── SignatureInvalidError       a signature does not verify under the key it names
    ├── SignerError                 the statement lacks a signature the law requires
    ├── RuleViolationError          a legal rule refuses the statement in the current state
    ├── ViewOrderError              a log entry was applied to the views out of order
    ├── NotFoundError               a query names a patent, party or offer not known here
    ├── NotHomeError                the subject's home is another exchange
    ├── ForwardedError              the home refused a forwarded statement (its status, verbatim)
    ├── HomeUnavailableError        the home could not be reached (retry later)
    ├── WitnessRefusedError         a checkpoint was not cosigned (stale old size, a fork, …)
    ├── NotYetWitnessedError        no checkpoint cosigned enough holds the history yet (retry)
    ├── NotWitnessedHereError       cosignatures of another origin's log are kept by its home
    └── StoppingError               the node is stopping (retry elsewhere or later)

Each carries the offending field (a protobuf field path) and a reason, so
that the service edge can answer ``INVALID_ARGUMENT`` with a ``BadRequest``
field violation naming it.
"""

from __future__ import annotations

from google.rpc import status_pb2


class ExchangeError(Exception):
    """Root of every error the exchange raises on purpose."""


class InvalidFieldError(ExchangeError):
    """A field is malformed; ``field`` names it and ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        """Describe why ``field`` is refused."""
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class IdentifierError(InvalidFieldError):
    """An identifier (application number, credit code, IPC symbol, currency) is invalid."""


class SignatureInvalidError(ExchangeError):
    """A statement signature does not verify under the public key it names."""


class SignerError(ExchangeError):
    """A signature the statement's kind requires is missing (PERMISSION_DENIED).

    ``missing`` names the signers whose signatures are needed; ``legal_basis``
    the provision that requires them.
    """

    def __init__(self, missing: frozenset[str], reason: str, legal_basis: str) -> None:
        """Describe whose signature is missing and why the law wants it."""
        super().__init__(f"missing signature of {sorted(missing)}: {reason} ({legal_basis})")
        self.missing = missing
        self.reason = reason
        self.legal_basis = legal_basis


class RuleViolationError(ExchangeError):
    """A legal rule refuses the statement in the current state (FAILED_PRECONDITION).

    ``code`` is a stable machine-readable reason (e.g. ``PATENT_PLEDGED``),
    ``field`` the statement field at fault, ``legal_basis`` the provision.
    """

    def __init__(self, code: str, field: str, message: str, legal_basis: str) -> None:
        """Describe the violation."""
        super().__init__(f"{code}: {message} ({legal_basis})")
        self.code = code
        self.field = field
        self.legal_basis = legal_basis


class ViewOrderError(ExchangeError):
    """A log entry was applied to the views out of order (a gap, or applied twice)."""


class NotFoundError(ExchangeError):
    """A query names something (``field``) that the views do not hold (NOT_FOUND)."""

    def __init__(self, field: str, message: str) -> None:
        """Say what was not found."""
        super().__init__(message)
        self.field = field


class NotHomeError(ExchangeError):
    """The statement's subject has its home at another exchange."""

    def __init__(self, home: str, subject: str) -> None:
        """Name the subject and its home exchange."""
        super().__init__(f"{subject} has its home at {home}; submit it there")
        self.home = home
        self.subject = subject


class ForwardedError(ExchangeError):
    """The home exchange refused a statement forwarded to it.

    ``status`` is the ``google.rpc.Status`` the home answered, which the
    client gets unchanged: the home's judgement, not this node's.
    """

    def __init__(self, home: str, status: status_pb2.Status) -> None:
        """Carry the home's refusal."""
        super().__init__(f"{home} refused the statement: {status.message}")
        self.home = home
        self.status = status


class HomeUnavailableError(ExchangeError):
    """The subject's home could not be reached; nothing was sequenced (UNAVAILABLE)."""

    def __init__(self, home: str, reason: str, retry_after_s: float) -> None:
        """Name the home and how long to wait before retrying."""
        super().__init__(f"the home exchange {home} is unreachable ({reason}); retry later")
        self.home = home
        self.retry_after_s = retry_after_s


class WitnessRefusedError(ExchangeError):
    """A witness refused to cosign a checkpoint (FAILED_PRECONDITION).

    ``code`` is ``OLD_SIZE_MISMATCH`` (``witnessed_size`` says what the
    witness holds), ``FORK_DETECTED`` or ``INCONSISTENT`` (evidence kept).
    """

    def __init__(self, code: str, message: str, witnessed_size: int) -> None:
        """Describe the refusal."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.witnessed_size = witnessed_size


class NotYetWitnessedError(ExchangeError):
    """No checkpoint of this node's log cosigned by enough witnesses holds the history yet.

    Witnesses cosign within seconds of a checkpoint (UNAVAILABLE with a
    RetryInfo of ``retry_after_s``).
    """

    def __init__(self, needed: int, retry_after_s: float) -> None:
        """Say how many cosignatures were asked for."""
        super().__init__(
            f"no checkpoint holding the whole history is cosigned by {needed} witness(es) yet"
        )
        self.retry_after_s = retry_after_s


class NotWitnessedHereError(ExchangeError):
    """Cosignatures were asked of a log this node replicates; its home keeps them."""

    def __init__(self, home: str) -> None:
        """Name the exchange that keeps the cosignatures."""
        super().__init__(f"cosignatures of {home}'s log are kept by {home}; ask it")
        self.home = home


class StoppingError(ExchangeError):
    """The node is stopping; the call may be retried (UNAVAILABLE)."""
