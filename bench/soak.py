"""Benchmark ``soak``: a network of exchanges under steady mixed load for ten minutes.

Run with the others by ``python -m bench`` (``--only soak`` alone), or as
``python -m bench.soak [--seconds N] [--rate R]``.

**The network.** :class:`clients.localnet.LocalNetwork` runs
:data:`Sizes.soak_nodes` real nodes (3), each a ``kaifang node`` process with
its own SQLite database, in a full mesh over loopback with mutual TLS.
Untimed setup, as in :mod:`bench.federation`: at each node
:data:`PARTIES_PER_NODE` parties register and the register authority records
:data:`PATENTS_PER_NODE` patents (in force, fees paid), then the network
converges.

**The load** lasts :data:`Sizes.soak_seconds` (600 s) and is open loop: the
k-th operation of a stream is started at k / rate seconds whether or not
earlier ones have been answered (at most :data:`MAX_IN_FLIGHT` at a time;
how late starts were is in the report). Every call goes through a
:class:`clients.client.Client` (deadlines, retries of ``UNAVAILABLE``, every
receipt verified against the origin's key) to a node chosen at random, so
two thirds of the statements are forwarded by a node to their patent's home.

- *Statements*, :data:`Sizes.soak_rate` per second (40), signed when they are
  started, each about a patent that no other statement in flight is about
  (the model of each patent's state is then exact, and every statement
  should be admitted): with no active offer, the owner publishes one
  (countersigned by the pledgee while pledged); with one, a registered party
  accepts it, paying its lump sum (four times in five), or the owner
  withdraws it; the owner transfers the patent to another party; the owner
  pledges it to another party, or the pledgee releases the pledge.
- *Reads*, :data:`READS_PER_STATEMENT` per statement: ``SearchOffers`` (one
  page of 20; by IPC prefix, title keyword, region, active status, fee
  ceiling, or none), ``GetPatent``, ``GetOffer`` (of an offer admitted at
  least :data:`OFFER_AGE_S` ago) and ``ListLicences`` of a patent.
- *Watches*: a ``WatchOffers`` stream of every offer at every node, open for
  the whole run; each offer's arrival at every node is recorded.

Every :data:`SAMPLE_S` seconds a sampler reads, for each node, its resident
memory (``VmRSS`` in ``/proc/<pid>/status``), its CPU time, the size of its
database, and its heads
(``GetHeads``, all nodes at once): a node's *replication lag* for an origin
is the largest tree size any node holds of that origin minus its own.

**Figures and their baselines.** The soak asks whether the network holds
up, so each figure compares the end of the run with its beginning: the
*last window* (the last :data:`WINDOW_S` seconds of load) against the
*first window* (the :data:`WINDOW_S` seconds after a warm-up of
:data:`WARMUP_FRACTION` of the run, which is left out of both because it
pays for cold caches, first connections and imports; shorter runs shrink
the windows to a quarter of what follows the warm-up). Figures: statements
admitted per second, reads answered per second, p50 and p99 of each RPC, the
``WatchOffers`` delivery at the other nodes (arrival minus receipt) p99, and
the mean replication lag. A ratio near 1 means no degradation over the run.
Whole-run percentiles and error counts are in the printed table and the
report. On a shared machine a minute's p99 moves with other people's work;
the p50s are the steadier sign of degradation.

**Memory grows without bound** (the ``soak.memory.NODE`` figures, one per
node) if, over the last two thirds of the load, the least-squares slope of
the node's RSS is more than :data:`MEMORY_PER_DATA_LIMIT` times the slope of
its database (the SQLite file and its write-ahead log, sampled alongside):
the figure's value is the RSS slope in MB/min, its baseline the database's,
and the target is on their ratio. The first third is left out because a
node's memory rightly rises fastest at first (imports, pools, first pages).

Why against the database and not an absolute MB/min: every cache of a node
is bounded, but the bounds are large and filled by data (SQLite's page cache
of 32 MiB per connection, a writer's and at least four readers'; 131,072 tree rows and 4,096
checkpoints per log; 65,536 verified signatures: several hundred MB in all),
so at a steady rate a healthy node's RSS rises steadily for hours, as its
caches fill, and no ten-minute slope in MB/min can tell that from a leak.
What ten minutes can show is how much memory a node gains per byte of data
it takes in. The caches hold copies of pages written and read, and small
records per entry, checkpoint and signature: a few bytes of memory per byte
of database. On the development machine, at 40 statements/s, that was 1.7
over the last two thirds of a ten-minute run, and up to 3.1 in runs of a
few minutes, whose caches are emptier; with the caches shrunk so that they
fill within the warm-up (an experiment, not part of this benchmark), the
RSS slope fell from about 6 to under 1 MB/min and was still slowing: the
rest of the growth is the caches. A node gaining more than
:data:`MEMORY_PER_DATA_LIMIT` MB per MB of data holds something its caches
do not explain. The price of judging against the data is that a small leak
hides under the caches: at 40 statements/s a node must keep about 3 KB more
per statement to be caught. Loads shorter than :data:`MEMORY_MIN_SECONDS`
report the figures without judging them. The detail of each figure gives
the RSS gained per statement and the mean RSS of the last third over the
first.

**No statement may be lost** (``soak.lost``). After the load, the watches
drain and the network must converge (one network digest, within
:data:`CONVERGE_TIMEOUT_S`); then the nodes stop and every node's database
is read: every receipt a client got (origin, index, and the entry the
receipt proved) must be there, byte for byte, at that index of that origin's
log on every node. A statement missing from any node counts as lost
(target: none). ``soak.watch_missed`` counts the offers a watch never
delivered (target: none).

A chart of memory, replication lag and throughput over time is written to
``bench/out/soak.png`` (a complete ``make bench`` copies it beside
``bench/results.md``), and the samples to ``bench/out/soak_samples.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.common import BenchError, Context, Figure, Outcome, Target, percentile
from bench.federation import (
    DATABASE_FILE,
    admit_all,
    client_stubs,
    process_cpu_seconds,
)
from bench.statements import CNY_20K, StatementMaker, today
from clients.client import Client
from clients.errors import ServerError
from clients.localnet import LocalNetwork
from exchange.network import NETWORK_FILE
from exchange.sample import SampleParty, generate
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import statements_pb2 as pb
from kaifang.federation.v1 import federation_pb2 as fed
from kaifang.federation.v1 import federation_pb2_grpc as fed_grpc
from ledger.db import Database, sqlite_url
from ledger.keys import load_key_file
from ledger.store import LogStore

NAME = "soak"
MB = 1_000_000

# -- the network and its seed data
PARTIES_PER_NODE = 25
PATENTS_PER_NODE = 300

# -- the load
READS_PER_STATEMENT = 2.0
# Read kinds and their weights.
READ_MIX = (("SearchOffers", 35), ("GetPatent", 30), ("GetOffer", 20), ("ListLicences", 15))
SEARCH_PAGE = 20
# A GetOffer asks for an offer admitted at least this long ago (a twentieth
# of a short run), so that every node should hold it; a NOT_FOUND is then an
# error, not replication at work.
OFFER_AGE_S = 10.0
# Operations in flight at most; the scheduler waits (and is late) beyond it.
MAX_IN_FLIGHT = 256
# Weights of the statement families; each becomes the statement the
# patent's state allows (see module docstring).
LICENSING, TRANSFER, PLEDGING = 65, 10, 25
ACCEPT_SHARE = 0.8

# -- sampling and windows
SAMPLE_S = 5.0
# At least this many samples in a short run (a smoke test samples faster).
MIN_SAMPLES = 40
WINDOW_S = 60.0
WARMUP_FRACTION = 0.05
# Throughput and p99 series for the chart, per bucket of this many seconds.
BUCKET_S = 10.0

# -- memory: MB of RSS gained per MB of database at most (see the module
# docstring), judged only in loads at least this long: in a shorter one the
# last two thirds are still the warm-up.
MEMORY_PER_DATA_LIMIT = 4.0
MEMORY_MIN_SECONDS = 180.0

# -- the end of the run
IN_FLIGHT_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 120.0
CONVERGE_TIMEOUT_S = 300.0
SAMPLES_FILE = "soak_samples.json"
CHART_FILE = "soak.png"


# -- the model of the ledger the load drives -------------------------------------


@dataclass
class Patent:
    """What the load knows of one patent: its home, owner, active offer and pledge."""

    number: str
    home: str
    owner: SampleParty
    offer_id: bytes | None = None
    pledge: tuple[bytes, SampleParty] | None = None
    # A statement about it is in flight: no other is started until it ends.
    busy: bool = False
    # A statement about it failed: its state is no longer known for sure.
    retired: bool = False


@dataclass(frozen=True)
class Planned:
    """A statement ready to submit, and how the model changes once it is admitted."""

    kind: str
    patent: Patent
    signed: pb.SignedStatement
    admitted: Callable[[bytes], None]


class Workload:
    """Builds the setup statements and, during the load, each next statement and read."""

    def __init__(self, names: Sequence[str], seed: int, register_key: Path) -> None:
        """Draw parties and patents for each node of ``names`` from the synthetic sample."""
        n = len(names)
        sample = generate(seed, parties=PARTIES_PER_NODE * n, patents=PATENTS_PER_NODE * n)
        self.rng = random.Random(seed)
        self.maker = StatementMaker(random.Random(seed + 1), dt.datetime.now(dt.UTC))
        self.register = load_key_file(register_key)
        self.parties = list(sample.parties)
        self.registrations: dict[str, list[pb.SignedStatement]] = {}
        self.records: dict[str, list[pb.SignedStatement]] = {}
        self.patents: list[Patent] = []
        self.titles = [p.title for p in sample.patents]
        self.ipcs = [symbol for p in sample.patents for symbol in p.ipc]
        self.regions = sorted({p.region for p in sample.patents})
        for i, name in enumerate(names):
            parties = self.parties[i * PARTIES_PER_NODE : (i + 1) * PARTIES_PER_NODE]
            patents = sample.patents[i * PATENTS_PER_NODE : (i + 1) * PATENTS_PER_NODE]
            self.registrations[name] = [self.maker.registration(p) for p in parties]
            self.records[name] = []
            for j, record in enumerate(patents):
                owner = parties[j % len(parties)]
                self.records[name].append(self.maker.record(record, owner, self.register))
                self.patents.append(Patent(record.application_number, name, owner))
        # Offers admitted, with when, for GetOffer.
        self.offers: list[tuple[float, bytes]] = []
        self.serial = 0

    def other_party(self, *not_these: SampleParty) -> SampleParty:
        """A registered party other than ``not_these``."""
        while True:
            party = self.rng.choice(self.parties)
            if all(party.party_id != p.party_id for p in not_these):
                return party

    def idle_patent(self) -> Patent | None:
        """A patent with nothing in flight about it (None if every one is busy)."""
        for _ in range(50):
            patent = self.rng.choice(self.patents)
            if not patent.busy and not patent.retired:
                return patent
        idle = [p for p in self.patents if not p.busy and not p.retired]
        return self.rng.choice(idle) if idle else None

    def next_statement(self) -> Planned | None:
        """Sign the next statement about an idle patent (None if there is none)."""
        patent = self.idle_patent()
        if patent is None:
            return None
        self.serial += 1
        family = self.rng.choices(("licensing", "transfer", "pledging"),
                                  (LICENSING, TRANSFER, PLEDGING))[0]  # fmt: skip
        if family == "licensing":
            if patent.offer_id is None:
                return self._offer(patent)
            if self.rng.random() < ACCEPT_SHARE:
                return self._acceptance(patent)
            return self._withdrawal(patent)
        if family == "transfer":
            return self._transfer(patent)
        return self._pledge(patent) if patent.pledge is None else self._release(patent)

    def _pledgee(self, patent: Patent) -> list[SampleParty]:
        return [patent.pledge[1]] if patent.pledge is not None else []

    def _offer(self, patent: Patent) -> Planned:
        body = pb.OfferPublished(
            application_number=patent.number, terms=CNY_20K, licence_term_months=24,
            evaluation_report="EVAL-2026-001", description="开放许可，条件对所有被许可人相同。",
        )  # fmt: skip
        signers = [patent.owner, *self._pledgee(patent)]
        signed = self.maker.signed(pb.Statement(offer_published=body), *signers)

        def admitted(sid: bytes) -> None:
            patent.offer_id = sid
            self.offers.append((time.monotonic(), sid))

        return Planned("offer_published", patent, signed, admitted)

    def _acceptance(self, patent: Patent) -> Planned:
        assert patent.offer_id is not None
        licensee = self.other_party(patent.owner)
        day = _date(today())
        body = pb.LicenseAccepted(
            offer_id=patent.offer_id, licensee=licensee.party_id, terms=CNY_20K, start_date=day,
            payment=pb.Payment(amount=CNY_20K.lump_sum, reference=f"TX-{self.serial}",
                               paid_on=day),
        )  # fmt: skip
        signed = self.maker.signed(pb.Statement(license_accepted=body), licensee)
        return Planned("license_accepted", patent, signed, lambda _: None)

    def _withdrawal(self, patent: Patent) -> Planned:
        assert patent.offer_id is not None
        body = pb.OfferWithdrawn(offer_id=patent.offer_id, reason="licensed enough")
        signed = self.maker.signed(pb.Statement(offer_withdrawn=body), patent.owner)

        def admitted(_: bytes) -> None:
            patent.offer_id = None

        return Planned("offer_withdrawn", patent, signed, admitted)

    def _transfer(self, patent: Patent) -> Planned:
        assignee = self.other_party(patent.owner, *self._pledgee(patent))
        body = pb.TransferRegistered(
            application_number=patent.number, assignors=[patent.owner.party_id],
            assignees=[assignee.party_id], contract_reference=f"TR-{self.serial}",
        )  # fmt: skip
        signers = [patent.owner, assignee, *self._pledgee(patent)]
        signed = self.maker.signed(pb.Statement(transfer_registered=body), *signers)

        def admitted(_: bytes) -> None:
            patent.owner = assignee

        return Planned("transfer_registered", patent, signed, admitted)

    def _pledge(self, patent: Patent) -> Planned:
        pledgee = self.other_party(patent.owner)
        body = pb.PledgeRegistered(
            application_number=patent.number, pledgors=[patent.owner.party_id],
            pledgee=pledgee.party_id,
            secured_amount=pb.Money(amount_minor=50_000_000, currency="CNY"),
            debt_start=_date(today()), debt_end=_date(today() + dt.timedelta(days=365)),
            contract_reference=f"LOAN-{self.serial}",
        )  # fmt: skip
        signed = self.maker.signed(pb.Statement(pledge_registered=body), patent.owner, pledgee)

        def admitted(sid: bytes) -> None:
            patent.pledge = (sid, pledgee)

        return Planned("pledge_registered", patent, signed, admitted)

    def _release(self, patent: Patent) -> Planned:
        assert patent.pledge is not None
        pledge_id, pledgee = patent.pledge
        body = pb.PledgeReleased(pledge_id=pledge_id, reason="repaid")
        signed = self.maker.signed(pb.Statement(pledge_released=body), pledgee)

        def admitted(_: bytes) -> None:
            patent.pledge = None

        return Planned("pledge_released", patent, signed, admitted)

    def search(self) -> api.SearchOffersRequest:
        """A search of one page, by one of the filters a user would set (or none)."""
        request = api.SearchOffersRequest(page_size=SEARCH_PAGE)
        how = self.rng.randrange(6)
        if how == 0:
            symbol = self.rng.choice(self.ipcs)
            request.ipc_prefix = symbol[: self.rng.choice((1, 3, 4))]
        elif how == 1:
            title = self.rng.choice(self.titles)
            start = self.rng.randrange(2, max(3, len(title) - 1))
            request.keyword = title[start : start + 2]
        elif how == 2:
            request.region = self.rng.choice(self.regions)[:2]
        elif how == 3:
            request.status = api.OFFER_STATUS_ACTIVE
        elif how == 4:
            request.max_upfront_fee.CopyFrom(pb.Money(amount_minor=5_000_000, currency="CNY"))
        return request

    def old_offer(self, age: float) -> bytes | None:
        """An offer admitted at least ``age`` seconds ago, if any."""
        cutoff = time.monotonic() - age
        # The offers are in order of admission: pick among the old enough.
        low, high = 0, len(self.offers)
        while low < high:
            mid = (low + high) // 2
            if self.offers[mid][0] <= cutoff:
                low = mid + 1
            else:
                high = mid
        return self.rng.choice(self.offers[:low])[1] if low else None


def _date(day: dt.date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


# -- what the run records --------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """A statement a client got a verified receipt for: where it is, and its entry's digest."""

    origin: str
    index: int
    entry_sha256: bytes
    kind: str


