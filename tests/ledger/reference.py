"""A naive Merkle tree reference, written straight from RFC 6962 §2.1, for tests only.

Deliberately the slow, obvious recursion of the RFC text, sharing no code with
:mod:`ledger.merkle`: the tests compare the fast implementation against it.
Functions take the list of *leaf hashes* (``MTH`` of each one-entry list), so
that ``D[n]`` below is a list of 32-byte leaf hashes rather than entries.

RFC 6962 §2.1::

    MTH({})       = SHA-256()
    MTH({d(0)})   = SHA-256(0x00 || d(0))
    MTH(D[n])     = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
                    where k is the largest power of two smaller than n

    PATH(0, {d(0)}) = {}
    PATH(m, D[n])   = PATH(m, D[0:k]) : MTH(D[k:n])      for m < k
    PATH(m, D[n])   = PATH(m - k, D[k:n]) : MTH(D[0:k])  for m >= k

    PROOF(m, D[n])           = SUBPROOF(m, D[n], true)
    SUBPROOF(m, D[m], true)  = {}
    SUBPROOF(m, D[m], false) = {MTH(D[m])}
    SUBPROOF(m, D[n], b)     = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])          for m <= k
    SUBPROOF(m, D[n], b)     = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])  for m > k
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(entry: bytes) -> bytes:
    """Return ``MTH({d(0)})`` for the single entry ``d(0)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Return the largest power of two smaller than ``n`` (``n > 1``)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash of the tree whose leaf hashes are ``leaves``."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = _split(n)
    return _node(mth(leaves[:k]), mth(leaves[k:]))


def mth_of_entries(entries: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash of a list of entries (hashing each leaf first)."""
    return mth([leaf_hash(d) for d in entries])


def path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Return the audit path ``PATH(m, D[n])`` for leaf ``m``, deepest sibling first."""
    n = len(leaves)
    if not 0 <= m < n:
        raise ValueError(f"PATH is defined for 0 <= m < n, got m={m}, n={n}")
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Return the consistency proof ``PROOF(m, D[n])`` between sizes ``m`` and ``n``.

    The RFC defines it for ``0 < m <= n`` only.
    """
    n = len(leaves)
    if not 0 < m <= n:
        raise ValueError(f"PROOF is defined for 0 < m <= n, got m={m}, n={n}")
    return _subproof(m, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], b), mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), mth(leaves[:k])]
