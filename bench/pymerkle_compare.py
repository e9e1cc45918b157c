"""Benchmark 2, ``pymerkle``: the ledger side by side with pymerkle 7's ``SqliteTree``.

Both get the same entries. pymerkle is configured as RFC 6962 (SHA-256, its
default "security" mode: leaves hashed as 0x00||data and nodes as
0x01||left||right), and its root must equal ours at every size we signed:
the run fails loudly otherwise, since a comparison of different trees would
mean nothing. A few proofs are cross-checked too (our audit paths equal
pymerkle's; ours verify against our roots).

- Append: pymerkle's bulk ``append_entries`` (one transaction) against our
  :meth:`Sequencer.append_batch` on a fresh database. The log the proofs
  run on is then built apart, by :meth:`LogStore.sequence` in chunks of
  seeded random sizes, so that it signs checkpoints at irregular sizes.
- Proofs: a fixed, seeded list of (index, size) and (old, new) pairs, where
  every size is one the log signed; ours in-process, sequentially, like
  pymerkle's synchronous calls. pymerkle's proofs are slow, so a bounded
  number of them are timed: first on a freshly opened tree (cold subroot
  cache), then the next ones on the same tree (warmer cache). The faster of
  the two is the baseline, which is the conservative choice.

Targets (the issue): our proof rates >= 10x pymerkle's; our append >= 0.25x.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pymerkle import SqliteTree

from bench.common import BenchError, Context, Figure, Outcome, Target, make_entries, open_ledger
from ledger.db import sqlite_url
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.store import BULK_CHUNK, LogStore, Sequencer

NAME = "pymerkle"
PROOF_TARGET = Target(">=", 10.0, on="ratio")
APPEND_TARGET = Target(">=", 0.25, on="ratio")
CROSS_CHECKS = 20

Pair = tuple[int, int]


def chunk_sizes(total: int, rng: random.Random) -> list[int]:
    """Split ``total`` into seeded random chunk sizes, about 36 of them whatever the total.

    Between 1/200 and 1/20 of the total (500 to 5,000 for 100,000 entries).
    """
    low = max(1, total // 200)
    high = max(low, min(BULK_CHUNK, total // 20))
    sizes: list[int] = []
    left = total
    while left > 0:
        size = min(left, rng.randint(low, high))
        sizes.append(size)
        left -= size
    return sizes


def proof_pairs(signed: list[int], count: int, rng: random.Random) -> tuple[list[Pair], list[Pair]]:
    """Return ``count`` (index, size) pairs and ``count`` (old, new) pairs over signed sizes."""
    if len(signed) < 2:
        raise BenchError(f"the log signed {len(signed)} sizes; consistency proofs need two")
    inclusion = []
    for _ in range(count):
        size = rng.choice(signed)
        inclusion.append((rng.randrange(size), size))
    consistency = []
    for _ in range(count):
        old, new = sorted(rng.sample(signed, 2))
        consistency.append((old, new))
    return inclusion, consistency


def open_tree(path: Path) -> Any:
    """Open pymerkle's SQLite tree as RFC 6962: SHA-256, 0x00/0x01 domain separation."""
    tree = SqliteTree(str(path), algorithm="sha256", disable_security=False)
    if (tree.algorithm, tree.leaf_prefix, tree.node_prefix) != ("sha256", b"\x00", b"\x01"):
        raise BenchError("pymerkle is not configured for RFC 6962 hashing")
    return tree


def time_calls(calls: list[Callable[[], object]]) -> float:
    """Run each call once; return the seconds taken."""
    start = time.perf_counter()
    for call in calls:
        call()
    return time.perf_counter() - start


async def check_roots(store: LogStore, tree: Any, signed: list[int]) -> None:
    """Fail loudly unless pymerkle's root equals our signed root at every signed size."""
    for size in signed:
        ours = (await store.checkpoint(size)).root_hash
        theirs = tree.get_root(size)
        if ours != theirs:
            raise BenchError(
                f"ROOT MISMATCH at size {size}: ours {ours.hex()} != pymerkle {theirs.hex()}; "
                "the two trees differ, so no comparison between them means anything"
            )


