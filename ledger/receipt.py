"""C2SP transparency log proofs (https://c2sp.org/tlog-proof), the ledger's receipts.

A receipt proves offline that an entry is in the log: a signed (and possibly
cosigned) checkpoint, the entry's index, and its RFC 6962 inclusion proof::

    c2sp.org/tlog-proof@v1
    extra <base64>              (optional: here, the entry's bytes)
    index <decimal>
    <base64 hash>               (zero or more, leaf's sibling first)

    <the signed checkpoint note, verbatim>

The ``extra`` data is unauthenticated: it only says which leaf to hash, and the
inclusion proof then decides whether that leaf is in the signed tree.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from ledger import merkle
from ledger.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    open_checkpoint,
    parse_checkpoint,
    parse_decimal,
)
from ledger.errors import CheckpointError, NoteError, ProofError, ReceiptError
from ledger.note import NoteVerifier, b64decode_canonical, b64encode, parse_note

HEADER = "c2sp.org/tlog-proof@v1"

MAX_PROOF_HASHES = 63
"""Longest inclusion proof of a tree of at most 2^63 - 1 leaves: its height."""


@dataclass(frozen=True)
class Receipt:
    """A parsed tlog-proof: leaf index, inclusion proof, signed checkpoint note, extra data.

    Construction validates the fields and that ``checkpoint_note`` is a
    well-formed signed checkpoint (signatures unverified), raising
    :class:`ReceiptError`, so every ``Receipt`` formats to text that
    :func:`parse_receipt` accepts.
    """

    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: str
    # None omits the ``extra`` line; b"" (an empty entry) writes "extra " with
    # empty base64, which is still extra data present.
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.index <= MAX_TREE_SIZE:
            raise ReceiptError(f"index {self.index} is out of range")
        if len(self.proof) > MAX_PROOF_HASHES:
            raise ReceiptError(f"inclusion proof has more than {MAX_PROOF_HASHES} hashes")
        if any(len(h) != merkle.HASH_SIZE for h in self.proof):
            raise ReceiptError(f"a proof hash is not {merkle.HASH_SIZE} bytes")
        try:
            parse_checkpoint(parse_note(self.checkpoint_note).text)
        except (NoteError, CheckpointError) as e:
            raise ReceiptError(f"receipt does not hold a signed checkpoint: {e}") from e

    def format(self) -> str:
        """Return the receipt as tlog-proof text."""
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {b64encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(b64encode(h) for h in self.proof)
        return "".join(line + "\n" for line in lines) + "\n" + self.checkpoint_note


def parse_receipt(text: str | bytes) -> Receipt:
    """Parse tlog-proof text, verifying nothing.

    Raises :class:`ReceiptError` if the text departs from the format: wrong
    header, malformed ``extra`` or ``index`` line, a proof line that is not
    canonical base64 of 32 bytes, no empty line before the checkpoint, or a
    checkpoint note that is not a well-formed signed checkpoint.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ReceiptError("receipt is not valid UTF-8") from e
    # The proof section holds no empty line, so the first one ends it; the
    # checkpoint note after it may hold more.
    head, blank, checkpoint_note = text.partition("\n\n")
    if not blank:
        raise ReceiptError("receipt has no empty line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise ReceiptError(f"receipt does not start with {HEADER!r}")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        try:
            extra = b64decode_canonical(rest[0].removeprefix("extra "))
        except ValueError as e:
            raise ReceiptError("extra line is not valid base64") from e
        rest = rest[1:]
    if not rest or not rest[0].startswith("index "):
        raise ReceiptError("receipt has no index line")
    try:
        index = parse_decimal(rest[0].removeprefix("index "), MAX_TREE_SIZE)
    except ValueError as e:
        raise ReceiptError(f"bad index line: {e}") from e
    hash_lines = rest[1:]
    if len(hash_lines) > MAX_PROOF_HASHES:
        raise ReceiptError(f"inclusion proof has more than {MAX_PROOF_HASHES} hashes")
    try:
        proof = tuple(b64decode_canonical(line) for line in hash_lines)
    except ValueError as e:
        raise ReceiptError("a proof line is not valid base64") from e
    return Receipt(index, proof, checkpoint_note, extra)


def verify_receipt(
    receipt: Receipt | str | bytes, verifier: NoteVerifier, *, leaf: bytes | None = None
) -> Checkpoint:
    """Check that a leaf is in the tree of a checkpoint signed by ``verifier``; return it.

    The leaf's bytes are ``leaf`` if given (and then ``extra``, if present,
    must equal it), else the receipt's ``extra``. The checkpoint is opened as
    :func:`ledger.checkpoint.open_checkpoint` does, so its origin must be the
    log key's name.

    Raises :class:`ReceiptError` if the receipt is malformed, names no leaf,
    or its inclusion proof does not verify; the errors of
    :func:`~ledger.checkpoint.open_checkpoint` (``SignatureError``,
    ``CheckpointError``, ...) if the checkpoint is not the log's.
    """
    parsed = receipt if isinstance(receipt, Receipt) else parse_receipt(receipt)
    checkpoint = open_checkpoint(parsed.checkpoint_note, verifier)
    if leaf is None:
        if parsed.extra is None:
            raise ReceiptError("receipt carries no extra data and no leaf was given")
        leaf = parsed.extra
    elif parsed.extra is not None and not hmac.compare_digest(parsed.extra, leaf):
        raise ReceiptError("receipt's extra data is not the given leaf")
    leaf_hash = merkle.leaf_hash(leaf)
    try:
        merkle.verify_inclusion(
            leaf_hash, parsed.index, checkpoint.size, parsed.proof, checkpoint.root_hash
        )
    except ProofError as e:
        raise ReceiptError(f"inclusion proof does not verify: {e}") from e
    return checkpoint
