"""Benchmark ``federation``: propagation across a mesh of exchanges, and a new member's catch-up.

Run with the others by ``python -m bench`` (``--only federation`` alone), or
as ``python -m bench.federation`` with options to size it (``--help``).

**Mesh** (:func:`measure_mesh`). :class:`clients.localnet.LocalNetwork` runs
:data:`Sizes.federation_nodes` real nodes (5), each a ``kaifang node``
process with its own SQLite database, in a full mesh over loopback with
mutual TLS. Untimed setup: at each node, parties register and the register
authority records one patent per offer to come (an offer needs a patent in
force, and a patent holds one active offer), through ``SubmitStatements``;
then the network converges. Every statement is signed before the nodes start.

A ``WatchOffers`` stream at every node, opened before the first offer,
records when each offer arrives there (the watch pushes offers applied from
any origin). A few warm-up offers per node show that every watch is live.
Then an open-loop publisher sends :data:`Sizes.federation_rate` offers/s
(500) for :data:`Sizes.federation_seconds` (60 s), round robin over the
nodes, each a ``SubmitStatement`` to its patent's home: the k-th offer is
sent at k / rate s whether or not earlier ones have been answered. An
offer's *receipt* is when its call returns; its *visibility latency* at
another node is its arrival in that node's watch minus its receipt, both on
this process's ``time.monotonic``. The figures are the p50 and p99 (target:
p99 at most 500 ms) over every (offer, other node) pair; the baseline is the
p99 of the publish call itself (send to receipt). Every offer must be
admitted and reach every node, or the benchmark fails. The publisher and the
watches share this process and its event loop, and every process shares the
machine's cores: a busy loop here adds to both ends of a measurement. So the
report also gives the CPU time each node, this process and the rest of the
machine used while publishing and draining (from /proc), and every offer's
times go to ``bench/out/federation_samples.json``.

*Replication throughput* is the bytes of those offers' log entries delivered
to the other nodes (each entry to n - 1 of them) per second, from the first
publish to the last arrival. Its baseline, measured in the same run once the
network has stopped, is a bare grpc.aio server stream (:mod:`bench.stream`, a
process of its own, with the network's mutual TLS) sending the same entries
to n - 1 concurrent consumers, in ``StreamEntriesResponse`` messages batched
as the origins' commits batched them (a follow stream sends what each commit
added; a commit signs one checkpoint, so the stored checkpoints give the
batches), each with a checkpoint note, over and over for at least
:data:`BARE_SECONDS`; both rates count the entries' bytes. The load is open
loop, so replication moves only what is published: the ratio is the share of
the transport's capacity that replication needs at this rate, not how fast
replication could go (the catch-up measures that).

**Catch-up** (:func:`measure_catchup`). A network of two members. Before it
starts, the peer's database is filled with an exchange log of
:data:`Sizes.catchup_entries` entries (1,000,000; the log of
:mod:`bench.views`: 1,000 parties register, a tenth as many patents as
entries are recorded and each offered, acceptances fill the rest), appended
in bulk and its views rebuilt in this process's memory (a peak of about
3 GB at that size), untimed. Its statements carry
placeholder signatures: replication verifies every entry against the
origin's signed checkpoints, not the statements' own signatures (admission
did that), so the work is the same. Then the new member starts with an empty
database; the time from its start (process start included) until its heads
show the peer's whole log gives entries/s (target: at least 8,000/s). Each
batch is verified and applied to the new node's views in one transaction,
so its views are built when it ends. Baseline: the bare stream of the first
:data:`BARE_CATCHUP_ENTRIES` of the same entries in batches of
:data:`exchange.federation.STREAM_BATCH` to one consumer. The new node's peak
memory is its ``VmHWM`` at the end (target: under 300 MB), against that of
a Python process that only imports the node's modules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from bench import stream
from bench.common import (
    REPO_ROOT,
    BenchError,
    Context,
    Figure,
    Outcome,
    Target,
    percentile,
    server_process,
)
from bench.statements import StatementMaker
from bench.views import ExchangeLog
from clients.localnet import LocalNetwork
from exchange.federation import STREAM_BATCH
from exchange.network import NETWORK_FILE
from exchange.node import MAX_SUBMIT_BATCH, rebuild_views
from exchange.sample import generate
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from kaifang.federation.v1 import federation_pb2 as fed
from ledger.db import Database, sqlite_url
from ledger.keys import load_key_file
from ledger.store import LogStore, Sequencer

if TYPE_CHECKING:  # the generated module declares the async stub for type checkers only
    Stub = exchange_pb2_grpc.ExchangeServiceAsyncStub

NAME = "federation"
VISIBILITY_TARGET = Target("<=", 500.0)
CATCHUP_TARGET = Target(">=", 8_000.0)
MEMORY_TARGET = Target("<", 300.0)
MB = 1_000_000
# The node's database file, as `kaifang network init` configures it.
DATABASE_FILE = "kaifang.db"

# -- mesh
PARTIES_PER_NODE = 20
WARMUP_PER_NODE = 4
# Statements per setup SubmitStatements call, and such calls in flight per
# node: a node admits at most 256 per transaction (exchange.node.MAX_BATCH),
# and a response of 500 receipts stays well under the 4 MiB message limit.
SETUP_BATCH = min(500, MAX_SUBMIT_BATCH)
SETUP_IN_FLIGHT = 2
CALL_TIMEOUT_S = 60.0
CONVERGE_TIMEOUT_S = 900.0
WARMUP_TIMEOUT_S = 60.0
# How long after the last publish every arrival must have happened.
DRAIN_TIMEOUT_S = 120.0
BARE_RUNS = 2
BARE_SECONDS = 2.0
# Every timed offer's times, under the output directory (bench/out).
SAMPLES_FILE = "federation_samples.json"

# -- catch-up
# Entries per bulk append while filling the peer's database.
FILL_CHUNK = 20_000
OFFERS_PER_ENTRY = 0.1
HEADS_POLL_S = 0.5
CATCHUP_TIMEOUT_S = 1800.0
BARE_CATCHUP_ENTRIES = 200_000
# A Python process that imports what a node runs and reports its own peak RSS.
_IMPORT_PROBE = (
    "import clients.cli, exchange.server, exchange.federation, pathlib\n"
    "status = pathlib.Path('/proc/self/status').read_text().splitlines()\n"
    "print(next(int(s.split()[1]) for s in status if s.startswith('VmHWM:')))\n"
)


# -- the mesh's workload -----------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """A timed offer: its home node, its signed statement and its id."""

    home: str
    signed: pb.SignedStatement
    offer_id: bytes


@dataclass(frozen=True)
class MeshWork:
    """Every statement the mesh is sent, signed beforehand."""

    registrations: dict[str, list[pb.SignedStatement]]
    records: dict[str, list[pb.SignedStatement]]
    warmup: dict[str, list[pb.SignedStatement]]
    # The timed offers, in the order they are sent.
    schedule: list[Offer]


def build_mesh_work(names: Sequence[str], offers: int, seed: int, register_key: Path) -> MeshWork:
    """Sign, for each node, its parties' registrations, its patents' records and their offers.

    Offer k goes to node k mod n, so that the nodes take turns.
    """
    n = len(names)
    per_node = math.ceil(offers / n) + WARMUP_PER_NODE
    sample = generate(seed, parties=PARTIES_PER_NODE * n, patents=per_node * n)
    register = load_key_file(register_key)
    maker = StatementMaker(random.Random(seed), dt.datetime.now(dt.UTC))
    registrations: dict[str, list[pb.SignedStatement]] = {}
    records: dict[str, list[pb.SignedStatement]] = {}
    warmup: dict[str, list[pb.SignedStatement]] = {}
    timed: dict[str, list[pb.SignedStatement]] = {}
    for i, name in enumerate(names):
        parties = sample.parties[i * PARTIES_PER_NODE : (i + 1) * PARTIES_PER_NODE]
        patents = sample.patents[i * per_node : (i + 1) * per_node]
        owners = [parties[j % len(parties)] for j in range(per_node)]
        registrations[name] = [maker.registration(p) for p in parties]
        records[name] = [maker.record(p, o, register) for p, o in zip(patents, owners, strict=True)]
        signed = [maker.offer(p, o) for p, o in zip(patents, owners, strict=True)]
        warmup[name], timed[name] = signed[:WARMUP_PER_NODE], signed[WARMUP_PER_NODE:]
    schedule = []
    for k in range(offers):
        home = names[k % n]
        signed_offer = timed[home][k // n]
        schedule.append(Offer(home, signed_offer, statement_id(signed_offer.statement)))
    return MeshWork(registrations, records, warmup, schedule)


def _chunks(items: Sequence[pb.SignedStatement], size: int) -> list[list[pb.SignedStatement]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# -- talking to the nodes ------------------------------------------------------


@asynccontextmanager
async def client_stubs(net: LocalNetwork, names: Sequence[str]) -> AsyncIterator[dict[str, Stub]]:
    """An exchange stub per node, each on a channel of its own; closed on exit."""
    channels = {name: net.client_channel(name) for name in names}
    try:
        await asyncio.gather(*(c.channel_ready() for c in channels.values()))
        yield {name: exchange_pb2_grpc.ExchangeServiceStub(c) for name, c in channels.items()}
    finally:
        await asyncio.gather(*(c.close(None) for c in channels.values()))


def _check_admitted(response: api.SubmitStatementResponse, home: str, what: str) -> None:
    if response.duplicate or response.origin != home:
        raise BenchError(
            f"{what}: expected a fresh admission by {home}, got origin={response.origin!r} "
            f"duplicate={response.duplicate}"
        )


async def admit_all(stub: Stub, home: str, signeds: Sequence[pb.SignedStatement]) -> None:
    """Submit ``signeds`` to ``home`` in batches, a few in flight; every one must be admitted."""
    chunks = iter(_chunks(signeds, SETUP_BATCH))

    async def worker() -> None:
        for chunk in chunks:
            request = api.SubmitStatementsRequest(signed=chunk)
            response = await stub.SubmitStatements(request, timeout=CALL_TIMEOUT_S)
            for i, outcome in enumerate(response.outcomes):
                if outcome.WhichOneof("result") != "submitted":
                    raise BenchError(f"{home} refused setup statement {i} of a batch: "
                                     f"{outcome.status!r}")  # fmt: skip
                _check_admitted(outcome.submitted, home, "setup")

    await asyncio.gather(*(worker() for _ in range(SETUP_IN_FLIGHT)))


async def watch(net: LocalNetwork, name: str, seen: dict[bytes, float]) -> None:
    """Record when each offer first reaches ``name``'s ``WatchOffers`` stream, until cancelled."""
    async with net.client_channel(name) as channel:
        call = exchange_pb2_grpc.ExchangeServiceStub(channel).WatchOffers(api.WatchOffersRequest())
        async for response in call:
            arrived = time.monotonic()
            seen.setdefault(response.offer.offer_id, arrived)


