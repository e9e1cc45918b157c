"""Exceptions raised by the exchange (the ledger's personality).

Every exception the exchange raises on purpose derives from
:class:`ExchangeError`. The tree::

    ExchangeError
    ├── InvalidFieldError           a field of a request or statement is malformed
    │   └── IdentifierError         an identifier fails its format or check character
    └── SignatureInvalidError       a signature does not verify under the key it names

Each carries the offending field (a protobuf field path) and a reason, so
that the service edge can answer ``INVALID_ARGUMENT`` with a ``BadRequest``
field violation naming it.
"""

from __future__ import annotations


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
