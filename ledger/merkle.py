"""RFC 6962 / RFC 9162 Merkle tree maths: hashing, proofs, verification.

Pure: bytes and integers in, bytes out. Nothing here touches storage; the
store asks this module *which* complete subtrees a proof needs
(:func:`inclusion_plan`, :func:`consistency_plan`), fetches their hashes in
one query, and hands them back to :meth:`ProofPlan.assemble`.

Nodes are named ``(level, index)``: the complete subtree of ``2**level``
leaves starting at leaf ``index * 2**level``. Level 0 nodes are leaf hashes.

Hashing (RFC 6962 §2.1): leaf = SHA-256(0x00 ‖ data), interior node =
SHA-256(0x01 ‖ left ‖ right), empty tree = SHA-256("").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ledger.errors import ProofError, ProofShapeError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

NodeId = tuple[int, int]
"""A complete subtree: ``(level, i)`` covers leaves ``[i << level, (i + 1) << level)``."""


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 hash of one leaf's bytes."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 hash of an interior node from its children's hashes."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash of a tree whose leaves have the given hashes.

    Works level by level, so that a million leaves cost a million hashes and
    no recursion.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    # Unpaired right-most nodes are carried up unchanged: RFC 6962 splits at the
    # largest power of two, which is the same as pairing left to right and
    # promoting the odd node out.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def node_home(node: NodeId) -> int:
    """Return the index of the leaf whose appending completes ``node``.

    The store keeps each complete subtree's hash in the row of the entry that
    completed it, so that one append writes one row.
    """
    level, index = node
    return ((index + 1) << level) - 1


def completed_levels(leaf_index: int) -> int:
    """Return how many nodes above the leaf are completed by appending ``leaf_index``.

    That is the number of trailing one bits of ``leaf_index``: leaf 7 (0b111)
    completes the nodes at levels 1, 2 and 3.
    """
    n = leaf_index + 1
    return (n & -n).bit_length() - 1


def subtrees(begin: int, end: int) -> list[NodeId]:
    """Return the complete subtrees that exactly cover leaves ``[begin, end)``, left to right.

    Requires ``0 <= begin <= end``. Each node is the largest aligned subtree
    starting at the current position that still fits.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"invalid range [{begin}, {end})")
    width = end - begin
    if width and not width & (width - 1) and not begin & (width - 1):
        # Most ranges in a proof are one aligned subtree: skip the loop.
        level = width.bit_length() - 1
        return [(level, begin >> level)]
    nodes: list[NodeId] = []
    while begin < end:
        # The largest power of two that divides ``begin`` (any, when begin is 0)...
        align = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length()
        # ...and that fits in what remains.
        level = min(align, (end - begin).bit_length() - 1)
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Hash complete subtrees of decreasing size, left to right, into one tree hash.

    For a range ``[begin, end)`` where ``begin`` is aligned to the largest
    subtree, RFC 6962's split at the largest power of two makes the tree hash
    ``node(h1, node(h2, node(h3, …)))``.
    """
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


@dataclass(frozen=True)
class ProofPlan:
    """The leaf ranges whose tree hashes make up a proof, deepest first.

    Each range is a subtree of the RFC 6962 recursion, so its hash is the
    :func:`fold_right` of its :func:`subtrees`.
    """

    ranges: tuple[tuple[int, int], ...]
    # The subtrees of each range, computed once: plans are made per request.
    groups: tuple[tuple[NodeId, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups = tuple(tuple(subtrees(b, e)) for b, e in self.ranges)
        object.__setattr__(self, "groups", groups)

    def nodes(self) -> set[NodeId]:
        """Return every complete subtree whose hash the proof needs."""
        return {node for group in self.groups for node in group}

    def assemble(self, hashes: Mapping[NodeId, bytes]) -> list[bytes]:
        """Build the proof from the hashes of :meth:`nodes`.

        Raises ``KeyError`` if a needed node is missing: a store bug, not bad input.
        """
        return [
            hashes[group[0]] if len(group) == 1 else fold_right([hashes[n] for n in group])
            for group in self.groups
        ]


def _largest_power_of_two_below(n: int) -> int:
    """Return the largest power of two strictly less than ``n`` (requires n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """Plan the RFC 6962 §2.1.1 audit path of leaf ``index`` in a tree of ``size`` leaves.

    Requires ``0 <= index < size``; raises :class:`ProofShapeError` otherwise.
    """
    if not 0 <= index < size:
        raise ProofShapeError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size
    # Walk from the root down to the leaf, recording the sibling subtree at each
    # split; reversed at the end because proofs list the deepest sibling first.
    while end - begin > 1:
        k = _largest_power_of_two_below(end - begin)
        if index < begin + k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin += k
    return ProofPlan(tuple(reversed(ranges)))


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """Plan the RFC 6962 §2.1.2 consistency proof between tree sizes ``size1`` and ``size2``.

    Requires ``0 <= size1 <= size2``. The proof is empty when ``size1`` is 0
    or equal to ``size2``.
    """
    if not 0 <= size1 <= size2:
        raise ProofShapeError(f"no consistency proof from size {size1} to size {size2}")
    if size1 in (0, size2):
        return ProofPlan(())
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size2
    m = size1
    complete = True  # RFC 6962's flag b: is the current subtree the old tree itself?
    while True:
        n = end - begin
        if m == n:
            if not complete:
                ranges.append((begin, end))
            break
        k = _largest_power_of_two_below(n)
        if m <= k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin += k
            m -= k
            complete = False
    return ProofPlan(tuple(reversed(ranges)))


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofShapeError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _match(computed: bytes, expected: bytes, what: str) -> None:
    if not hmac.compare_digest(computed, expected):
        raise ProofError(f"{what} mismatch: computed {computed.hex()}, expected {expected.hex()}")


def root_from_inclusion_proof(
    leaf_hash_: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Return the root that an inclusion proof commits to (RFC 9162 §2.1.3.2).

    Raises :class:`ProofShapeError` if the index is not below the size or the
    proof has the wrong number of hashes for that (index, size).
    """
    if not 0 <= index < size:
        raise ProofShapeError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash(leaf_hash_, "leaf hash")
    fn, sn = index, size - 1
    r = leaf_hash_
    for p in proof:
        _check_hash(p, "proof hash")
        if sn == 0:
            raise ProofShapeError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofShapeError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(
    leaf_hash_: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that the leaf with hash ``leaf_hash_`` sits at ``index`` in the tree ``root``.

    Raises :class:`ProofError` (or its :class:`ProofShapeError` leaf) if not.
    """
    _check_hash(root, "root")
    _match(root_from_inclusion_proof(leaf_hash_, index, size, proof), root, "root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree ``root2`` of ``size2`` leaves extends the tree ``root1`` of ``size1``.

    RFC 9162 §2.1.4.2. Any tree is consistent with the empty tree, which needs
    an empty proof (as in C2SP tlog-witness) and must have the empty root
    SHA-256(""). Raises :class:`ProofError`.
    """
    _check_hash(root1, "old root")
    _check_hash(root2, "new root")
    for p in proof:
        _check_hash(p, "proof hash")
    if not 0 <= size1 <= size2:
        raise ProofShapeError(f"size {size2} cannot extend size {size1}")
    if size1 == 0:
        # The empty tree has one possible root; a checkpoint claiming another is bogus.
        _match(root1, EMPTY_ROOT, "empty tree root")
    if size1 == size2:
        if proof:
            raise ProofShapeError("proof between equal sizes must be empty")
        _match(root1, root2, "root")
        return
    if size1 == 0:
        if proof:
            raise ProofShapeError("proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofShapeError("consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        # The old tree is a complete subtree of the new one; the verifier knows its hash.
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofShapeError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofShapeError("consistency proof is too short")
    _match(fr, root1, "old root")
    _match(sr, root2, "new root")


class CompactRange:
    """The right border of a growing tree: the complete subtrees covering ``[0, size)``.

    Appending a leaf returns the nodes it completes, which is what the store
    writes into that leaf's row. Holds at most ``log2(size)`` hashes.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        """Start from a tree of ``size`` leaves given the hashes of ``subtrees(0, size)``."""
        self._size = size
        self._hashes = list(hashes)
        if len(self._hashes) != len(subtrees(0, size)):
            raise ValueError(f"a tree of size {size} has {len(subtrees(0, size))} border nodes")

    @property
    def size(self) -> int:
        """The number of leaves covered."""
        return self._size

    def append(self, leaf_hash_: bytes) -> list[bytes]:
        """Add one leaf; return the hashes it completes, leaf hash first, then level 1, 2, …."""
        completed = [leaf_hash_]
        h = leaf_hash_
        n = self._size + 1
        # Trailing one bits of the old size = nodes this leaf completes.
        for _ in range((n & -n).bit_length() - 1):
            h = _sha256(_NODE_PREFIX + self._hashes.pop() + h).digest()
            completed.append(h)
        self._hashes.append(h)
        self._size += 1
        return completed

    def hashes(self) -> list[bytes]:
        """Return the border's hashes, largest subtree first (a copy)."""
        return list(self._hashes)

    def root(self) -> bytes:
        """Return the tree hash of the leaves covered so far."""
        return fold_right(self._hashes)
