"""Benchmark 5, ``admission``: signed offers admitted over gRPC by 16 concurrent clients.

A real node (:mod:`bench.node`, i.e. :func:`exchange.server.start_node`) runs
in a process of its own, as a node serves remote clients, on a fresh database
of each engine (SQLite, then durable PostgreSQL). Untimed
setup: :data:`Sizes.admission_parties` parties register and the register
authority records one patent per offer to come, all through
``SubmitStatements``. Every statement is built and signed before anything
is timed (signing is the client's cost, not the node's), once for both
engines: the register key is one file both nodes are given.

Then, timed, one ``OfferPublished`` per patent, signed by its owner, each
patent in one phase only (a patent has at most one active offer):

- **unary**: :data:`Sizes.admission_clients` client tasks, each on a channel
  (and connection) of its own, call ``SubmitStatement`` in a loop;
- **batched**: as many clients send ``SubmitStatements`` of
  :data:`Sizes.admission_batch` offers each.

A phase ends when its offers run out or after :data:`Sizes.admission_seconds`
(the calls then in flight finish and count). How many offers a phase gets
is sized on each node from the rate at which it recorded the first patents
of the setup (:func:`measure_node`), so that a slow node does not spend
minutes on untimed setup; the offers are signed for the targets' rates.
Every outcome must be an admission (not a refusal, not a duplicate) and the
log must have grown by exactly as many entries: anything else is a bug of
the benchmark, which fails loudly rather than report a rate of refusals.

Targets (the issue): >= 1,500 statements/s unary and >= 4,000/s batched, on
each engine. Two baselines, measured in the same run, each give a ratio:

- a bare gRPC **echo** service (:mod:`bench.echo`: a generic grpc.aio unary
  handler returning the request bytes, same server options, in a process of
  its own like the node) called by the same clients with the same request
  bytes: what gRPC alone costs per call.
  Batched, its rate counts the statements the echoed requests carry. It runs
  before and after the nodes; the faster run is the baseline.
- a bare **Ed25519** loop: ``Ed25519PublicKey.verify`` of each offer's
  signature over the same bytes, keys loaded beforehand, one thread: the
  least work that admitting a signed statement could take.

The clients run in the benchmark's process, the node and the echo server
each in their own: on this two-core machine the clients' gRPC work competes
with the server for the cores, not for one interpreter lock. ``--profile``
profiles the clients' process only; profile the node with a sampling
profiler such as py-spy attached to its process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import random
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.rpc import status_pb2

from bench import echo as echo_service
from bench.common import (
    ORIGIN,
    BenchError,
    Context,
    Figure,
    Outcome,
    Sizes,
    Target,
    open_database,
    server_process,
)
from bench.statements import StatementMaker
from exchange.rules import REGISTER
from exchange.sample import generate
from exchange.server import MAX_MESSAGE_BYTES
from exchange.statements import SIGNING_PREFIX
from kaifang.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.db import sqlite_url
from ledger.keys import create_key_file
from ledger.store import LogStore
from tests.pg import PostgresUnavailableError, create_database, postgres_server

NAME = "admission"
UNARY_TARGET = Target(">=", 1_500)
BATCHED_TARGET = Target(">=", 4_000)
# Setup batches: the node's own transaction size (exchange.node.MAX_BATCH),
# and responses (a receipt of ~1.5 kB each) well under the 4 MiB limit.
SETUP_BATCH = 250
# Patent records timed during setup to size the phases (see measure_node);
# each phase gets margin x (that rate) x (its time) offers. Unary admission
# is expected to be slower than batched, hence the smaller margin; a phase
# that runs out of offers early still measures a rate, over less time.
CALIBRATION = 1_000
UNARY_MARGIN = 1.25
BATCHED_MARGIN = 1.5
NO_TIME_LIMIT = 3600.0
CALL_TIMEOUT_S = 120.0
_CHANNEL_OPTIONS = [
    # Each client a connection of its own, as 16 separate clients would have:
    # channels with equal arguments otherwise share one subchannel.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]

C = TypeVar("C")
W = TypeVar("W")
if TYPE_CHECKING:  # the generated module declares the async stub for type checkers only
    Stub = exchange_pb2_grpc.ExchangeServiceAsyncStub


# -- the workload ----------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Everything the nodes are sent, signed beforehand, and the register key they check."""

    register_key: Path
    registrations: list[pb.SignedStatement]
    records: list[pb.SignedStatement]
    warmup: list[pb.SignedStatement]
    unary: list[pb.SignedStatement]
    batched: list[pb.SignedStatement]
    # (public key, signature, signed bytes) of each timed offer, for the Ed25519 loop.
    signatures: list[tuple[bytes, bytes, bytes]]