async def wait_seen(
    watches: dict[str, dict[bytes, float]],
    tasks: Sequence[asyncio.Task[None]],
    ids: Sequence[bytes],
    within_s: float,
    what: str,
) -> None:
    """Wait until every watch has seen every one of ``ids``; fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        for task in tasks:
            if task.done():
                raise BenchError(f"a watch stream ended early: {task.exception()!r}")
        missing = {name: sum(i not in seen for i in ids) for name, seen in watches.items()}
        if not any(missing.values()):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: offers not seen after {within_s:.0f} s, per node: {missing}")
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Published:
    """One timed offer's publication: when it was sent, when its receipt came back, its index."""

    home: str
    sent: float
    receipt: float
    index: int


@dataclass(frozen=True)
class Publication:
    """What the open-loop publisher did."""

    offers: dict[bytes, Published]
    # How late each send was against its schedule (seconds; 0 if on time).
    lateness: list[float]
    started: float


async def publish(stubs: dict[str, Stub], schedule: Sequence[Offer], rate: float) -> Publication:
    """Send ``schedule`` at ``rate`` per second, open loop; every offer must be admitted."""
    done: dict[bytes, Published] = {}

    async def one(offer: Offer, sent: float) -> None:
        request = api.SubmitStatementRequest(signed=offer.signed)
        response = await stubs[offer.home].SubmitStatement(request, timeout=CALL_TIMEOUT_S)
        receipt = time.monotonic()
        _check_admitted(response, offer.home, "timed offer")
        done[offer.offer_id] = Published(offer.home, sent, receipt, response.index)

    tasks: list[asyncio.Task[None]] = []
    lateness: list[float] = []
    started = time.monotonic()
    try:
        for k, offer in enumerate(schedule):
            due = started + k / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            sent = time.monotonic()
            lateness.append(max(0.0, sent - due))
            tasks.append(asyncio.create_task(one(offer, sent)))
            if tasks[0].done():  # fail early rather than at the end of the schedule
                tasks.pop(0).result()
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return Publication(done, lateness, started)


