"""Benchmark 1, ``append``: batched appends with dedup against a bare bulk insert.

The same ~500-byte entries are written twice to fresh databases on each
engine: once through :meth:`ledger.store.Sequencer.append_batch` (hashing,
dedup lookups, tree nodes, one signed checkpoint per chunk) and once as a
*bare bulk insert* into a plain two-column table, through the same
:class:`ledger.db.Database` (the same engine, driver and write transactions
as the ledger's), with the same executemany per transaction of
:data:`ledger.store.BULK_CHUNK` rows, as driver SQL with (id, data) tuples
(``exec_driver_sql``): the cheapest way through SQLAlchemy, hence a strict
baseline. The bare insert runs before and after the ledger's, and the
faster of the two is the baseline.

A third measurement, without a target, inserts the rows the ledger would
write (hashes precomputed) straight into its ``entries`` table: the cost of
the schema alone, which bounds what the ledger's logic could reach.

Targets (the issue): ratio >= 0.5 on each engine, and >= 20,000 entries/s on
SQLite. PostgreSQL runs with fsync on (``postgres_server(durable=True)``).
"""

from __future__ import annotations

import itertools
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Context,
    Figure,
    Outcome,
    Target,
    create_bare_table,
    execute_many,
    make_entries,
    open_database,
    open_ledger,
)
from ledger.db import sqlite_url
from ledger.merkle import CompactRange, leaf_hash
from ledger.store import BULK_CHUNK, Sequencer
from tests.pg import PostgresServer, PostgresUnavailableError, create_database, postgres_server

NAME = "append"
# The ledger's own insert, as driver SQL taking tuples, per parameter style.
_ENTRIES_INSERT = {
    "qmark": "INSERT INTO entries (log_id, idx, leaf_hash, nodes, data) VALUES (?, ?, ?, ?, ?)",
    "numeric_dollar": (
        "INSERT INTO entries (log_id, idx, leaf_hash, nodes, data) VALUES ($1, $2, $3, $4, $5)"
    ),
}

RATIO_TARGET = Target(">=", 0.5, on="ratio")
SQLITE_RATE_TARGET = Target(">=", 20_000)
# One fresh database per measurement, in the order they run.
_DATABASES = ("bare1", "ledger", "schema", "bare2")


async def bare_insert(url: str, datas: list[bytes], chunk: int = BULK_CHUNK) -> float:
    """Insert ``datas`` into a fresh plain table, ``chunk`` rows per transaction; seconds."""
    async with open_database(url) as db:
        statement = await create_bare_table(db)
        start = time.perf_counter()
        for first in range(0, len(datas), chunk):
            rows = list(enumerate(datas[first : first + chunk], start=first))
            await db.write(partial(execute_many, statement, rows))
        return time.perf_counter() - start


async def schema_insert(url: str, datas: list[bytes], chunk: int = BULK_CHUNK) -> float:
    """Insert precomputed ledger rows straight into ``entries``; seconds.

    The rows are what the ledger would write (leaf hashes and subtree hashes
    computed beforehand, untimed), passed as the ledger passes them (driver
    SQL, tuples), so this is the cost of the schema alone
    (its primary key and its unique leaf-hash index), without hashing, dedup
    lookups, the tree border or checkpoints: it separates what the ledger's
    logic costs from what its table costs.
    """
    border = CompactRange()
    hashes = [leaf_hash(d) for d in datas]
    nodes = [b"".join(border.append(h)[1:]) for h in hashes]
    async with open_ledger(url) as ledger:
        log_id = ledger.store.log_id
        statement = _ENTRIES_INSERT[ledger.db.engine.dialect.paramstyle]
        start = time.perf_counter()
        for first in range(0, len(datas), chunk):
            rows = [
                (log_id, i, h, nodes[i], datas[i])
                for i, h in enumerate(hashes[first : first + chunk], start=first)
            ]
            await ledger.db.write(partial(execute_many, statement, rows))
        return time.perf_counter() - start