@dataclass
class Sample:
    """One sampling round: per node, RSS and database file (MB), CPU seconds, tree sizes."""

    t: float
    rss_mb: dict[str, float]
    db_mb: dict[str, float]
    cpu_s: dict[str, float]
    sizes: dict[str, dict[str, int]]

    def lag(self) -> dict[str, int]:
        """Each node's replication lag: entries behind the furthest node, worst origin."""
        origins = {o for sizes in self.sizes.values() for o in sizes}
        furthest = {o: max(s.get(o, 0) for s in self.sizes.values()) for o in origins}
        return {
            node: max((furthest[o] - sizes.get(o, 0) for o in origins), default=0)
            for node, sizes in self.sizes.items()
        }


@dataclass
class Record:
    """Everything the load did, with times in seconds from the start of the load."""

    started: float = 0.0
    # RPC name -> (start, latency in ms) of each call that succeeded.
    calls: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    receipts: list[Receipt] = field(default_factory=list)
    # Offer id -> (home, receipt time), and per node offer id -> arrival time.
    offers: dict[bytes, tuple[str, float]] = field(default_factory=dict)
    arrivals: dict[str, dict[bytes, float]] = field(default_factory=dict)
    lateness: list[float] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    forwarded_ms: list[float] = field(default_factory=list)
    home_ms: list[float] = field(default_factory=list)
    no_idle_patent: int = 0

    def now(self) -> float:
        """Seconds since the load started."""
        return time.monotonic() - self.started