async def cross_check_proofs(
    store: LogStore,
    tree: Any,
    datas: list[bytes],
    inclusion: list[Pair],
    consistency: list[Pair],
) -> None:
    """Check a few of our proofs against our roots, and our audit paths against pymerkle's."""
    for index, size in inclusion[:CROSS_CHECKS]:
        proof, checkpoint = await store.inclusion_proof(index, size)
        verify_inclusion(leaf_hash(datas[index]), index, size, proof, checkpoint.root_hash)
        # pymerkle's path is the leaf itself followed by the audit path, deepest first.
        theirs = tree.prove_inclusion(index + 1, size).path
        if list(theirs[1:]) != proof:
            raise BenchError(f"inclusion proof of {index} at {size} differs from pymerkle's")
    for old, new in consistency[:CROSS_CHECKS]:
        proof, checkpoint = await store.consistency_proof(old, new)
        old_root = (await store.checkpoint(old)).root_hash
        verify_consistency(old, new, proof, old_root, checkpoint.root_hash)


def pymerkle_proof_rates(
    path: Path, inclusion: list[Pair], consistency: list[Pair], k: int
) -> tuple[dict[str, dict[str, float]], Any]:
    """Time ``k`` of pymerkle's proofs of each kind on a freshly opened tree, then ``k`` more.

    Returns the rates (cold: empty subroot cache; warm: the next ``k`` pairs
    on the same tree) and the cache's statistics at the end.
    """
    tree = open_tree(path)
    try:
        rates: dict[str, dict[str, float]] = {"inclusion": {}, "consistency": {}}
        for phase, pairs in (("cold", slice(0, k)), ("warm", slice(k, 2 * k))):
            calls = [_bind(tree.prove_inclusion, i + 1, s) for i, s in inclusion[pairs]]
            rates["inclusion"][phase] = k / time_calls(calls)
            calls = [_bind(tree.prove_consistency, o, s) for o, s in consistency[pairs]]
            rates["consistency"][phase] = k / time_calls(calls)
        return rates, tree.get_cache_info()
    finally:
        tree.close()