async def ledger_append(url: str, datas: list[bytes]) -> tuple[float, dict[str, Any]]:
    """Append ``datas`` to a fresh log with ``Sequencer.append_batch``; seconds and checks."""
    async with open_ledger(url) as ledger:
        sequencer = Sequencer(ledger.store, ledger.signer)
        start = time.perf_counter()
        indices, checkpoint = await sequencer.append_batch(datas)
        seconds = time.perf_counter() - start
        if indices != list(range(len(datas))) or checkpoint.size != len(datas):
            raise BenchError(
                f"append_batch of {len(datas)} distinct entries returned indices "
                f"{indices[:3]}… and checkpoint size {checkpoint.size}"
            )
        # Dedup: the same entries again must get their first indices back and
        # leave the log's size alone (untimed; a correctness check only).
        sample = datas[:1000]
        again, after = await sequencer.append_batch(sample)
        if again != list(range(len(sample))) or after.size != len(datas):
            raise BenchError("re-appending known entries did not return their first indices")
        version = None
        if not ledger.db.is_sqlite:
            version = await ledger.db.read(
                lambda conn: conn.exec_driver_sql("SHOW server_version").scalar_one()
            )
    return seconds, {"checkpoints": -(-len(datas) // BULK_CHUNK), "server_version": version}


async def _measure(
    ctx: Context, engine_name: str, urls: dict[str, str], datas: list[bytes]
) -> list[Figure]:
    """Bare, ledger, schema-only, bare again on fresh databases; the figures for one engine."""
    n = len(datas)
    bare_1 = await bare_insert(urls["bare1"], datas)
    ctx.log(NAME, f"{engine_name}: bare insert {n:,} rows in {bare_1:.2f} s")
    ours, facts = await ledger_append(urls["ledger"], datas)
    ctx.log(NAME, f"{engine_name}: append_batch {n:,} entries in {ours:.2f} s")
    schema = await schema_insert(urls["schema"], datas)
    ctx.log(NAME, f"{engine_name}: plain INSERT into entries in {schema:.2f} s")
    bare_2 = await bare_insert(urls["bare2"], datas)
    ctx.log(NAME, f"{engine_name}: bare insert again in {bare_2:.2f} s")
    targets = (SQLITE_RATE_TARGET, RATIO_TARGET) if engine_name == "sqlite" else (RATIO_TARGET,)
    baseline = n / min(bare_1, bare_2)
    baseline_label = "bare executemany INSERT, same Database and chunk (best of 2)"
    main = Figure(
        key=f"append.{engine_name}",
        label=f"append_batch, {engine_name}",
        value=n / ours,
        unit="entries/s",
        baseline=baseline,
        baseline_label=baseline_label,
        targets=targets,
        detail={
            "entries": n,
            "entry_bytes_total": sum(len(d) for d in datas),
            "chunk": BULK_CHUNK,
            "seconds": ours,
            "bare_seconds": [bare_1, bare_2],
            "schema_only_seconds": schema,
            **facts,
        },
    )
    # Not a target: how much of the gap to the bare insert is the table itself.
    schema_only = Figure(
        key=f"append.{engine_name}.schema_only",
        label=f"INSERT into entries, no ledger logic, {engine_name}",
        value=n / schema,
        unit="entries/s",
        baseline=baseline,
        baseline_label=baseline_label,
        detail={"entries": n, "chunk": BULK_CHUNK, "seconds": schema},
    )
    return [main, schema_only]


async def run(ctx: Context) -> Outcome:
    """Measure append throughput on SQLite and on durable PostgreSQL."""
    outcome = Outcome()
    datas = make_entries(ctx.sizes.append_entries, ctx.seed)
    with tempfile.TemporaryDirectory(prefix="kaifang-bench-append-") as tmp:
        urls = {k: sqlite_url(Path(tmp) / f"{k}.db") for k in _DATABASES}
        outcome.figures += await _measure(ctx, "sqlite", urls, datas)
    try:
        with postgres_server(durable=True) as server:
            urls = await _pg_urls(server)
            figures = await _measure(ctx, "postgresql", urls, datas)
            outcome.figures += figures
            outcome.info["postgresql_server_version"] = figures[0].detail["server_version"]
    except PostgresUnavailableError as e:
        outcome.notes.append(f"PostgreSQL leg skipped: {e}")
        ctx.log(NAME, f"PostgreSQL leg skipped: {e}")
    return outcome


_db_names = itertools.count()


async def _pg_urls(server: PostgresServer) -> dict[str, str]:
    return {k: await create_database(server, f"bench_{k}_{next(_db_names)}") for k in _DATABASES}
