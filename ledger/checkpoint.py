"""C2SP transparency log checkpoints (https://c2sp.org/tlog-checkpoint).

A checkpoint is the note text that commits a log to a tree head::

    <origin>
    <tree size in decimal>
    <base64 root hash>
    [extension lines]

The log signs it as a signed note (:mod:`ledger.note`), and witnesses add
cosignatures (:mod:`ledger.cosignature`). Parsing is strict so that one tree
head has exactly one body.

**Key rotation.** A log may have several keys, all named after its origin
and told apart by their key IDs, as C2SP signed-note allows. While a log
rotates its key it signs each checkpoint with the current key and the next
one (:func:`sign_checkpoint` takes several signers): a verifier that knows
either key accepts the checkpoint, and one that knows both rejects it if
either signature fails. :func:`open_checkpoint` takes the log's keys as a
sequence and requires a valid signature by at least one of them. The
checkpoint itself (origin, size, root) does not depend on who signed it:
one re-signed with another key of the log is the same checkpoint.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import CheckpointError, SignatureError
from ledger.merkle import HASH_SIZE
from ledger.note import (
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    Verifier,
    b64decode_canonical,
    b64encode,
    open_note,
    parse_note,
    sign_note,
)

MAX_TREE_SIZE = 2**63 - 1
"""Largest tree size accepted: sizes are stored as signed 64-bit integers, as in
golang.org/x/mod/sumdb/tlog and filippo.io/torchwood."""

# ASCII digits only: Python's int() would also take "+5", " 5", "5_0" or "٥".
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x1f]")


def parse_decimal(text: str, limit: int) -> int:
    """Parse an ASCII decimal with no leading zeros (``0`` itself allowed), at most ``limit``.

    Raises ``ValueError`` otherwise.
    """
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{text[:40]!r} is not a decimal number without leading zeros")
    value = int(text)
    if value > limit:
        raise ValueError(f"{value} exceeds {limit}")
    return value


def _check_line(line: str, what: str) -> None:
    if not line:
        raise CheckpointError(f"checkpoint {what} is empty")
    # Control characters (newline included) cannot sit inside a signed note line.
    if _CONTROL.search(line):
        raise CheckpointError(f"checkpoint {what} contains a newline or control character")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as e:
        raise CheckpointError(f"checkpoint {what} is not valid Unicode") from e


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, size and root hash, plus opaque extension lines.

    Construction validates the fields (raising :class:`CheckpointError`), so
    every ``Checkpoint`` has a body that :func:`parse_checkpoint` accepts.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The spec only says SHOULD for a URL-like origin without spaces or
        # '+', and clients MUST NOT assume it: any non-empty line is accepted.
        _check_line(self.origin, "origin")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size {self.size} is out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"root hash is {len(self.root_hash)} bytes, not {HASH_SIZE}")
        for ext in self.extensions:
            _check_line(ext, "extension line")

    def body(self) -> str:
        """Return the checkpoint as note text, final newline included."""
        lines = [self.origin, str(self.size), b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body (the text of its note, without signatures).

    Strict: the body ends in a newline; it has at least three lines, none
    empty; the size is a decimal without leading zeros; the root hash is
    canonical base64 of 32 bytes. Raises :class:`CheckpointError` otherwise.
    """
    if not body.endswith("\n"):
        raise CheckpointError("checkpoint does not end in a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint has fewer than three lines")
    origin, size_text, root_text, *extensions = lines
    try:
        size = parse_decimal(size_text, MAX_TREE_SIZE)
    except ValueError as e:
        raise CheckpointError(f"bad tree size line: {e}") from e
    try:
        root = b64decode_canonical(root_text)
    except ValueError as e:
        raise CheckpointError("root hash line is not valid base64") from e
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner, *more_signers: NoteSigner) -> str:
    """Return ``checkpoint`` as a note signed by the log's ``signer`` (and ``more_signers``).

    Several signers are the keys of one log during a key rotation: the
    current key first, then the next. Requires every signer's key name to
    equal the origin (``ValueError`` otherwise): the spec says the log's key
    name SHOULD match the origin, and :func:`open_checkpoint` relies on it by
    default. Requires distinct keys (``ValueError``): one key twice is a
    mistake, and verifiers would find two lines for one key.
    """
    signers = (signer, *more_signers)
    for i, s in enumerate(signers):
        if s.name != checkpoint.origin:
            raise ValueError(f"log key name {s.name!r} does not match origin {checkpoint.origin!r}")
        if any(hmac.compare_digest(s.key_id, t.key_id) for t in signers[:i]):
            raise ValueError(f"the log key {s.name}+{s.key_id.hex()} is given twice")
    return sign_note(checkpoint.body(), signers)


def open_checkpoint(
    note: str | bytes,
    verifier: NoteVerifier | Sequence[NoteVerifier],
    *extra_verifiers: NoteVerifier,
    origin: str | None = None,
) -> Checkpoint:
    """Verify a signed checkpoint from the log whose key is ``verifier`` and parse it.

    ``verifier`` is the log's key, or a sequence of its keys (during and
    after a key rotation): a valid signature by at least one of them must be
    present. Signatures by the other log keys and by ``extra_verifiers``
    (e.g. witnesses) are checked when present: a bad one rejects the note, a
    missing one does not. Other signatures are ignored. The origin must
    equal ``origin``, or the (first) log key's name when ``origin`` is None,
    so that a checkpoint of another log signed by the same key is refused.

    Requires at least one log key and no two keys with the same name and key
    ID (``ValueError``). Raises :class:`~ledger.errors.NoteFormatError` for a
    malformed note, :class:`SignatureError` for a missing or invalid
    signature and :class:`CheckpointError` for a malformed body or a wrong
    origin.
    """
    log_keys = tuple(verifier) if isinstance(verifier, Sequence) else (verifier,)
    if not log_keys:
        raise ValueError("no log key to verify the checkpoint with")
    parsed, verified = open_note(note, [*log_keys, *extra_verifiers])
    if not any(v is key for v in verified for key in log_keys):
        names = ", ".join(sorted({f"{k.name}+{k.key_id.hex()}" for k in log_keys}))
        raise SignatureError(f"checkpoint is not signed by the log key {names}")
    checkpoint = parse_checkpoint(parsed.text)
    expected = log_keys[0].name if origin is None else origin
    if checkpoint.origin != expected:
        raise CheckpointError(f"checkpoint origin {checkpoint.origin!r} is not {expected!r}")
    return checkpoint


def own_signatures(note: str, verifiers: Sequence[Verifier]) -> str:
    """The note with only the log's own signatures, as the log signed it.

    Cosignatures travel separately; stored checkpoints are the origin's
    alone, so that the same checkpoint is the same text on every node. A log
    rotating its key signs with two keys: both signatures are kept (one line
    per key, in the note's order), so that a reader who knows either key can
    check the stored checkpoint. Requires a note that :func:`open_checkpoint`
    accepted under ``verifiers``.
    """
    parsed = parse_note(note)
    own: list[NoteSignature] = []
    for s in parsed.signatures:
        ours = any(s.name == v.name and hmac.compare_digest(s.key_id, v.key_id) for v in verifiers)
        if ours and not any(hmac.compare_digest(s.key_id, o.key_id) for o in own):
            own.append(s)
    return Note(parsed.text, tuple(own)).format()