# -- what the logs hold after the run -----------------------------------------


@dataclass(frozen=True)
class OriginRun:
    """The timed offers' entries in one origin's log, cut as its commits cut them."""

    origin: str
    start: int
    batches: list[list[bytes]]
    note: str

    @property
    def entry_bytes(self) -> int:
        """The entries' bytes."""
        return sum(len(e) for batch in self.batches for e in batch)

    def messages(self) -> Iterator[bytes]:
        """The batches as a follow stream would send them, serialized."""
        start = self.start
        for batch in self.batches:
            message = fed.StreamEntriesResponse(
                origin=self.origin, start=start, entries=batch, checkpoint=self.note
            )
            yield message.SerializeToString()
            start += len(batch)


def write_samples(
    path: Path,
    names: Sequence[str],
    publication: Publication,
    watches: dict[str, dict[bytes, float]],
) -> None:
    """Write each offer's home, send, receipt and arrival at each node (s from the first send)."""
    zero = publication.started
    rows = [
        [p.home, round(p.sent - zero, 4), round(p.receipt - zero, 4),
         *(round(watches[name][offer_id] - zero, 4) for name in names)]
        for offer_id, p in sorted(publication.offers.items(), key=lambda item: item[1].sent)
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"columns": ["home", "sent", "receipt", *names], "rows": rows}))


