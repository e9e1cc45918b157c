"""What the benchmarks share: figures and targets, sizes, test data, timing, ledgers.

A benchmark is an ``async def run(ctx: Context) -> Outcome``. It measures
each figure together with a baseline taken in the same run, so that the
ratio between the two means something on a machine that other people use at
the same time.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection
from sqlalchemy.sql import Executable

from ledger.db import Database
from ledger.note import Signer
from ledger.store import LogStore

ORIGIN = "bench.kaifang.example/log"
REPO_ROOT = Path(__file__).resolve().parent.parent

# The plain table that the "bare" baselines write to: what storing the same
# bytes costs without hashing, dedup, tree nodes or checkpoints.
_BARE_DDL = {
    # INTEGER PRIMARY KEY: SQLite's rowid itself, the cheapest possible table.
    "sqlite": "CREATE TABLE bare (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    "postgresql": "CREATE TABLE bare (id BIGINT PRIMARY KEY, data BYTEA NOT NULL)",
}
# The bare insert, as driver SQL taking positional tuples, in each driver's
# parameter style: SQLAlchemy hands the rows to the driver's executemany
# untouched, the cheapest way through it, hence a strict baseline.
_BARE_INSERT = {
    "qmark": "INSERT INTO bare (id, data) VALUES (?, ?)",
    "numeric_dollar": "INSERT INTO bare (id, data) VALUES ($1, $2)",
}


class BenchError(RuntimeError):
    """A benchmark found something wrong (not slow: wrong), e.g. a root mismatch."""


# -- figures and targets ---------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A goal from the issue, on a figure's value or on its ratio to the baseline."""

    op: Literal[">=", ">", "<=", "<"]
    threshold: float
    on: Literal["value", "ratio"] = "value"

    def met(self, figure: Figure) -> bool | None:
        """Whether ``figure`` meets the target; None if the measured number is missing."""
        got = figure.value if self.on == "value" else figure.ratio
        if got is None or math.isnan(got):
            return None
        return {
            ">=": got >= self.threshold,
            ">": got > self.threshold,
            "<=": got <= self.threshold,
            "<": got < self.threshold,
        }[self.op]

    def describe(self, unit: str) -> str:
        """Return e.g. ``>= 20,000 entries/s`` or ``ratio >= 0.5``."""
        if self.on == "ratio":
            return f"ratio {self.op} {self.threshold:g}"
        return f"{self.op} {format_number(self.threshold)} {unit}"


