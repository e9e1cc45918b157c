"""Benchmark 4, ``latency``: from append to a covering signed checkpoint, under load.

:data:`Sizes.latency_appenders` tasks (16) each call
:meth:`ledger.store.Sequencer.append` in a loop for a few seconds on one
SQLite log; each call returns once a signed checkpoint covers its entry, so
its duration is the latency wanted. Reported: p50 and p99 (target: p99 <=
300 ms), with throughput and mean batch size in the detail.

Baseline: the latency of a single bare ``INSERT`` + ``COMMIT`` of one such
entry into a plain table on the same engine and database (the median of
:data:`Sizes.commits` sequential ones): the price of one durable commit,
which an append must pay at least once. A CDF of the latencies is written
to ``bench/out/latency.png`` with the raw samples next to it.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from functools import partial
from pathlib import Path

from sqlalchemy import Connection

from bench.common import (
    ENTRY_SIZES,
    BenchError,
    Context,
    Figure,
    Outcome,
    Target,
    create_bare_table,
    open_ledger,
    percentile,
)
from ledger.db import Database, sqlite_url
from ledger.store import Sequencer

NAME = "latency"
P99_TARGET = Target("<=", 300.0)
MAX_APPENDS_PER_TASK = 200_000
MS = 1000.0


async def bare_commit_latencies(db: Database, count: int, seed: int) -> list[float]:
    """Time ``count`` sequential single-row INSERT + COMMITs into a plain table; in ms."""
    statement = await create_bare_table(db)
    rng = random.Random(seed)
    samples = []
    for i in range(count):
        row = (i, rng.randbytes(rng.randint(*ENTRY_SIZES)))
        start = time.perf_counter()
        await db.write(partial(_insert_one, statement, row))
        samples.append((time.perf_counter() - start) * MS)
    return samples


def _insert_one(statement: str, row: tuple[int, bytes], conn: Connection) -> None:
    conn.exec_driver_sql(statement, row)


def plot(samples: list[float], out_dir: Path) -> Path | None:
    """Write the latency CDF; None if matplotlib is unavailable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(samples)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))])
    ax.axvline(P99_TARGET.threshold, color="red", linestyle="--", label="p99 target")
    ax.axhline(0.99, color="grey", linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("append → covering signed checkpoint (ms, log scale)")
    ax.set_ylabel("fraction of appends")
    ax.set_title("Sequencer.append latency, 16 concurrent appenders, SQLite")
    ax.legend()
    ax.grid(True, alpha=0.3)
    path = out_dir / "latency.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


async def run(ctx: Context) -> Outcome:
    """Time appends by concurrent appenders; compare with one bare commit."""
    outcome = Outcome()
    sizes = ctx.sizes
    with tempfile.TemporaryDirectory(prefix="kaifang-bench-latency-") as tmp:
        async with open_ledger(sqlite_url(Path(tmp) / "latency.db")) as ledger:
            commits = await bare_commit_latencies(ledger.db, sizes.commits, ctx.seed)
            sequencer = Sequencer(ledger.store, ledger.signer)
            samples: list[float] = []
            checkpoint_sizes: set[int] = set()
            deadline = time.perf_counter() + sizes.latency_seconds

            async def appender(n: int) -> None:
                rng = random.Random(ctx.seed * 100 + n)
                for _ in range(MAX_APPENDS_PER_TASK):
                    if time.perf_counter() >= deadline:
                        return
                    data = rng.randbytes(rng.randint(*ENTRY_SIZES))
                    start = time.perf_counter()
                    appended = await sequencer.append(data)
                    samples.append((time.perf_counter() - start) * MS)
                    if appended.index >= appended.checkpoint.size:
                        raise BenchError(
                            f"append returned index {appended.index} with a checkpoint "
                            f"of size {appended.checkpoint.size}, which does not cover it"
                        )
                    checkpoint_sizes.add(appended.checkpoint.size)

            start = time.perf_counter()
            await asyncio.gather(*(appender(n) for n in range(sizes.latency_appenders)))
            elapsed = time.perf_counter() - start
            await sequencer.close()
    bare_p50 = percentile(commits, 0.5)
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    ctx.log(NAME, f"{len(samples):,} appends: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    detail = {
        "appenders": sizes.latency_appenders,
        "appends": len(samples),
        "seconds": elapsed,
        "appends_per_s": len(samples) / elapsed,
        "checkpoints": len(checkpoint_sizes),
        "mean_batch": len(samples) / max(1, len(checkpoint_sizes)),
        "p90_ms": percentile(samples, 0.9),
        "max_ms": max(samples),
        "bare_commit_ms": {
            "p50": bare_p50,
            "p99": percentile(commits, 0.99),
            "count": len(commits),
        },
    }
    baseline_label = "one bare INSERT + COMMIT, same Database (median)"
    outcome.figures += [
        Figure("latency.p50", "append latency p50, 16 appenders", p50, "ms", bare_p50,
               baseline_label, detail=detail),
        Figure("latency.p99", "append latency p99, 16 appenders", p99, "ms", bare_p50,
               baseline_label, targets=(P99_TARGET,), detail=detail),
    ]  # fmt: skip
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    (ctx.out_dir / "latency_samples.json").write_text(
        json.dumps({"append_ms": samples, "bare_commit_ms": commits})
    )
    picture = plot(samples, ctx.out_dir)
    if picture is not None:
        outcome.info["plot"] = str(picture)
    return outcome