# -- the load ----------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` now (``VmRSS``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MB
    raise BenchError(f"/proc/{pid}/status has no VmRSS")


def database_mb(directory: Path) -> float:
    """The size of a node's database file and its write-ahead log, in MB."""
    files = (directory / DATABASE_FILE, directory / f"{DATABASE_FILE}-wal")
    return sum(f.stat().st_size for f in files if f.exists()) / MB


def _pids(net: LocalNetwork) -> dict[str, int]:
    pids = {}
    for name, node in net.nodes.items():
        if node.process is None:
            raise BenchError(f"{name} is not running")
        pids[name] = node.process.pid
    return pids


def _label(error: Exception) -> str:
    if isinstance(error, ServerError):
        return f"{error.code.name}:{error.reason}" if error.reason else error.code.name
    return type(error).__name__


class Load:
    """The open-loop load, the watches and the sampler of one run."""

    def __init__(
        self, net: LocalNetwork, work: Workload, clients: dict[str, Client], seconds: float
    ) -> None:
        """Drive ``net`` through ``clients`` (one per node) for ``seconds``, from ``work``."""
        self.net = net
        self.seconds = seconds
        self.offer_age = min(OFFER_AGE_S, seconds / 20)
        self.work = work
        self.clients = clients
        self.names = list(clients)
        self.record = Record(arrivals={name: {} for name in self.names})
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.tasks: set[asyncio.Task[None]] = set()
        self.pids = _pids(net)

    def _client(self) -> tuple[str, Client]:
        name = self.work.rng.choice(self.names)
        return name, self.clients[name]

    async def _timed(self, rpc: str, call: Awaitable[Any]) -> Any:
        """Await ``call``; record its latency under ``rpc``, or its error (then return None)."""
        start = time.monotonic()
        try:
            result = await call
        except Exception as e:  # counted and reported: one odd failure must not end the run
            self.record.errors[f"{rpc} {_label(e)}"] += 1
            return None
        end = time.monotonic()
        self.record.calls[rpc].append((start - self.record.started, (end - start) * 1000))
        return result

    async def submit(self, planned: Planned) -> None:
        """Submit one statement to a random node; on its receipt, move the model on."""
        name, client = self._client()
        start = time.monotonic()
        submitted = await self._timed("SubmitStatement", client.submit(planned.signed))
        planned.patent.busy = False
        if submitted is None:
            planned.patent.retired = True
            return
        if submitted.duplicate:
            self.record.errors["SubmitStatement unexpected duplicate"] += 1
        elapsed = (time.monotonic() - start) * 1000
        (self.record.home_ms if name == planned.patent.home else self.record.forwarded_ms).append(
            elapsed
        )
        self.record.kinds[planned.kind] += 1
        # The entry's bytes as the receipt proved them (never re-serialised).
        entry = submitted.receipt.receipt.extra
        assert entry is not None, "a verified receipt carries its entry"
        receipt = Receipt(
            submitted.origin, submitted.index, hashlib.sha256(entry).digest(), planned.kind
        )
        self.record.receipts.append(receipt)
        if planned.kind == "offer_published":
            self.record.offers[submitted.statement_id] = (submitted.origin, time.monotonic())
        planned.admitted(submitted.statement_id)

    async def read(self) -> None:
        """One read of the mix, from a random node."""
        work = self.work
        rpc = work.rng.choices([r for r, _ in READ_MIX], [w for _, w in READ_MIX])[0]
        _, client = self._client()
        if rpc == "GetOffer":
            offer_id = work.old_offer(self.offer_age)
            if offer_id is None:
                rpc = "GetPatent"  # no offer is old enough yet
            else:
                await self._timed(rpc, client.offer(offer_id))
                return
        if rpc == "SearchOffers":
            await self._timed(rpc, client.search_offers(work.search(), limit=SEARCH_PAGE))
        elif rpc == "GetPatent":
            await self._timed(rpc, client.patent(work.rng.choice(work.patents).number))
        else:
            number = work.rng.choice(work.patents).number
            await self._timed(rpc, client.licences(application_number=number))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            finally:
                self.in_flight.release()

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stream(
        self, rate: float, seconds: float, op: Callable[[], Awaitable[None] | None]
    ) -> None:
        """Start ``op`` ``rate`` times a second for ``seconds``, open loop."""
        record = self.record
        k = 0
        while True:
            due = record.started + k / rate
            if due - record.started >= seconds:
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.in_flight.acquire()
            record.lateness.append(max(0.0, time.monotonic() - due))
            work = op()
            if work is None:
                self.in_flight.release()
            else:
                self._spawn(work)
            k += 1

    def next_submission(self) -> Awaitable[None] | None:
        """The next statement's submission, or None if every patent is busy."""
        planned = self.work.next_statement()
        if planned is None:
            self.record.no_idle_patent += 1
            return None
        planned.patent.busy = True
        return self.submit(planned)

    async def watch(self, name: str) -> None:
        """Record when each offer reaches ``name``'s watch, until cancelled."""
        seen = self.record.arrivals[name]
        async for offer in self.clients[name].watch_offers():
            seen.setdefault(offer.offer_id, time.monotonic())

    async def sample(self, channels: dict[str, grpc.aio.Channel]) -> Sample:
        """Read every node's memory, database size, CPU time and heads now."""
        for name, node in self.net.nodes.items():
            if node.process is None or node.process.poll() is not None:
                raise BenchError(f"{name} exited during the soak; see {node.log_file}")
        stubs = {name: fed_grpc.FederationServiceStub(c) for name, c in channels.items()}
        t = self.record.now()
        rss = {name: rss_mb(pid) for name, pid in self.pids.items()}
        db = {name: database_mb(node.directory) for name, node in self.net.nodes.items()}
        cpu = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}
        cpu["benchmark"] = process_cpu_seconds()
        replies = await asyncio.gather(
            *(stub.GetHeads(fed.GetHeadsRequest(), timeout=10.0) for stub in stubs.values())
        )
        sizes = {
            name: {h.origin: h.tree_size for h in reply.heads}
            for name, reply in zip(stubs, replies, strict=True)
        }
        return Sample(t, rss, db, cpu, sizes)

    async def sampler(self, channels: dict[str, grpc.aio.Channel]) -> None:
        """Sample every :data:`SAMPLE_S` seconds (more often in a short run), until cancelled."""
        every = min(SAMPLE_S, self.seconds / MIN_SAMPLES)
        k = 0
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                self.record.samples.append(await self.sample(channels))
            k += 1
            await asyncio.sleep(max(0.0, self.record.started + k * every - time.monotonic()))