def build_workload(sizes: Sizes, seed: int, key_dir: Path) -> Workload:
    """Generate parties and patents; sign their registrations, records and offers."""
    warmup = 4 * sizes.admission_clients
    offers = warmup + sizes.admission_unary + sizes.admission_batched
    sample = generate(seed, parties=sizes.admission_parties, patents=offers)
    register = create_key_file(key_dir / "register.key", REGISTER)
    maker = StatementMaker(random.Random(seed), dt.datetime.now(dt.UTC))
    owners = [sample.parties[i % len(sample.parties)] for i in range(offers)]
    signed_offers = [maker.offer(p, o) for p, o in zip(sample.patents, owners, strict=True)]
    signatures = [
        (
            o.registration.public_key,
            s.signatures[0].signature,
            SIGNING_PREFIX + s.statement,
        )
        for s, o in zip(signed_offers[warmup:], owners[warmup:], strict=True)
    ]
    unary_end = warmup + sizes.admission_unary
    return Workload(
        register_key=key_dir / "register.key",
        registrations=[maker.registration(p) for p in sample.parties],
        records=[maker.record(p, o, register) for p, o in zip(sample.patents, owners, strict=True)],
        warmup=signed_offers[:warmup],
        unary=signed_offers[warmup:unary_end],
        batched=signed_offers[unary_end:],
        signatures=signatures,
    )


def batches(signeds: Sequence[pb.SignedStatement], size: int) -> list[list[pb.SignedStatement]]:
    """``signeds`` cut into consecutive lists of ``size`` (the last may be shorter)."""
    return [list(signeds[i : i + size]) for i in range(0, len(signeds), size)]


# -- running work from concurrent clients ----------------------------------


@dataclass(frozen=True)
class Run:
    """Statements (or calls) done by the clients, in how long, and whether time ran out."""

    done: int
    seconds: float
    timed_out: bool

    @property
    def rate(self) -> float:
        """Per second."""
        return self.done / self.seconds


async def drain(
    clients: Sequence[C],
    work: Iterable[W],
    call: Callable[[C, W], Awaitable[int]],
    seconds: float,
) -> Run:
    """Clients take items of ``work`` in turn and ``call`` them, until none is left or time is up.

    ``call`` returns how many statements the item carried. One iterator is
    shared, so each item goes to exactly one client; a client stops after
    the call during which time ran out, so every call started is counted.
    """
    items = iter(work)
    deadline = time.perf_counter() + seconds
    timed_out = False

    async def client(c: C) -> int:
        nonlocal timed_out
        done = 0
        for item in items:
            done += await call(c, item)
            if time.perf_counter() >= deadline:
                timed_out = True
                break
        return done

    start = time.perf_counter()
    counts = await asyncio.gather(*(client(c) for c in clients))
    return Run(sum(counts), time.perf_counter() - start, timed_out)


@asynccontextmanager
async def open_channels(port: int, count: int) -> AsyncIterator[list[grpc.aio.Channel]]:
    """``count`` channels to 127.0.0.1:``port``, each connected; closed on exit."""
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=_CHANNEL_OPTIONS)
        for _ in range(count)
    ]
    try:
        await asyncio.gather(*(c.channel_ready() for c in channels))
        yield channels
    finally:
        await asyncio.gather(*(c.close(None) for c in channels))


# -- admission -------------------------------------------------------------


def _refusal(status: bytes) -> str:
    parsed = status_pb2.Status.FromString(status)
    return f"code {parsed.code}: {parsed.message}"


def _check_admitted(response: exchange_pb2.SubmitStatementResponse, what: str) -> None:
    if response.duplicate or response.origin != ORIGIN or not response.receipt:
        raise BenchError(
            f"{what}: expected a fresh admission to {ORIGIN} with a receipt, got "
            f"duplicate={response.duplicate} origin={response.origin!r} "
            f"receipt of {len(response.receipt)} characters"
        )