async def read_origin_run(directory: Path, origin: str, indices: Sequence[int]) -> OriginRun:
    """Read ``origin``'s entries at ``indices`` (contiguous) from its stopped node's database."""
    low, high = min(indices), max(indices) + 1
    if high - low != len(indices):
        raise BenchError(f"{origin}'s timed offers are not contiguous in its log")
    db = Database(sqlite_url(directory / DATABASE_FILE))
    try:
        store = await LogStore.open(db, origin)
        entries = [data async for rows in store.entries(low, high) for _, data in rows]
        cuts = await store.signed_sizes(low + 1, high)
        if not cuts or cuts[-1] != high:
            cuts.append(high)
        note = (await store.latest_checkpoint()).note
    finally:
        await db.dispose()
    batches, previous = [], low
    for cut in cuts:
        batches.append(entries[previous - low : cut - low])
        previous = cut
    return OriginRun(origin, low, batches, note)


async def bare_stream(
    net: LocalNetwork, messages: Iterator[bytes], consumers: int, tmp: Path, label: str
) -> list[stream.Consumed]:
    """Stream ``messages`` to ``consumers`` from :mod:`bench.stream`; :data:`BARE_RUNS` runs.

    Each run lasts at least :data:`BARE_SECONDS` (whole passes over the
    messages). The server presents the first member's certificate, each
    consumer another's.
    """
    names = list(net.nodes)
    if consumers > len(names) - 1:
        raise BenchError(f"{consumers} consumers need as many members besides the server")
    payload = tmp / f"{label}.payload"
    stream.write_payload(payload, messages)
    server_dir = net.nodes[names[0]].directory
    args = [
        "--payload", str(payload), "--network", str(net.directory / NETWORK_FILE),
        "--tls-key", str(server_dir / "tls.key"), "--tls-cert", str(server_dir / "tls.pem"),
    ]  # fmt: skip
    identities = [net.identity(name) for name in names[1 : 1 + consumers]]
    runs = []
    async with server_process("bench.stream", args, tmp / f"{label}.log") as server:
        for _ in range(BARE_RUNS):
            consumed = await stream.consume(
                server.port, net.network, names[0], identities, BARE_SECONDS
            )
            runs.append(consumed)
    payload.unlink()
    return runs


# -- processes: CPU time and memory ---------------------------------------------


def _pid(net: LocalNetwork, name: str) -> int:
    process = net.nodes[name].process
    if process is None:
        raise BenchError(f"{name} is not running")
    return process.pid