# -- after the load ------------------------------------------------------------------


async def wait_watched(record: Record, within_s: float) -> dict[str, int]:
    """Wait until every watch has seen every offer admitted; return what each still misses."""
    deadline = time.monotonic() + within_s
    while True:
        missing = {
            name: sum(offer_id not in seen for offer_id in record.offers)
            for name, seen in record.arrivals.items()
        }
        if not any(missing.values()) or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(0.2)


async def wait_converged(net: LocalNetwork, within_s: float) -> float | None:
    """Seconds until every node reports one network digest; None if not within ``within_s``."""
    started = time.monotonic()
    try:
        await net.wait_converged(within_s=within_s)
    except TimeoutError:
        return None
    return time.monotonic() - started


async def check_receipts(
    net: LocalNetwork, receipts: Sequence[Receipt]
) -> tuple[set[int], dict[str, int]]:
    """Read every stopped node's database; return the receipts missing anywhere, and per node.

    A receipt is found on a node if that node's copy of the origin's log holds,
    at the receipt's index, an entry whose SHA-256 is the receipt's.
    """
    by_origin: dict[str, list[int]] = defaultdict(list)
    for i, receipt in enumerate(receipts):
        by_origin[receipt.origin].append(i)
    lost: set[int] = set()
    per_node: dict[str, int] = {}
    for name, node in net.nodes.items():
        db = Database(sqlite_url(node.directory / DATABASE_FILE))
        missing = 0
        try:
            for origin, positions in by_origin.items():
                try:
                    store = await LogStore.open(db, origin)
                except Exception:  # the node holds no such log: all of it is missing
                    lost.update(positions)
                    missing += len(positions)
                    continue
                size = await store.size()
                low = min(receipts[i].index for i in positions)
                held: dict[int, bytes] = {}
                async for rows in store.entries(low, max(low, size)):
                    held.update((index, hashlib.sha256(data).digest()) for index, data in rows)
                for i in positions:
                    if held.get(receipts[i].index) != receipts[i].entry_sha256:
                        lost.add(i)
                        missing += 1
        finally:
            await db.dispose()
        per_node[name] = missing
    return lost, per_node