async def submit_one(stub: Stub, request: exchange_pb2.SubmitStatementRequest) -> int:
    """Submit one statement; fail unless it is admitted."""
    try:
        response = await stub.SubmitStatement(request, timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as e:
        raise BenchError(
            f"SubmitStatement refused a valid statement: {e.code().name}: {e.details()}"
        ) from e
    _check_admitted(response, "SubmitStatement")
    return 1


async def submit_batch(stub: Stub, request: exchange_pb2.SubmitStatementsRequest) -> int:
    """Submit a batch; fail unless every statement in it is admitted."""
    try:
        response = await stub.SubmitStatements(request, timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as e:
        raise BenchError(f"SubmitStatements failed: {e.code().name}: {e.details()}") from e
    if len(response.outcomes) != len(request.signed):
        raise BenchError(
            f"SubmitStatements: {len(response.outcomes)} outcomes for {len(request.signed)}"
        )
    for i, outcome in enumerate(response.outcomes):
        if outcome.WhichOneof("result") != "submitted":
            raise BenchError(
                f"SubmitStatements refused statement {i} of a valid batch: "
                f"{_refusal(outcome.status)}"
            )
        _check_admitted(outcome.submitted, f"SubmitStatements, statement {i}")
    return len(request.signed)


async def log_size(store: LogStore) -> int:
    """The size of the node's latest signed checkpoint (read from its database)."""
    return (await store.latest_checkpoint()).size


async def _phase(
    store: LogStore, what: str, run: Callable[[], Awaitable[Run]], expected: int
) -> tuple[Run, dict[str, Any]]:
    """Run a timed phase; check the log grew by exactly what was admitted; count its commits."""
    before = await log_size(store)
    result = await run()
    after = await log_size(store)
    if after - before != result.done:
        raise BenchError(f"{what}: {result.done} statements admitted but the log grew by "
                         f"{after - before}")  # fmt: skip
    if result.done < expected and not result.timed_out:
        raise BenchError(f"{what}: {result.done} of {expected} statements done, yet time remained")
    # Every transaction signs one checkpoint: their number gives the mean batch.
    commits = len(await store.signed_sizes(before + 1, after))
    facts = {
        "statements": result.done,
        "stock": expected,
        "seconds": result.seconds,
        "stopped_by": "stock exhausted" if result.done >= expected else "time limit",
        "transactions": commits,
        "mean_statements_per_transaction": result.done / max(1, commits),
    }
    return result, facts


async def record_patents(stubs: Sequence[Stub], records: Sequence[pb.SignedStatement]) -> Run:
    """Have the register record ``records`` through ``SubmitStatements`` from every client."""
    requests = [
        exchange_pb2.SubmitStatementsRequest(signed=chunk)
        for chunk in batches(records, SETUP_BATCH)
    ]
    return await drain(stubs, requests, submit_batch, NO_TIME_LIMIT)


def stock(rate: float, seconds: float, margin: float, available: int, multiple: int = 1) -> int:
    """Offers to record for a phase: ``margin`` x ``rate`` x ``seconds``, within what is signed."""
    wanted = math.ceil(rate * seconds * margin / multiple) * multiple
    return max(multiple, min(available, wanted))


async def measure_node(
    ctx: Context, engine: str, url: str, tmp: Path, work: Workload
) -> tuple[Run, Run, dict[str, Any]]:
    """Start a node on ``url``; set it up; time unary then batched admission of offers.

    Recording a patent is itself a batched admission, so the rate of the
    first :data:`CALIBRATION` records sizes each phase's stock: enough for
    the phase's time on this node, not the whole signed stock, which on a
    slow node would make the untimed setup the longest part of the run.
    """
    sizes = ctx.sizes
    args = [
        "--database", url, "--key", str(tmp / f"{engine}-log.key"), "--origin", ORIGIN,
        "--operator-key", str(tmp / f"{engine}-operator.key"),
        "--register-key", str(work.register_key),
    ]  # fmt: skip
    async with (
        server_process("bench.node", args, tmp / f"{engine}-node.log") as node,
        open_database(url) as db,
        open_channels(node.port, sizes.admission_clients) as channels,
    ):
        store = await LogStore.open(db, ORIGIN)
        stubs = [exchange_pb2_grpc.ExchangeServiceStub(c) for c in channels]
        start = time.perf_counter()
        # Registrations before the records that name their parties as owners.
        for chunk in batches(work.registrations, SETUP_BATCH):
            await submit_batch(stubs[0], exchange_pb2.SubmitStatementsRequest(signed=chunk))
        # The records are in offer order: warm-up, unary, batched.
        warm, unary_base = len(work.warmup), len(work.warmup)
        batched_base = unary_base + len(work.unary)
        await record_patents(stubs, work.records[:warm])
        calibration = min(CALIBRATION, len(work.unary))
        rate = (
            await record_patents(stubs, work.records[unary_base : unary_base + calibration])
        ).rate
        seconds = sizes.admission_seconds
        n_unary = max(calibration, stock(rate, seconds, UNARY_MARGIN, len(work.unary)))
        await record_patents(stubs, work.records[unary_base + calibration : unary_base + n_unary])
        n_batched = stock(
            rate, seconds, BATCHED_MARGIN, len(work.batched), multiple=sizes.admission_batch
        )
        await record_patents(stubs, work.records[batched_base : batched_base + n_batched])
        setup = time.perf_counter() - start
        recorded = warm + n_unary + n_batched
        ctx.log(NAME, f"{engine}: set up {len(work.registrations)} parties and {recorded:,} "
                      f"patents in {setup:.1f} s (records at {rate:,.0f}/s)")  # fmt: skip
        warmup = [exchange_pb2.SubmitStatementRequest(signed=s) for s in work.warmup]
        await drain(stubs, warmup, submit_one, NO_TIME_LIMIT)

        unary_requests = [
            exchange_pb2.SubmitStatementRequest(signed=s) for s in work.unary[:n_unary]
        ]
        unary, unary_facts = await _phase(
            store,
            f"{engine} unary",
            lambda: drain(stubs, unary_requests, submit_one, seconds),
            len(unary_requests),
        )
        ctx.log(NAME, f"{engine}: unary {unary.done:,} offers in {unary.seconds:.2f} s "
                      f"= {unary.rate:,.0f}/s")  # fmt: skip
        batch_requests = [
            exchange_pb2.SubmitStatementsRequest(signed=chunk)
            for chunk in batches(work.batched[:n_batched], sizes.admission_batch)
        ]
        batched, batched_facts = await _phase(
            store,
            f"{engine} batched",
            lambda: drain(stubs, batch_requests, submit_batch, seconds),
            n_batched,
        )
        ctx.log(NAME, f"{engine}: batched {batched.done:,} offers in {batched.seconds:.2f} s "
                      f"= {batched.rate:,.0f}/s")  # fmt: skip
        facts = {
            "setup_seconds": setup,
            "setup_record_rate": rate,
            "unary": unary_facts,
            "batched": batched_facts,
        }
    return unary, batched, facts


# -- baselines -------------------------------------------------------------


def ed25519_loop(signatures: Sequence[tuple[bytes, bytes, bytes]], seconds: float) -> Run:
    """Verify the offers' signatures in one thread, over and over, for ``seconds``."""
    keys: dict[bytes, Ed25519PublicKey] = {}
    items = [
        (keys.setdefault(k, Ed25519PublicKey.from_public_bytes(k)), sig, data)
        for k, sig, data in signatures
    ]
    cycle = itertools.cycle(items)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        # Read the clock every 256 verifications, not every one.
        for key, signature, data in itertools.islice(cycle, 256):
            key.verify(signature, data)  # raises InvalidSignature: a bench bug
        done += 256
    return Run(done, time.perf_counter() - start, timed_out=True)


async def echo_runs(
    clients: int,
    seconds: float,
    unary: Sequence[bytes],
    batched: Sequence[bytes],
    batch: int,
    log_file: Path,
) -> tuple[Run, Run]:
    """Calls/s of the echo service with the unary payloads, then statements/s with the batches."""
    async with (
        server_process("bench.echo", [], log_file) as server,
        open_channels(server.port, clients) as channels,
    ):
        calls = [c.unary_unary(echo_service.METHOD, None, None) for c in channels]

        def echo_call(carried: int) -> Callable[[Any, bytes], Awaitable[int]]:
            async def call(stub: Any, payload: bytes) -> int:
                answer = await stub(payload, timeout=CALL_TIMEOUT_S)
                if answer != payload:
                    raise BenchError("the echo service answered other bytes")
                return carried

            return call

        # Warm up the connections and code paths, untimed.
        await drain(calls, unary[: 4 * clients], echo_call(1), NO_TIME_LIMIT)
        one = await drain(calls, itertools.cycle(unary), echo_call(1), seconds)
        many = await drain(calls, itertools.cycle(batched), echo_call(batch), seconds)
    return one, many


# -- the benchmark ---------------------------------------------------------


def _figures(
    engine: str, unary: Run, batched: Run, facts: dict[str, Any], base: dict[str, Any]
) -> list[Figure]:
    echo_label = "bare grpc.aio echo, same clients and request bytes (best of 2)"
    ed_label = "bare Ed25519PublicKey.verify loop, same signed bytes, 1 thread"
    clients, batch = base["clients"], base["batch"]
    figures = []
    for mode, run, echo, target in (
        ("unary", unary, base["echo_unary"], UNARY_TARGET),
        ("batched", batched, base["echo_batched"], BATCHED_TARGET),
    ):
        call = "SubmitStatement" if mode == "unary" else f"SubmitStatements x{batch}"
        detail = {**facts[mode], "setup_seconds": facts["setup_seconds"], **base}
        figures += [
            Figure(f"{NAME}.{engine}.{mode}", f"{call}, {clients} clients, {engine} (vs echo)",
                   run.rate, "statements/s", echo, echo_label, (target,), detail),
            Figure(f"{NAME}.{engine}.{mode}.vs_ed25519",
                   f"{call}, {clients} clients, {engine} (vs Ed25519)",
                   run.rate, "statements/s", base["ed25519"], ed_label),
        ]  # fmt: skip
    return figures


async def run(ctx: Context) -> Outcome:
    """Measure admission on SQLite and durable PostgreSQL against the echo and Ed25519 loops."""
    outcome = Outcome()
    sizes = ctx.sizes
    with tempfile.TemporaryDirectory(prefix="kaifang-bench-admission-") as name:
        tmp = Path(name)
        start = time.perf_counter()
        work = build_workload(sizes, ctx.seed, tmp)
        signed = len(work.registrations) + len(work.records) + len(work.signatures)
        ctx.log(NAME, f"signed {signed:,} statements in {time.perf_counter() - start:.1f} s")
        ed = ed25519_loop(work.signatures, sizes.ed25519_seconds)
        ctx.log(NAME, f"bare Ed25519 verify: {ed.rate:,.0f}/s")

        unary_payloads = [
            exchange_pb2.SubmitStatementRequest(signed=s).SerializeToString() for s in work.unary
        ]
        batch_payloads = [
            exchange_pb2.SubmitStatementsRequest(signed=chunk).SerializeToString()
            for chunk in batches(work.batched, sizes.admission_batch)
            if len(chunk) == sizes.admission_batch
        ]

        async def echo() -> tuple[Run, Run]:
            one, many = await echo_runs(
                sizes.admission_clients, sizes.echo_seconds, unary_payloads, batch_payloads,
                sizes.admission_batch, tmp / "echo.log",
            )  # fmt: skip
            ctx.log(NAME, f"bare gRPC echo: {one.rate:,.0f} calls/s unary, "
                          f"{many.rate:,.0f} statements/s in batches")  # fmt: skip
            return one, many

        echo_1 = await echo()
        engines: list[tuple[str, Run, Run, dict[str, Any]]] = []
        url = sqlite_url(tmp / "admission.db")
        engines.append(("sqlite", *await measure_node(ctx, "sqlite", url, tmp, work)))
        try:
            with postgres_server(durable=True) as server:
                url = await create_database(server, "bench_admission")
                measured = await measure_node(ctx, "postgresql", url, tmp, work)
                engines.append(("postgresql", *measured))
        except PostgresUnavailableError as e:
            outcome.notes.append(f"PostgreSQL leg skipped: {e}")
            ctx.log(NAME, f"PostgreSQL leg skipped: {e}")
        echo_2 = await echo()

    base = {
        "clients": sizes.admission_clients,
        "batch": sizes.admission_batch,
        "echo_unary": max(echo_1[0].rate, echo_2[0].rate),
        "echo_batched": max(echo_1[1].rate, echo_2[1].rate),
        "echo_unary_calls_per_s": [echo_1[0].rate, echo_2[0].rate],
        "echo_batched_calls_per_s": [
            echo_1[1].rate / sizes.admission_batch,
            echo_2[1].rate / sizes.admission_batch,
        ],
        "ed25519": ed.rate,
        "unary_request_bytes_mean": sum(map(len, unary_payloads)) / len(unary_payloads),
        "batched_request_bytes_mean": sum(map(len, batch_payloads)) / max(1, len(batch_payloads)),
    }
    for engine, unary, batched, facts in engines:
        outcome.figures += _figures(engine, unary, batched, facts, base)
    outcome.info["machine_note"] = (
        "clients in the benchmark's process; the node and the echo server each in their own"
    )
    return outcome