def process_cpu_times(pid: int | None = None) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` (this one if None), from /proc."""
    stat = Path(f"/proc/{pid or 'self'}/stat").read_text()
    # Fields after the command (which may hold spaces) start at the state, field 3.
    fields = stat.rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def process_cpu_seconds(pid: int | None = None) -> float:
    """User plus system CPU seconds of process ``pid`` (this one if None)."""
    return sum(process_cpu_times(pid))


def machine_cpu_seconds() -> float:
    """CPU time every core has spent busy since boot (all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(values[:8]) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    snapshot = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
    snapshot["benchmark"] = process_cpu_seconds()
    snapshot["machine"] = machine_cpu_seconds()
    return snapshot


def _cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds used between two snapshots: each node, the benchmark, all nodes, the machine."""
    used = {name: after[name] - before[name] for name in before}
    used["nodes"] = sum(v for k, v in used.items() if k not in ("benchmark", "machine"))
    used["others"] = used["machine"] - used["nodes"] - used["benchmark"]
    return used


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of process ``pid`` (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    raise BenchError(f"/proc/{pid}/status has no VmHWM")


async def import_footprint_mb() -> float:
    """The peak RSS of a Python process that imports the node's modules and stops."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _IMPORT_PROBE, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise BenchError("the import probe failed")
    return int(out) * 1024 / MB


# -- the mesh ------------------------------------------------------------------


async def measure_mesh(ctx: Context, directory: Path) -> tuple[list[Figure], dict[str, Any]]:
    """Run the mesh; publish offers open loop; measure visibility and replication throughput."""
    sizes = ctx.sizes
    names = [f"ex{i + 1}" for i in range(sizes.federation_nodes)]
    if len(names) < 2:
        raise BenchError("a mesh needs at least two members")
    offers = round(sizes.federation_rate * sizes.federation_seconds)
    net = LocalNetwork.create(directory, names)
    started = time.perf_counter()
    work = build_mesh_work(names, offers, ctx.seed, directory / "register.key")
    signed = sum(len(v) for v in work.records.values()) * 2 + len(names) * PARTIES_PER_NODE
    ctx.log(NAME, f"mesh: signed {signed:,} statements in {time.perf_counter() - started:.1f} s")
    watches: dict[str, dict[bytes, float]] = {name: {} for name in names}
    watchers: list[asyncio.Task[None]] = []
    facts: dict[str, Any] = {"members": len(names), "offers": offers}
    try:
        started = time.perf_counter()
        await net.start_all()
        async with client_stubs(net, names) as stubs:
            for name in names:  # registrations first: records name their parties
                await admit_all(stubs[name], name, work.registrations[name])
            await asyncio.gather(
                *(admit_all(stubs[name], name, work.records[name]) for name in names)
            )
            admitted = time.perf_counter() - started
            await net.wait_converged(within_s=CONVERGE_TIMEOUT_S)
            setup = time.perf_counter() - started
            patents = sum(len(v) for v in work.records.values())
            ctx.log(NAME, f"mesh: {len(names)} nodes started, {patents:,} patents recorded in "
                          f"{admitted:.1f} s, converged after {setup:.1f} s")  # fmt: skip
            facts.update(setup_seconds=setup, setup_patents=patents)

            watchers = [asyncio.create_task(watch(net, n, watches[n])) for n in names]
            warm_ids = []
            for name in names:
                for signed_offer in work.warmup[name]:
                    request = api.SubmitStatementRequest(signed=signed_offer)
                    response = await stubs[name].SubmitStatement(request, timeout=CALL_TIMEOUT_S)
                    _check_admitted(response, name, "warm-up offer")
                    warm_ids.append(statement_id(signed_offer.statement))
            await wait_seen(watches, watchers, warm_ids, WARMUP_TIMEOUT_S, "warm-up")

            ctx.log(NAME, f"mesh: publishing {offers:,} offers at {sizes.federation_rate:g}/s")
            pids = {name: _pid(net, name) for name in names}
            cpu_before = _cpu_snapshot(pids)
            publication = await publish(stubs, work.schedule, sizes.federation_rate)
            published = time.monotonic()
            ids = [offer.offer_id for offer in work.schedule]
            await wait_seen(watches, watchers, ids, DRAIN_TIMEOUT_S, "timed offers")
            drained = time.monotonic() - published
            cpu = _cpu_used(cpu_before, _cpu_snapshot(pids))
            phase = time.monotonic() - publication.started
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await net.close()

    done = publication.offers
    latencies, home_ms, last_arrival = [], [], 0.0
    for offer_id, p in done.items():
        for name in names:
            arrived = watches[name][offer_id]
            if name == p.home:
                home_ms.append((arrived - p.receipt) * 1000)
            else:
                latencies.append((arrived - p.receipt) * 1000)
                last_arrival = max(last_arrival, arrived)
    call_ms = [(p.receipt - p.sent) * 1000 for p in done.values()]
    write_samples(ctx.out_dir / SAMPLES_FILE, names, publication, watches)
    last_receipt = max(p.receipt for p in done.values())
    publish_seconds = last_receipt - publication.started
    ctx.log(NAME, f"mesh: {len(done):,} offers admitted in {publish_seconds:.1f} s; every node "
                  f"saw every offer {drained:.1f} s after the last send")  # fmt: skip

    runs = []
    for name in names:
        indices = [p.index for p in done.values() if p.home == name]
        runs.append(await read_origin_run(directory / name, name, indices))
    consumers = len(names) - 1
    entry_bytes = sum(r.entry_bytes for r in runs)
    replicated = entry_bytes * consumers
    window = last_arrival - publication.started
    batches = [len(b) for r in runs for b in r.batches]
    bare = await bare_stream(
        net, (m for r in runs for m in r.messages()), consumers, directory.parent, "mesh-bare"
    )
    # Both rates count the entries' bytes (each message also carries its
    # origin, start and checkpoint note, on both sides).
    bare_rates = [c.passes * entry_bytes / c.seconds for c in bare]
    bare_rate = max(bare_rates)
    ctx.log(NAME, f"mesh: replication {replicated / window / MB:.2f} MB/s; bare stream of the "
                  f"same messages {bare_rate / MB:.1f} MB/s")  # fmt: skip

    facts.update(
        publish_seconds=publish_seconds,
        publish_rate=len(done) / publish_seconds,
        scheduled_rate=sizes.federation_rate,
        scheduled_seconds=sizes.federation_seconds,
        send_lateness_ms={
            "p50": percentile(publication.lateness, 0.5) * 1000,
            "p99": percentile(publication.lateness, 0.99) * 1000,
            "max": max(publication.lateness) * 1000,
        },
        drain_after_last_send_seconds=drained,
        cpu_seconds=cpu,
        cpu_ms_per_offer={k: v * 1000 / len(done) for k, v in cpu.items()},
        cpu_cores_busy={k: v / phase for k, v in cpu.items()},
        cpu_phase_seconds=phase,
    )
    detail = {
        **facts,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "min_ms": min(latencies),
        "pairs": len(latencies),
        "publish_call_ms": {"p50": percentile(call_ms, 0.5), "p99": percentile(call_ms, 0.99)},
        "home_watch_after_receipt_ms": {
            "p50": percentile(home_ms, 0.5),
            "p99": percentile(home_ms, 0.99),
        },
    }
    throughput = {
        "entries": len(done),
        "entry_bytes_mean": entry_bytes / len(done),
        "consumers_per_entry": consumers,
        "replicated_bytes": replicated,
        "window_seconds": window,
        "messages_per_consumer": len(batches),
        "entries_per_message_mean": len(done) / len(batches),
        "entries_per_message_max": max(batches),
        "bare_runs_mb_per_s": [r / MB for r in bare_rates],
        "bare_passes": [c.passes for c in bare],
        "bare_seconds": [c.seconds for c in bare],
        "bare_tls": "mutual TLS, the network's credentials",
    }
    label = (
        f"{len(names)} nodes, {sizes.federation_rate:g} offers/s, {sizes.federation_seconds:g} s"
    )
    call_label = "SubmitStatement p99, send to receipt (same run)"
    bare_label = (
        f"bare grpc.aio server stream, mTLS, same messages to {consumers} consumers, "
        f"no parsing, entry bytes/s (best of {BARE_RUNS})"
    )
    figures = [
        Figure(f"{NAME}.visibility_p99", f"visibility at other nodes p99, {label}",
               percentile(latencies, 0.99), "ms", percentile(call_ms, 0.99), call_label,
               (VISIBILITY_TARGET,), detail),
        Figure(f"{NAME}.visibility_p50", f"visibility at other nodes p50, {label}",
               percentile(latencies, 0.5), "ms", percentile(call_ms, 0.5),
               "SubmitStatement p50, send to receipt (same run)"),
        Figure(f"{NAME}.replication", f"replication throughput, {label}",
               replicated / window / MB, "MB/s", bare_rate / MB, bare_label,
               detail=throughput),
    ]  # fmt: skip
    return figures, facts


# -- catch-up --------------------------------------------------------------------


async def fill_log(directory: Path, origin: str, size: int, seed: int, keep: int) -> list[bytes]:
    """Fill ``origin``'s database with an exchange log of ``size`` entries and build its views.

    Returns the first ``keep`` entries.
    """
    signer = load_key_file(directory / "log.key")
    db = Database(sqlite_url(directory / DATABASE_FILE))
    kept: list[bytes] = []
    try:
        await db.migrate()
        store = await LogStore.create(db, origin, signer.verifier_key())
        sequencer = Sequencer(store, signer)
        log = ExchangeLog(size, max(1, int(size * OFFERS_PER_ENTRY)), seed, origin=origin)
        chunk: list[bytes] = []
        for data in log.statements():
            if len(kept) < keep:
                kept.append(data)
            chunk.append(data)
            if len(chunk) == FILL_CHUNK:
                await sequencer.append_batch(chunk)
                chunk = []
        if chunk:
            await sequencer.append_batch(chunk)
        await sequencer.close()
        if await store.size() != size:
            raise BenchError(f"the peer's log holds {await store.size()} entries, not {size}")
        await rebuild_views(db)
    finally:
        await db.dispose()
    return kept


async def measure_catchup(ctx: Context, directory: Path) -> tuple[list[Figure], dict[str, Any]]:
    """Fill a peer with a big log; time a new member's catch-up and read its peak memory."""
    size = ctx.sizes.catchup_entries
    peer, joiner = "peer", "joiner"
    net = LocalNetwork.create(directory, [peer, joiner])
    try:
        started = time.perf_counter()
        keep = min(size, BARE_CATCHUP_ENTRIES)
        first = await fill_log(net.nodes[peer].directory, peer, size, ctx.seed, keep)
        ctx.log(NAME, f"catch-up: peer's log of {size:,} entries built, views included, in "
                      f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        await net.start_all([peer])
        note = next(h.checkpoint for h in (await net.heads(peer)).heads if h.origin == peer)

        started = time.monotonic()
        net.start(joiner)
        process = net.nodes[joiner].process
        assert process is not None
        progress: list[tuple[float, int]] = []
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                heads = {h.origin: h for h in (await net.heads(joiner)).heads}
                head = heads.get(peer)
                now = time.monotonic() - started
                progress.append((now, head.entries_held if head else 0))
                if head is not None and head.tree_size == size and head.entries_held == size:
                    break
            if process.poll() is not None:
                raise BenchError(f"the new node exited; see {net.nodes[joiner].log_file}")
            if time.monotonic() - started > CATCHUP_TIMEOUT_S:
                raise BenchError(f"no catch-up within {CATCHUP_TIMEOUT_S:.0f} s: {progress[-3:]}")
            await asyncio.sleep(HEADS_POLL_S)
        elapsed = progress[-1][0]
        peak = vm_hwm_mb(process.pid)
        user, system = process_cpu_times(process.pid)
        peer_process = net.nodes[peer].process
        assert peer_process is not None
        peer_peak = vm_hwm_mb(peer_process.pid)
        async with client_stubs(net, [joiner]) as stubs:
            found = await stubs[joiner].SearchOffers(api.SearchOffersRequest(page_size=1))
        if not found.offers:
            raise BenchError("the new node caught up, yet its views hold no offer")
    finally:
        await net.close()
    stored = sum(f.stat().st_size for f in net.nodes[joiner].directory.glob(f"{DATABASE_FILE}*"))
    ctx.log(NAME, f"catch-up: {size:,} entries in {elapsed:.1f} s = {size / elapsed:,.0f}/s, "
                  f"peak memory {peak:.0f} MB")  # fmt: skip

    messages = (
        fed.StreamEntriesResponse(
            origin=peer, start=i, entries=first[i : i + STREAM_BATCH], checkpoint=note
        ).SerializeToString()
        for i in range(0, len(first), STREAM_BATCH)
    )
    bare = await bare_stream(net, messages, 1, directory.parent, "catchup-bare")
    bare_rates = [c.passes * len(first) / c.seconds for c in bare]
    bare_rate = max(bare_rates)
    baseline_mb = await import_footprint_mb()
    ctx.log(NAME, f"catch-up: bare stream {bare_rate:,.0f} entries/s; importing the node's "
                  f"modules peaks at {baseline_mb:.0f} MB")  # fmt: skip

    started_at = next((t for t, held in progress if held > 0), None)
    facts: dict[str, Any] = {
        "entries": size,
        "seconds": elapsed,
        "first_entries_seen_after_seconds": started_at,
        "rate_after_first_entries": (
            size / (elapsed - started_at)
            if started_at is not None and elapsed > started_at
            else None
        ),
        "progress": [(round(t, 2), held) for t, held in progress[:: max(1, len(progress) // 40)]],
        "peer_peak_memory_mb": peer_peak,
        "new_node_database_mb": stored / MB,
        "new_node_cpu_seconds": {"user": user, "system": system},
        "benchmark_peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB,
        "bare_entries": len(first),
        "bare_entries_per_s_runs": bare_rates,
        "bare_passes": [c.passes for c in bare],
        "entry_bytes_mean": sum(map(len, first)) / len(first),
    }
    label = f"catch-up of a new node, {size:,}-entry peer"
    figures = [
        Figure(f"{NAME}.catchup", label, size / elapsed, "entries/s", bare_rate,
               f"bare grpc.aio server stream, mTLS, the first {len(first):,} of the same "
               f"entries in batches of {STREAM_BATCH}, 1 consumer, no parsing "
               f"(best of {BARE_RUNS})",
               (CATCHUP_TARGET,), facts),
        Figure(f"{NAME}.catchup_memory", f"{label}: new node's peak memory", peak, "MB",
               baseline_mb, "VmHWM of a Python process that only imports the node's modules",
               (MEMORY_TARGET,), {"peer_peak_memory_mb": peer_peak}),
    ]  # fmt: skip
    return figures, facts


# -- the benchmark ---------------------------------------------------------------


async def run(ctx: Context) -> Outcome:
    """Measure the mesh, then the catch-up (either is skipped when sized zero)."""
    outcome = Outcome()
    sizes = ctx.sizes
    with tempfile.TemporaryDirectory(prefix="kaifang-bench-federation-") as name:
        tmp = Path(name)
        if sizes.federation_seconds > 0 and sizes.federation_rate > 0:
            figures, facts = await measure_mesh(ctx, tmp / "mesh")
            outcome.figures += figures
            outcome.info["mesh"] = facts
            busy, per_offer = facts["cpu_cores_busy"], facts["cpu_ms_per_offer"]
            outcome.notes.append(
                f"mesh: while publishing and draining ({facts['cpu_phase_seconds']:.0f} s) the "
                f"nodes kept {busy['nodes']:.2f} cores busy, this process {busy['benchmark']:.2f}"
                f" and other processes {busy['others']:.2f}, of the machine's {os.cpu_count()}; "
                f"the nodes spent {per_offer['nodes']:.1f} ms of CPU per offer, all together"
            )
        else:
            outcome.notes.append("mesh skipped (federation_seconds or federation_rate is 0)")
        if sizes.catchup_entries > 0:
            figures, facts = await measure_catchup(ctx, tmp / "catchup")
            outcome.figures += figures
            outcome.info["catchup"] = {k: v for k, v in facts.items() if k != "progress"}
        else:
            outcome.notes.append("catch-up skipped (catchup_entries is 0)")
    outcome.info["machine_note"] = (
        "every node is a process of its own; the publisher, the watches and the heads polls run "
        "in the benchmark's process; all share the machine's cores"
    )
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.federation``: this benchmark alone, sized from the command line."""
    from bench import __main__ as runner  # the runner imports this module: not at the top

    parser = argparse.ArgumentParser(
        prog="python -m bench.federation",
        description="Federation benchmark: a mesh's propagation and a new node's catch-up. "
        "Prints the table and writes the report as `python -m bench --only federation` does.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--nodes", type=int, help="members of the mesh (default 5)")
    parser.add_argument("--rate", type=float, help="offers/s published (default 500; quick 100)")
    parser.add_argument("--seconds", type=float, help="publishing time (default 60; quick 8)")
    parser.add_argument(
        "--entries", type=int, help="entries the catch-up peer holds (default 1,000,000)"
    )
    parser.add_argument("--no-mesh", action="store_true", help="skip the mesh")
    parser.add_argument("--no-catchup", action="store_true", help="skip the catch-up")
    parser.add_argument("--seed", type=int, help="seed of the data")
    parser.add_argument("--report", type=Path, help="where to write the report")
    parser.add_argument("--out", type=Path, help="where to write the samples")
    args = parser.parse_args(argv)
    forwarded = ["--only", NAME]
    if args.quick:
        forwarded.append("--quick")
    if args.seed is not None:
        forwarded += ["--seed", str(args.seed)]
    for option in ("report", "out"):
        if getattr(args, option) is not None:
            forwarded += [f"--{option}", str(getattr(args, option))]
    overrides = {
        "federation_nodes": args.nodes,
        "federation_rate": args.rate,
        "federation_seconds": 0 if args.no_mesh else args.seconds,
        "catchup_entries": 0 if args.no_catchup else args.entries,
    }
    for key, value in overrides.items():
        if value is not None:
            forwarded += ["--size", f"{key}={value}"]
    return runner.main(forwarded)


if __name__ == "__main__":
    sys.exit(main())