# -- analysis: pure functions of the record ------------------------------------------


@dataclass(frozen=True)
class Windows:
    """The spans of the load compared: warm-up, first window, last window (seconds)."""

    seconds: float
    warmup: float
    width: float

    @classmethod
    def of(cls, seconds: float) -> Windows:
        """The windows of a load of ``seconds``."""
        warmup = seconds * WARMUP_FRACTION
        return cls(seconds, warmup, min(WINDOW_S, (seconds - warmup) / 4))

    @property
    def first(self) -> tuple[float, float]:
        """The baseline window, right after the warm-up."""
        return self.warmup, self.warmup + self.width

    @property
    def last(self) -> tuple[float, float]:
        """The last window of the load."""
        return self.seconds - self.width, self.seconds


def within(points: Sequence[tuple[float, float]], span: tuple[float, float]) -> list[float]:
    """The values of the ``(t, value)`` points with ``t`` in ``[span)``."""
    low, high = span
    return [v for t, v in points if low <= t < high]


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per minute; nan for fewer than 3."""
    if len(points) < 3:
        return math.nan
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return math.nan
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean; nan if empty."""
    return sum(values) / len(values) if values else math.nan


@dataclass(frozen=True)
class MemoryVerdict:
    """One node's memory over the load: the slopes judged, and context."""

    rss_slope_mb_per_min: float
    database_slope_mb_per_min: float
    first_third_mb: float
    last_third_mb: float
    before_mb: float
    end_mb: float
    peak_mb: float


def memory_of(samples: Sequence[Sample], node: str, seconds: float) -> MemoryVerdict:
    """``node``'s RSS and database slopes over the last two thirds of a load of ``seconds``."""
    load = [s for s in samples if 0 <= s.t <= seconds]
    rss = [(s.t, s.rss_mb[node]) for s in load]
    judged = [s for s in load if s.t >= seconds / 3]
    return MemoryVerdict(
        rss_slope_mb_per_min=slope_per_minute([(s.t, s.rss_mb[node]) for s in judged]),
        database_slope_mb_per_min=slope_per_minute([(s.t, s.db_mb[node]) for s in judged]),
        first_third_mb=mean(within(rss, (0, seconds / 3))),
        last_third_mb=mean(within(rss, (2 * seconds / 3, math.inf))),
        before_mb=rss[0][1] if rss else math.nan,
        end_mb=rss[-1][1] if rss else math.nan,
        peak_mb=max((v for _, v in rss), default=math.nan),
    )


