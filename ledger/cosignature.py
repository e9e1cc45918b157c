"""C2SP Ed25519 witness cosignatures (https://c2sp.org/tlog-cosignature), type 0x04.

A witness that has checked a checkpoint is consistent with what it saw before
adds a signature line to the checkpoint's note. The Ed25519 cosignature signs

    cosignature/v1
    time <POSIX seconds>
    <the whole checkpoint body>

and its signature bytes are ``big-endian u64 timestamp || 64-byte Ed25519
signature``. The key ID uses signature type 0x04, so the same name and key
never collide with a plain (0x01) note key. Keys use the same string formats
as :mod:`ledger.note`, with type byte 0x04; the key classes here share their
key handling with :mod:`ledger.note`'s and add only cosigning and its checks.

The message does not commit to the cosigner's name, so one key must serve one
cosigner only (the spec's rule; nothing here can check it).
"""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.checkpoint import parse_checkpoint
from ledger.errors import CheckpointError, CosignatureError
from ledger.note import (
    ED25519_SIGNATURE_SIZE,
    NoteSignature,
    _Ed25519SignerBase,
    _Ed25519VerifierBase,
)

ALG_COSIGNATURE_V1 = 0x04
"""Signature type byte of timestamped Ed25519 cosignatures (signed-note, "Signature types")."""

TIMESTAMP_SIZE = 8
COSIGNATURE_SIZE = TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE
MAX_TIMESTAMP = 2**63 - 1
"""The spec: the timestamp MUST NOT exceed 2^63 - 1."""


def cosigned_message(checkpoint_body: str, timestamp: int) -> bytes:
    """Return the bytes an Ed25519 cosignature signs: header, time line, checkpoint body.

    Requires ``checkpoint_body`` to be a valid checkpoint body (else
    :class:`CheckpointError`) and ``0 <= timestamp <= MAX_TIMESTAMP`` (else
    ``ValueError``).
    """
    parse_checkpoint(checkpoint_body)
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp {timestamp} is out of range")
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_body}".encode()


def cosignature_timestamp(signature: bytes) -> int:
    """Return the timestamp of a cosignature's signature bytes (key ID excluded), unverified.

    Raises :class:`CosignatureError` if the bytes are not 8 + 64 long or the
    timestamp exceeds 2^63 - 1. The value means nothing until verified.
    """
    if len(signature) != COSIGNATURE_SIZE:
        raise CosignatureError(f"cosignature is {len(signature)} bytes, not {COSIGNATURE_SIZE}")
    timestamp = int.from_bytes(signature[:TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise CosignatureError(f"cosignature timestamp {timestamp} exceeds 2^63 - 1")
    return timestamp


class CosignatureSigner(_Ed25519SignerBase):
    """A witness's Ed25519 cosigning key (type 0x04) and its key name."""

    ALG = ALG_COSIGNATURE_V1
    __slots__ = ()

    def verifier(self) -> CosignatureVerifier:
        """Return the verifier of this key."""
        return CosignatureVerifier(self._name, Ed25519PublicKey.from_public_bytes(self._public_key))

    def cosign(self, checkpoint_body: str, timestamp: int) -> NoteSignature:
        """Cosign ``checkpoint_body`` as of ``timestamp`` (POSIX seconds).

        Requires a valid checkpoint body (:class:`CheckpointError`) and
        ``0 <= timestamp <= MAX_TIMESTAMP`` (``ValueError``). Append the result
        to the checkpoint note with :func:`ledger.note.add_signatures`. The
        caller must have checked the checkpoint's consistency first: that is
        what the cosignature asserts.
        """
        message = cosigned_message(checkpoint_body, timestamp)
        signature = self._private_key.sign(message)
        return NoteSignature(
            self._name, self._key_id, timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature
        )


class CosignatureVerifier(_Ed25519VerifierBase):
    """A witness's Ed25519 cosignature verification key (type 0x04).

    It fits :class:`ledger.note.NoteVerifier`, so it can be passed to
    :func:`ledger.note.open_note` next to the log's key.
    """

    ALG = ALG_COSIGNATURE_V1
    __slots__ = ()

    def verify_timestamp(self, message: bytes, signature: bytes) -> int:
        """Verify a cosignature over checkpoint body ``message``; return its timestamp.

        ``signature`` is the signature bytes after the key ID. Raises
        :class:`CosignatureError` if the body is not a checkpoint, the bytes
        are malformed, or the signature does not verify.
        """
        timestamp = cosignature_timestamp(signature)
        try:
            signed = cosigned_message(message.decode("utf-8"), timestamp)
        except (UnicodeDecodeError, CheckpointError) as e:
            raise CosignatureError("cosigned text is not a checkpoint body") from e
        try:
            self._key.verify(signature[TIMESTAMP_SIZE:], signed)
        except InvalidSignature as e:
            raise CosignatureError(
                f"invalid cosignature by {self._name}+{self._key_id.hex()}"
            ) from e
        return timestamp

    def verify(self, message: bytes, signature: bytes) -> None:
        """Verify a cosignature over ``message`` (see :meth:`verify_timestamp`)."""
        self.verify_timestamp(message, signature)

    def verify_cosignature(self, checkpoint_body: str, cosignature: NoteSignature) -> int:
        """Verify one cosignature line on ``checkpoint_body``; return its timestamp.

        Raises :class:`CosignatureError` if the line is not by this key (name
        and key ID) or does not verify.
        """
        if cosignature.name != self._name or not hmac.compare_digest(
            cosignature.key_id, self._key_id
        ):
            raise CosignatureError(
                f"signature by {cosignature.name}+{cosignature.key_id.hex()} is not by this key"
            )
        try:
            message = checkpoint_body.encode("utf-8")
        except UnicodeEncodeError as e:
            raise CosignatureError("cosigned text is not valid Unicode") from e
        return self.verify_timestamp(message, cosignature.signature)
