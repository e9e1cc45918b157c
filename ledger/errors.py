"""Exceptions raised by the ledger.

Every exception the ledger raises on purpose derives from :class:`LedgerError`,
so a caller can catch the package's failures without catching programming
errors. Verification never returns a bool: it returns nothing or raises one of
these. The tree::

    LedgerError
    ├── ProofError                  an inclusion or consistency proof does not verify
    │   └── ProofShapeError         the proof has the wrong length or indices are out of range
    ├── NoteError                   a signed note is malformed or unverifiable
    │   ├── NoteFormatError         the text does not follow C2SP signed-note
    │   ├── KeyFormatError          a verifier or signer key string is malformed
    │   └── SignatureError          no known key produced a valid signature
    ├── CheckpointError             a checkpoint body does not follow C2SP tlog-checkpoint
    ├── CosignatureError            a C2SP tlog-cosignature is malformed or invalid
    ├── ReceiptError                a tlog-proof@v1 receipt is malformed or does not verify
    ├── KeyFileError                a key file is missing, malformed or too readable
    ├── TileError                   a tile path or tile contents are malformed
    ├── InvalidArgumentError        a request field is malformed (names the field)
    └── StoreError                  the stored log cannot answer or accept a request
        ├── EntryTooLargeError      an entry exceeds the maximum entry size
        ├── IndexOutOfRangeError    an index or size lies beyond the log
        ├── SizeNotSignedError      no checkpoint was ever signed at the requested size
        ├── EntryNotFoundError      no entry has the requested leaf hash
        ├── UnknownLogError         the database holds no log with the requested origin
        ├── KeyMismatchError        a signing key is not one the log accepts
        ├── ReplicaGapError         a replicated batch does not start where the replica ends
        └── FsckError               stored data disagrees with what it should be
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""


class ProofError(LedgerError):
    """A Merkle inclusion or consistency proof failed verification."""


class ProofShapeError(ProofError):
    """A proof has the wrong number of hashes, or its indices or sizes are invalid."""


class NoteError(LedgerError):
    """A C2SP signed note is malformed or cannot be verified."""


class NoteFormatError(NoteError):
    """A note's text does not follow the C2SP signed-note format."""


class KeyFormatError(NoteError):
    """A verifier key (``name+keyid+base64``) or signer key string is malformed."""


class SignatureError(NoteError):
    """No signature on a note verifies under any of the known keys."""


class CheckpointError(LedgerError):
    """A checkpoint body does not follow C2SP tlog-checkpoint."""


class CosignatureError(LedgerError):
    """A C2SP tlog-cosignature is malformed or does not verify."""


class ReceiptError(LedgerError):
    """A C2SP tlog-proof@v1 receipt is malformed or does not verify."""


class KeyFileError(LedgerError):
    """A key file is missing, malformed, or readable by other users."""


class TileError(LedgerError):
    """A C2SP tlog-tiles path or tile is malformed."""


class InvalidArgumentError(LedgerError):
    """A request field is malformed; ``field`` names it (a protobuf field path)."""

    def __init__(self, field: str, reason: str) -> None:
        """Describe why ``field`` is refused."""
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class StoreError(LedgerError):
    """The stored log cannot answer or accept a request."""


class EntryTooLargeError(StoreError):
    """An entry is larger than the log accepts (entry bundles use a 16-bit length)."""


class IndexOutOfRangeError(StoreError):
    """An index or tree size lies beyond what the log holds."""


class SizeNotSignedError(StoreError):
    """The log never signed a checkpoint at the requested tree size."""


class EntryNotFoundError(StoreError):
    """No entry of the log has the requested leaf hash."""


class UnknownLogError(StoreError):
    """The database holds no log with the requested origin."""


class KeyMismatchError(StoreError):
    """A signing key is not one the log accepts (its own, or one added by a rotation)."""


class ReplicaGapError(StoreError):
    """A replicated batch does not start at the replica's size (``size`` says where it ends)."""

    def __init__(self, message: str, size: int) -> None:
        """Say where the replica ends."""
        super().__init__(message)
        self.size = size


class FsckError(StoreError):
    """Stored entries, hashes or checkpoints disagree with what they should be."""