def rpc_table(record: Record, windows: Windows) -> list[dict[str, Any]]:
    """Per RPC: calls, rate, p50 and p99 over the whole load and in both windows, errors."""
    rows = []
    for rpc in ("SubmitStatement", *(r for r, _ in READ_MIX)):
        calls = record.calls.get(rpc, [])
        all_ms = [ms for _, ms in calls]
        first, last = within(calls, windows.first), within(calls, windows.last)
        errors = sum(n for key, n in record.errors.items() if key.split(" ")[0] == rpc)
        rows.append({
            "rpc": rpc, "calls": len(calls), "errors": errors,
            "per_s": len(calls) / windows.seconds,
            "p50_ms": percentile(all_ms, 0.5), "p99_ms": percentile(all_ms, 0.99),
            "first_p50_ms": percentile(first, 0.5), "first_p99_ms": percentile(first, 0.99),
            "last_p50_ms": percentile(last, 0.5), "last_p99_ms": percentile(last, 0.99),
        })  # fmt: skip
    return rows


def render_rpc_table(rows: Sequence[dict[str, Any]], windows: Windows) -> str:
    """The per-RPC table printed after the run."""
    header = ("rpc", "calls", "errors", "per s", "p50 ms", "p99 ms",
              "first p99", "last p99")  # fmt: skip
    lines = [header]
    for r in rows:
        lines.append((
            r["rpc"], f"{r['calls']:,}", str(r["errors"]), f"{r['per_s']:.1f}",
            f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
            f"{r['first_p99_ms']:.1f}", f"{r['last_p99_ms']:.1f}",
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                  enumerate(zip(line, widths, strict=True)))
        for line in lines
    ]  # fmt: skip
    text.insert(1, "  ".join("-" * w for w in widths))
    low, high = windows.first
    text.append(f"(first window {low:.0f}-{high:.0f} s, last {windows.last[0]:.0f}-"
                f"{windows.last[1]:.0f} s of {windows.seconds:.0f} s)")  # fmt: skip
    return "\n".join(text)