@dataclass
class Figure:
    """One measured number, its same-run baseline, their ratio and the targets it is held to."""

    key: str
    label: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str | None = None
    targets: tuple[Target, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """``value / baseline``, if there is a baseline."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        """True if every target is met, False if one is missed, None if there is none."""
        verdicts = [t.met(self) for t in self.targets]
        if not verdicts:
            return None
        if any(v is False for v in verdicts):
            return False
        return None if any(v is None for v in verdicts) else True

    def to_json(self) -> dict[str, Any]:
        """The figure as it appears in ``bench/report.json``."""
        return {
            "key": self.key,
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_label": self.baseline_label,
            "ratio": self.ratio,
            "targets": [
                {
                    "on": t.on,
                    "op": t.op,
                    "threshold": t.threshold,
                    "text": t.describe(self.unit),
                    "met": t.met(self),
                }
                for t in self.targets
            ],
            "passed": self.passed,
            "detail": self.detail,
        }


@dataclass
class Outcome:
    """What one benchmark returns: its figures, plus free-form facts and remarks."""

    figures: list[Figure] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def format_number(x: float) -> str:
    """Format a figure for the table: thousands separators, few decimals."""
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


# -- sizes and context -----------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does; :meth:`quick` is the smoke-test variant."""

    append_entries: int = 200_000
    pymerkle_entries: int = 100_000
    our_proofs: int = 2_000
    pymerkle_proofs: int = 200
    big_log: int = 1_000_000
    proof_seconds: float = 5.0
    proof_tasks: int = 8
    latency_seconds: float = 5.0
    latency_appenders: int = 16
    commits: int = 50
    # admission: offers per phase (the stock; a phase also stops at its time
    # limit), clients, statements per SubmitStatements call, and how long each
    # baseline runs.
    admission_unary: int = 6_000
    admission_batched: int = 16_000
    admission_seconds: float = 5.0
    admission_clients: int = 16
    admission_batch: int = 100
    admission_parties: int = 200
    echo_seconds: float = 2.0
    ed25519_seconds: float = 1.0
    # federation: members of the full mesh, offers/s published over them and
    # for how long; entries of the log a new member catches up with. Zero
    # seconds or zero entries skips that part.
    federation_nodes: int = 5
    federation_rate: float = 500.0
    federation_seconds: float = 60.0
    catchup_entries: int = 1_000_000
    # soak: nodes of the network, statements/s (reads come on top, see
    # bench.soak) and how long the load lasts.
    soak_nodes: int = 3
    soak_rate: float = 40.0
    soak_seconds: float = 600.0

    @classmethod
    def quick(cls) -> Sizes:
        """Small sizes for a smoke test of the whole suite (well under a minute)."""
        return cls(
            append_entries=10_000,
            pymerkle_entries=10_000,
            our_proofs=300,
            pymerkle_proofs=50,
            big_log=30_000,
            proof_seconds=1.0,
            latency_seconds=1.5,
            commits=20,
            admission_unary=600,
            admission_batched=2_000,
            admission_seconds=3.0,
            admission_parties=50,
            echo_seconds=0.5,
            ed25519_seconds=0.3,
            federation_rate=100.0,
            federation_seconds=8.0,
            catchup_entries=30_000,
            soak_seconds=20.0,
        )


@dataclass(frozen=True)
class Context:
    """What every benchmark is given: its sizes, a seed, where to put artefacts."""

    sizes: Sizes
    seed: int
    out_dir: Path
    quick: bool

    def log(self, bench: str, message: str) -> None:
        """Report progress on stderr (stdout carries the table)."""
        print(f"[{bench}] {message}", file=sys.stderr, flush=True)


# -- test data -------------------------------------------------------------

ENTRY_SIZES = (450, 550)


def iter_entries(count: int, seed: int) -> Iterator[bytes]:
    """Yield ``count`` distinct pseudo-random entries of about 500 bytes, reproducibly."""
    rng = random.Random(seed)
    low, high = ENTRY_SIZES
    for _ in range(count):
        yield rng.randbytes(rng.randint(low, high))


def make_entries(count: int, seed: int) -> list[bytes]:
    """Return ``count`` entries as :func:`iter_entries` yields them."""
    return list(iter_entries(count, seed))


# -- timing and statistics -------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Return the ``q``-quantile (0..1) of ``values`` by linear interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Throughput:
    """Operations completed by concurrent workers in a bounded time."""

    operations: int
    seconds: float
    workers: int

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.operations / self.seconds if self.seconds > 0 else math.nan


async def run_concurrently(
    operation: Callable[[random.Random], Awaitable[object]],
    *,
    workers: int,
    seconds: float,
    seed: int,
    max_per_worker: int = 1_000_000,
    warmup: int = 20,
) -> Throughput:
    """Run ``operation`` in ``workers`` tasks for ``seconds`` (bounded also by count).

    Each worker has its own seeded generator, so runs repeat the same
    requests. ``warmup`` operations per worker run untimed first (connections
    opened, caches filled, code paths imported).
    """

    async def warm(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        for _ in range(warmup):
            await operation(rng)

    await asyncio.gather(*(warm(n) for n in range(workers)))
    deadline = time.perf_counter() + seconds

    async def work(n: int) -> int:
        rng = random.Random(seed * 1000 + workers + n)
        done = 0
        while done < max_per_worker and time.perf_counter() < deadline:
            await operation(rng)
            done += 1
        return done

    start = time.perf_counter()
    counts = await asyncio.gather(*(work(n) for n in range(workers)))
    return Throughput(sum(counts), time.perf_counter() - start, workers)


# -- ledgers and bare tables -----------------------------------------------


@dataclass(frozen=True)
class Ledger:
    """A migrated database with one log in it, and the key that signs its checkpoints."""

    db: Database
    store: LogStore
    signer: Signer


@asynccontextmanager
async def open_database(url: str) -> AsyncIterator[Database]:
    """The ledger's :class:`Database` at ``url``, migrated; disposed of on exit."""
    db = Database(url)
    try:
        await db.migrate()
        yield db
    finally:
        await db.dispose()


@asynccontextmanager
async def open_ledger(url: str, signer: Signer | None = None) -> AsyncIterator[Ledger]:
    """Migrate the database at ``url``, create the benchmark log in it; dispose on exit."""
    async with open_database(url) as db:
        signer = signer or Signer.generate(ORIGIN)
        store = await LogStore.create(db, ORIGIN, signer.verifier_key())
        yield Ledger(db, store, signer)


def execute_many(statement: str | Executable, rows: list[Any], conn: Connection) -> None:
    """A unit of work: one executemany of ``rows`` (bind the first two with ``partial``).

    A string is driver SQL taking tuples; anything else is a SQLAlchemy
    statement taking dicts.
    """
    if isinstance(statement, str):
        conn.exec_driver_sql(statement, rows)
    else:
        conn.execute(statement, rows)


async def create_bare_table(db: Database) -> str:
    """Create the table ``bare`` with the plainest DDL the database has.

    Returns the driver-level INSERT for it, to run with ``exec_driver_sql``
    and (id, data) tuples through :meth:`Database.write`, as the ledger runs
    its own statements.
    """

    def create(conn: Connection) -> str:
        conn.exec_driver_sql(_BARE_DDL[conn.dialect.name])
        return _BARE_INSERT[conn.dialect.paramstyle]

    return await db.write(create)


# -- servers in processes of their own ---------------------------------------

SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ServerProcess:
    """A server running in a process of its own: its port and process id."""

    port: int
    pid: int


@asynccontextmanager
async def server_process(
    module: str, args: list[str], log_file: Path
) -> AsyncIterator[ServerProcess]:
    """Run ``python -m module args``; yield the port it prints; stop it on exit.

    The module prints ``{"port": N}`` once serving and stops when its standard
    input closes, so it cannot outlive the benchmark, even one that died.
    """
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args,
            cwd=REPO_ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )  # fmt: skip
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), SERVER_START_TIMEOUT_S)
            if not line:
                raise BenchError(f"{module} exited at start; see its log, {log_file}")
            yield ServerProcess(int(json.loads(line)["port"]), process.pid)
        finally:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), SERVER_STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