async def run(ctx: Context) -> Outcome:
    """Append the same entries to both, check the roots agree, time both kinds of proof."""
    outcome = Outcome()
    n = ctx.sizes.pymerkle_entries
    datas = make_entries(n, ctx.seed)
    rng = random.Random(ctx.seed + 1)
    chunks = chunk_sizes(n, rng)
    with tempfile.TemporaryDirectory(prefix="kaifang-bench-pymerkle-") as tmp:
        tree_path = Path(tmp) / "pymerkle.db"
        tree = open_tree(tree_path)
        start = time.perf_counter()
        tree.append_entries(datas)
        theirs_append = time.perf_counter() - start
        tree.close()
        ctx.log(NAME, f"pymerkle append_entries {n:,} in {theirs_append:.2f} s")

        async with open_ledger(sqlite_url(Path(tmp) / "append.db")) as ledger:
            start = time.perf_counter()
            await Sequencer(ledger.store, ledger.signer).append_batch(datas)
            ours_append = time.perf_counter() - start
        ctx.log(NAME, f"ours: append_batch {n:,} in {ours_append:.2f} s")

        async with open_ledger(sqlite_url(Path(tmp) / "ours.db")) as ledger:
            store = ledger.store
            signed: list[int] = []
            position = 0
            start = time.perf_counter()
            for size in chunks:
                _, checkpoint = await store.sequence(
                    datas[position : position + size], ledger.signer
                )
                position += size
                signed.append(checkpoint.size)
            build = time.perf_counter() - start
            ctx.log(NAME, f"ours: sequence {n:,} in {len(chunks)} chunks in {build:.2f} s")

            inclusion, consistency = proof_pairs(signed, ctx.sizes.our_proofs, rng)
            checker = open_tree(tree_path)
            await check_roots(store, checker, signed)
            await cross_check_proofs(store, checker, datas, inclusion, consistency)
            checker.close()
            ctx.log(NAME, f"roots agree at all {len(signed)} signed sizes; proofs cross-checked")

            # Timed as pymerkle's are: the first half of the pairs on a freshly
            # opened store (empty row cache), the second half after; the
            # faster of the two counts.
            fresh = await LogStore.open(ledger.db, store.origin)
            our_rates = {
                "inclusion": await _our_rates(fresh.inclusion_proof, inclusion),
                "consistency": await _our_rates(fresh.consistency_proof, consistency),
            }
            ours_inclusion = max(our_rates["inclusion"].values())
            ours_consistency = max(our_rates["consistency"].values())

        k = min(ctx.sizes.pymerkle_proofs, len(inclusion) // 2)
        their_rates, cache = pymerkle_proof_rates(tree_path, inclusion, consistency, k)
        for kind, rates in their_rates.items():
            ctx.log(
                NAME, f"pymerkle {kind}: {rates['cold']:,.0f}/s cold, {rates['warm']:,.0f}/s warm"
            )
        ctx.log(
            NAME, f"ours: {ours_inclusion:,.0f} inclusion/s, {ours_consistency:,.0f} consistency/s"
        )

    proof_detail = {
        "log_size": n,
        "signed_sizes": len(signed),
        "our_proofs_timed": len(inclusion),
        "pymerkle_proofs_timed": 2 * k,
        "pymerkle_cache": {"size": cache.size, "hits": cache.hits, "misses": cache.misses},
        "our_rates": our_rates,
    }
    outcome.figures += [
        Figure(
            key="pymerkle.append",
            label="append, ours vs pymerkle",
            value=n / ours_append,
            unit="entries/s",
            baseline=n / theirs_append,
            baseline_label="pymerkle SqliteTree.append_entries (one transaction)",
            targets=(APPEND_TARGET,),
            detail={
                "entries": n,
                "chunk": BULK_CHUNK,
                "seconds": ours_append,
                "pymerkle_seconds": theirs_append,
                "proof_log_build_seconds": build,
                "proof_log_chunks": len(chunks),
            },
        ),
        Figure(
            key="pymerkle.inclusion",
            label=f"inclusion proofs, {n:,} log",
            value=ours_inclusion,
            unit="proofs/s",
            baseline=max(their_rates["inclusion"].values()),
            baseline_label="pymerkle prove_inclusion (best of cold/warm cache; ours likewise)",
            targets=(PROOF_TARGET,),
            detail={**proof_detail, "pymerkle_rates": their_rates["inclusion"]},
        ),
        Figure(
            key="pymerkle.consistency",
            label=f"consistency proofs, {n:,} log",
            value=ours_consistency,
            unit="proofs/s",
            baseline=max(their_rates["consistency"].values()),
            baseline_label="pymerkle prove_consistency (best of cold/warm cache; ours likewise)",
            targets=(PROOF_TARGET,),
            detail={**proof_detail, "pymerkle_rates": their_rates["consistency"]},
        ),
    ]
    outcome.info["roots_checked_at_sizes"] = len(signed)
    return outcome


async def _our_rates(
    prove: Callable[[int, int], Awaitable[object]], pairs: list[Pair]
) -> dict[str, float]:
    """Rates of ``prove`` over the first half of ``pairs`` (cold) and the second (warm)."""
    half = len(pairs) // 2
    rates: dict[str, float] = {}
    for phase, chunk in (("cold", pairs[:half]), ("warm", pairs[half:])):
        start = time.perf_counter()
        for a, b in chunk:
            await prove(a, b)
        rates[phase] = len(chunk) / (time.perf_counter() - start)
    return rates


def _bind(method: Callable[[int, int], object], a: int, b: int) -> Callable[[], object]:
    return lambda: method(a, b)