def buckets(record: Record, seconds: float) -> list[dict[str, float]]:
    """Per bucket of :data:`BUCKET_S` (less in a short run): statements/s, reads/s, p99."""
    width = min(BUCKET_S, seconds / 20)
    count = max(1, math.ceil(seconds / width))
    submits: list[list[float]] = [[] for _ in range(count)]
    reads = [0] * count
    for rpc, calls in record.calls.items():
        for t, ms in calls:
            k = min(count - 1, int(t // width))
            if rpc == "SubmitStatement":
                submits[k].append(ms)
            else:
                reads[k] += 1
    return [
        {"t": (k + 0.5) * width, "statements_per_s": len(submits[k]) / width,
         "reads_per_s": reads[k] / width, "submit_p99_ms": percentile(submits[k], 0.99)}
        for k in range(count)
    ]  # fmt: skip


def plot(record: Record, windows: Windows, path: Path) -> Path | None:
    """Chart RSS, replication lag and throughput over time; None if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    samples = record.samples
    names = list(record.arrivals)
    fig, (memory, lag, load) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    minutes = [s.t / 60 for s in samples]
    for name in names:
        (line,) = memory.plot(minutes, [s.rss_mb[name] for s in samples], label=f"{name} RSS")
        memory.plot(minutes, [s.db_mb[name] for s in samples], color=line.get_color(),
                    linestyle="--", label=f"{name} database")  # fmt: skip
        lag.plot(minutes, [s.lag()[name] for s in samples], label=name)
    memory.set_ylabel("MB")
    length = f"{windows.seconds / 60:g} min" if windows.seconds >= 120 else f"{windows.seconds:g} s"
    memory.set_title(f"Soak: {len(names)} nodes, {length} of mixed load")
    lag.set_ylabel("replication lag (entries,\nworst origin)")
    series = buckets(record, windows.seconds)
    t = [b["t"] / 60 for b in series]
    load.plot(t, [b["statements_per_s"] for b in series], label="statements/s")
    load.plot(t, [b["reads_per_s"] for b in series], label="reads/s")
    load.set_ylabel("per second")
    p99 = load.twinx()
    p99.plot(t, [b["submit_p99_ms"] for b in series], color="grey", linestyle=":",
             label="SubmitStatement p99 (ms)")  # fmt: skip
    p99.set_ylabel("ms")
    load.set_xlabel("minutes since the load started")
    for ax in (memory, lag, load):
        ax.axvspan(windows.first[0] / 60, windows.first[1] / 60, color="green", alpha=0.08)
        ax.axvspan(windows.last[0] / 60, windows.last[1] / 60, color="blue", alpha=0.08)
        ax.axvline(windows.seconds / 60, color="black", linestyle="--", linewidth=0.8)
        ax.grid(True, alpha=0.3)
    memory.legend(loc="center right", fontsize="small", ncol=2)
    lag.legend(loc="upper right")
    handles = load.get_legend_handles_labels()
    twin = p99.get_legend_handles_labels()
    load.legend(handles[0] + twin[0], handles[1] + twin[1], loc="upper left", fontsize="small",
                framealpha=0.9)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def write_samples(record: Record, path: Path) -> None:
    """Write the samples and the throughput series as JSON, times in seconds from the start."""
    document = {
        "samples": [
            {"t": round(s.t, 2), "rss_mb": s.rss_mb, "db_mb": s.db_mb, "cpu_s": s.cpu_s,
             "lag": s.lag(),
             "sizes": s.sizes}
            for s in record.samples
        ],
        "buckets": buckets(record, max((s.t for s in record.samples), default=BUCKET_S)),
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


# -- the benchmark ------------------------------------------------------------------------


async def drive(ctx: Context, directory: Path) -> tuple[Record, dict[str, Any]]:
    """Set the network up, run the load, let it settle, stop it and check every receipt."""
    sizes = ctx.sizes
    names = [f"ex{i + 1}" for i in range(sizes.soak_nodes)]
    net = LocalNetwork.create(directory, names)
    work = Workload(names, ctx.seed, directory / "register.key")
    facts: dict[str, Any] = {"nodes": len(names), "patents": len(work.patents),
                             "parties": len(work.parties)}  # fmt: skip
    clients: dict[str, Client] = {}
    channels: dict[str, grpc.aio.Channel] = {}
    background: list[asyncio.Task[None]] = []
    try:
        started = time.perf_counter()
        await net.start_all()
        async with client_stubs(net, names) as stubs:
            for name in names:  # registrations first: records name their owners
                await admit_all(stubs[name], name, work.registrations[name])
            await asyncio.gather(*(admit_all(stubs[n], n, work.records[n]) for n in names))
        await net.wait_converged(within_s=CONVERGE_TIMEOUT_S)
        facts["setup_seconds"] = time.perf_counter() - started
        ctx.log(NAME, f"{len(names)} nodes started, {len(work.patents):,} patents recorded, "
                      f"converged in {facts['setup_seconds']:.1f} s")  # fmt: skip

        network_file = directory / NETWORK_FILE
        clients = {name: Client.for_network(network_file, name) for name in names}
        channels = {name: net.peer_channel(name, as_member=name) for name in names}
        load = Load(net, work, clients, sizes.soak_seconds)
        record = load.record
        facts["rss_mb_before_load"] = {n: rss_mb(pid) for n, pid in load.pids.items()}
        record.started = time.monotonic()
        background = [asyncio.create_task(load.watch(name)) for name in names]
        seconds, rate = sizes.soak_seconds, sizes.soak_rate
        background.append(asyncio.create_task(load.sampler(channels)))
        ctx.log(NAME, f"load: {rate:g} statements/s and {rate * READS_PER_STATEMENT:g} reads/s "
                      f"for {seconds:g} s")  # fmt: skip
        progress = asyncio.create_task(_progress(ctx, record, seconds))
        try:
            await asyncio.gather(
                load.stream(rate, seconds, load.next_submission),
                load.stream(rate * READS_PER_STATEMENT, seconds, load.read),
            )
        finally:
            progress.cancel()
        ended = record.now()
        pending = list(load.tasks)
        if pending:
            await asyncio.wait(pending, timeout=IN_FLIGHT_TIMEOUT_S)
        facts["in_flight_wait_seconds"] = record.now() - ended
        for task in background:
            if task.done() and task.exception() is not None:
                raise BenchError(f"a watch or the sampler failed: {task.exception()!r}")
        missing = await wait_watched(record, DRAIN_TIMEOUT_S)
        facts["watch_drain_seconds"] = record.now() - ended
        converged = await wait_converged(net, CONVERGE_TIMEOUT_S)
        facts["converged_after_load_seconds"] = None if converged is None else record.now() - ended
        record.samples.append(await load.sample(channels))
        facts["watch_missing"] = missing
        ctx.log(NAME, f"load done: {len(record.receipts):,} statements admitted; watches drained "
                      f"in {facts['watch_drain_seconds']:.1f} s; converged "
                      f"{facts['converged_after_load_seconds']} s after the load")  # fmt: skip
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for client in clients.values():
            await client.close()
        for channel in channels.values():
            await channel.close(None)
        await net.close()
    lost, per_node = await check_receipts(net, record.receipts)
    facts["lost"] = len(lost)
    facts["lost_per_node"] = per_node
    facts["lost_kinds"] = dict(Counter(record.receipts[i].kind for i in lost))
    return record, facts


async def _progress(ctx: Context, record: Record, seconds: float) -> None:
    step = max(10.0, seconds / 10)
    while True:
        await asyncio.sleep(step)
        last = record.samples[-1] if record.samples else None
        memory = ", ".join(f"{n} {v:.0f}" for n, v in last.rss_mb.items()) if last else "-"
        lag = max(last.lag().values(), default=0) if last else 0
        errors = sum(record.errors.values())
        ctx.log(NAME, f"{record.now():.0f}/{seconds:.0f} s: {len(record.receipts):,} admitted, "
                      f"{errors} errors; RSS MB {memory}; lag {lag}")  # fmt: skip


def figures_of(record: Record, facts: dict[str, Any], sizes_label: str,
               windows: Windows) -> list[Figure]:  # fmt: skip
    """The soak's figures: last window against first, memory slopes, losses."""
    first_label = f"the same, first {windows.width:.0f} s after a {windows.warmup:.0f} s warm-up"
    last = f"last {windows.width:.0f} s"
    submits = record.calls.get("SubmitStatement", [])
    reads = [c for rpc, calls in record.calls.items() if rpc != "SubmitStatement" for c in calls]
    figures = [
        Figure(f"{NAME}.statements", f"statements admitted/s, {last}, {sizes_label}",
               len(within(submits, windows.last)) / windows.width, "statements/s",
               len(within(submits, windows.first)) / windows.width, first_label),
        Figure(f"{NAME}.reads", f"reads answered/s, {last}, {sizes_label}",
               len(within(reads, windows.last)) / windows.width, "reads/s",
               len(within(reads, windows.first)) / windows.width, first_label),
    ]  # fmt: skip
    for rpc in ("SubmitStatement", *(r for r, _ in READ_MIX)):
        calls = record.calls.get(rpc, [])
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            figures.append(
                Figure(f"{NAME}.{name}.{rpc}", f"{rpc} {name}, {last}",
                       percentile(within(calls, windows.last), q), "ms",
                       percentile(within(calls, windows.first), q), first_label)
            )  # fmt: skip
    deliveries: list[tuple[float, float]] = []
    for name, seen in record.arrivals.items():
        for offer_id, (home, receipt) in record.offers.items():
            if home != name and offer_id in seen:
                deliveries.append((receipt - record.started, (seen[offer_id] - receipt) * 1000))
    figures.append(
        Figure(f"{NAME}.watch_p99", f"WatchOffers delivery at the other nodes p99, {last}",
               percentile(within(deliveries, windows.last), 0.99), "ms",
               percentile(within(deliveries, windows.first), 0.99),
               f"{first_label} (arrival minus the publisher's receipt)")
    )  # fmt: skip
    lags = [(s.t, float(v)) for s in record.samples for v in s.lag().values()]
    figures.append(
        Figure(f"{NAME}.lag", f"replication lag, mean over nodes and samples, {last}",
               mean(within(lags, windows.last)), "entries",
               mean(within(lags, windows.first)), first_label,
               detail={"max_entries": max((v for _, v in lags), default=0)})
    )  # fmt: skip
    per_s = len(record.receipts) / windows.seconds
    judged = windows.seconds >= MEMORY_MIN_SECONDS
    for name in record.arrivals:
        verdict = memory_of(record.samples, name, windows.seconds)
        detail = {
            **vars(verdict),
            "last_third_over_first_third": verdict.last_third_mb / verdict.first_third_mb,
            "rss_bytes_per_statement": verdict.rss_slope_mb_per_min * MB / 60 / per_s,
        }
        figures.append(
            Figure(f"{NAME}.memory.{name}",
                   f"{name} RSS growth, least squares over the last two thirds",
                   verdict.rss_slope_mb_per_min, "MB/min", verdict.database_slope_mb_per_min,
                   "the node's database file growth over the same span (ratio: MB of memory "
                   "gained per MB of data)",
                   (Target("<=", MEMORY_PER_DATA_LIMIT, on="ratio"),) if judged else (),
                   detail)
        )  # fmt: skip
    missed = sum(facts["watch_missing"].values())
    figures += [
        Figure(f"{NAME}.lost", "statements lost: a receipt's entry missing from a node at the end",
               facts["lost"], "statements", len(record.receipts),
               "receipts the clients got (ratio = share lost)", (Target("<=", 0),),
               {"per_node": facts["lost_per_node"], "kinds": facts["lost_kinds"]}),
        Figure(f"{NAME}.watch_missed", "offers a node's WatchOffers never delivered",
               missed, "deliveries", len(record.offers) * len(record.arrivals),
               "offers admitted times nodes watching", (Target("<=", 0),),
               {"per_node": facts["watch_missing"]}),
    ]  # fmt: skip
    return figures


async def run(ctx: Context) -> Outcome:
    """Run the soak; report throughput, latency, lag, memory and losses."""
    outcome = Outcome()
    sizes = ctx.sizes
    if sizes.soak_nodes < 2:
        raise BenchError("a soak needs at least two nodes")
    with tempfile.TemporaryDirectory(prefix="kaifang-bench-soak-") as name:
        record, facts = await drive(ctx, Path(name) / "net")
    windows = Windows.of(sizes.soak_seconds)
    label = f"{sizes.soak_nodes} nodes, {sizes.soak_rate:g}/s, {sizes.soak_seconds:g} s"
    outcome.figures = figures_of(record, facts, label, windows)
    rows = rpc_table(record, windows)
    table = render_rpc_table(rows, windows)
    print(f"\nsoak: calls per RPC ({label})\n{table}\n", flush=True)
    chart = plot(record, windows, ctx.out_dir / CHART_FILE)
    write_samples(record, ctx.out_dir / SAMPLES_FILE)
    cpu_first, cpu_last = record.samples[0].cpu_s, record.samples[-1].cpu_s
    span = record.samples[-1].t - record.samples[0].t
    facts.update(
        rpc=rows,
        windows={"warmup_s": windows.warmup, "first": windows.first, "last": windows.last},
        statements_by_kind=dict(record.kinds),
        errors=dict(record.errors),
        submit_home_ms={"p50": percentile(record.home_ms, 0.5),
                        "p99": percentile(record.home_ms, 0.99)},
        submit_forwarded_ms={"p50": percentile(record.forwarded_ms, 0.5),
                             "p99": percentile(record.forwarded_ms, 0.99)},
        start_lateness_ms={"p50": percentile(record.lateness, 0.5) * 1000,
                           "p99": percentile(record.lateness, 0.99) * 1000,
                           "max": max(record.lateness, default=0.0) * 1000},
        no_idle_patent=record.no_idle_patent,
        cpu_cores_busy={k: (cpu_last[k] - cpu_first[k]) / span for k in cpu_first},
        samples=len(record.samples),
        charts=[str(chart)] if chart else [],
    )  # fmt: skip
    outcome.info = facts
    errors = sum(record.errors.values())
    busy = ", ".join(f"{k} {v:.2f}" for k, v in facts["cpu_cores_busy"].items())
    outcome.notes += [
        f"{len(record.receipts):,} statements admitted ({dict(record.kinds)}), "
        f"{errors} calls failed ({dict(record.errors) or 'none'})",
        f"cores kept busy over the run: {busy}; chart: {chart or 'matplotlib missing'}",
    ]
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.soak``: this benchmark alone, sized from the command line."""
    from bench import __main__ as runner  # the runner imports this module: not at the top

    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak: a network of exchanges under steady mixed load; throughput, latency, "
        "replication lag, memory and lost statements. Prints the table and writes the report "
        "as `python -m bench --only soak` does.",
    )
    parser.add_argument("--seconds", type=float, help="length of the load (default 600)")
    parser.add_argument(
        "--rate", type=float, help=f"statements/s (default 40; reads: {READS_PER_STATEMENT:g}x)"
    )
    parser.add_argument("--nodes", type=int, help="nodes of the network (default 3)")
    parser.add_argument("--seed", type=int, help="seed of the data and the load")
    parser.add_argument("--report", type=Path, help="where to write the report")
    parser.add_argument("--out", type=Path, help="where to write the chart and samples")
    args = parser.parse_args(argv)
    forwarded = ["--only", NAME]
    if args.seed is not None:
        forwarded += ["--seed", str(args.seed)]
    for option in ("report", "out"):
        if getattr(args, option) is not None:
            forwarded += [f"--{option}", str(getattr(args, option))]
    overrides = {"soak_seconds": args.seconds, "soak_rate": args.rate, "soak_nodes": args.nodes}
    for key, value in overrides.items():
        if value is not None:
            forwarded += ["--size", f"{key}={value}"]
    return runner.main(forwarded)


if __name__ == "__main__":
    sys.exit(main())
