"""A network under random faults: its links, its users, the faults, and what must hold after.

- :class:`ProxiedNetwork`: a :class:`~clients.localnet.LocalNetwork` whose
  every node dials every other through a :class:`~tests.faults.proxy.LinkProxy`
  of its own, one per ordered pair, so that any direction of any link can fail.
- :class:`Market` and :class:`Trader`: parties and patents homed at every
  node, and users who publish, accept, withdraw, pledge, release and transfer
  through whichever node they pick, each owning some patents so that what it
  believes of them is what its receipts say. A call that fails UNAVAILABLE is
  tried again with the same bytes, at another node; every receipt a trader is
  given is kept (:class:`Given`).
- :class:`Chaos`: for a bounded time, at random, kills (SIGKILL), stops
  (SIGTERM), pauses (SIGSTOP) and restarts nodes, and cuts, blackholes,
  stalls, delays and partitions links; each fault undoes itself after a few
  seconds, and :meth:`Chaos.run` returns only once all are undone.
- The after-checks: every log as each node serves it, ``kaifang ledger fsck``
  of every log in every database, and the views against a rebuild
  (:func:`view_rows`, :func:`view_differences`).

Every random choice comes from one seed (the test prints it), so a failing
run's sequence of decisions can be replayed; the timing of real processes
cannot, so a replay makes the same kinds of trouble, not the same interleaving.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from sqlalchemy import Connection, select, text

from clients.cli import main as kaifang
from clients.client import Client, ClientOptions, Submitted
from clients.errors import ServerError, UnavailableError, VerificationError
from clients.localnet import LocalNetwork
from exchange.network import NETWORK_FILE
from exchange.sample import SampleParty, generate
from exchange.statements import statement_id
from exchange.viewstore import VIEW_TABLES
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import statements_pb2 as pb
from kaifang.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ledger.db import Database
from tests.exchange import story
from tests.faults.proxy import LinkProxy
from tests.federation.net import register_of, submit_all

# Seconds each attempt of a trader's call may take: long enough for a
# forward to a slow home, short enough that a paused node does not hold a
# trader for long.
CALL_DEADLINE_S = 5.0
# How long a trader keeps trying one statement before it gives up on it.
SUBMIT_PATIENCE_S = 30.0
# Share of admitted statements a trader sends again at another node, as a
# client that never saw the answer would: the receipt must be the first one.
RESEND_SHARE = 0.1
# At most this many nodes are down or paused at once, so that the network
# always has a majority serving.
MAX_NODES_DOWN = 2


class Timeline:
    """What happened when, in seconds from the start: printed with every failure."""

    def __init__(self) -> None:
        """Start the clock."""
        self.started = time.monotonic()
        self.events: list[str] = []

    def __call__(self, text: str) -> None:
        """Note ``text`` now."""
        self.events.append(f"{time.monotonic() - self.started:7.2f}  {text}")

    def tail(self, count: int = 40) -> str:
        """The last ``count`` events, one a line."""
        return "\n".join(self.events[-count:])


# -- the network ------------------------------------------------------------


class ProxiedNetwork:
    """A local network whose nodes dial each other only through link proxies."""

    def __init__(self, net: LocalNetwork, links: dict[tuple[str, str], LinkProxy]) -> None:
        """Use ``net``, whose member A dials member B through ``links[A, B]``."""
        self.net = net
        self.links = links

    @classmethod
    async def create(
        cls, directory: Path, names: Sequence[str], *, databases: Mapping[str, str] | None = None
    ) -> ProxiedNetwork:
        """Create the network and start a proxy per ordered pair of members.

        The proxies listen before the network's ports are chosen, so that no
        node is given a port a proxy holds; they learn their targets after.
        """
        links = {(a, b): LinkProxy(name=f"{a}->{b}") for a in names for b in names if a != b}
        for link in links.values():
            await link.start()
        dial = {a: {b: links[a, b].address for b in names if b != a} for a in names}
        net = LocalNetwork.create(directory, names, databases=databases, dial=dial)
        for (_, b), link in links.items():
            link.target = net.network.member(b).address
        return cls(net, links)

    def heal_all(self) -> None:
        """Heal every link."""
        for link in self.links.values():
            link.heal()

    async def close(self) -> None:
        """Stop every node, then every proxy."""
        try:
            await self.net.close()
        finally:
            for link in self.links.values():
                await link.close()


# -- the users ----------------------------------------------------------------


@dataclass(frozen=True)
class Given:
    """A receipt a client was given: the entry its statement got, and where it asked."""

    statement_id: bytes
    origin: str
    index: int
    via: str
    kind: str
    duplicate: bool
    patent: str = ""  # the patent it is about, if any


@dataclass
class PatentModel:
    """What the trader owning a patent believes of it (from its receipts or the home)."""

    number: str
    home: str
    owners: list[SampleParty]
    offer: bytes | None = None
    pledge: tuple[bytes, SampleParty] | None = None
    # An answer was lost or a statement refused: ask the home before acting again.
    stale: bool = False


@dataclass
class Market:
    """Parties and patents, each homed at one node, as the traders see them."""

    parties: list[SampleParty]
    patents: list[PatentModel]
    given: list[Given] = field(default_factory=list)
    # What must not happen whatever the faults: a receipt that does not verify, two
    # receipts for one statement, a node that does not come back. Checked at the end.
    violations: list[str] = field(default_factory=list)
    # How calls failed, by gRPC code name: a summary for the report.
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def party(self) -> dict[str, SampleParty]:
        """The parties by id."""
        return {p.party_id: p for p in self.parties}

    def keep(self, submitted: Submitted, via: str, kind: str, patent: str) -> Given:
        """Keep the receipt ``via`` gave for a statement of ``kind`` about ``patent``."""
        given = Given(
            submitted.statement_id, submitted.origin, submitted.index, via, kind,
            submitted.duplicate, patent,
        )  # fmt: skip
        self.given.append(given)
        return given


async def open_market(
    pnet: ProxiedNetwork, rng: random.Random, parties: int, patents: int
) -> Market:
    """Register ``parties`` parties and record ``patents`` patents at each node, their home.

    Waits until every node holds all of it, so that any node can route a
    statement about any of them. Some patents have two owners.
    """
    net = pnet.net
    names = list(net.nodes)
    register = register_of(net)
    homed = {
        name: generate(rng.randrange(1 << 30), parties=parties, patents=patents) for name in names
    }
    everyone = [p for sample in homed.values() for p in sample.parties]
    numbers = [r.application_number for sample in homed.values() for r in sample.patents]
    if len(set(numbers)) != len(numbers) or len({p.party_id for p in everyone}) != len(everyone):
        raise RuntimeError("two samples drew the same patent or party; use another seed")
    market = Market(everyone, [])
    for name, sample in homed.items():
        registered = await submit_all(net, name, [story.registration(p) for p in sample.parties])
        market.given += [_given(r, name, "party_registered") for r in registered]
    await net.wait_converged(within_s=120)
    for name, sample in homed.items():
        records = []
        for record in sample.patents:
            owners = rng.sample(everyone, 2 if rng.random() < 0.2 else 1)
            records.append(story.record(record, owners, register))
            market.patents.append(PatentModel(record.application_number, name, owners))
        recorded = await submit_all(net, name, records)
        numbers = [r.application_number for r in sample.patents]
        market.given += [
            _given(r, name, "patent_recorded", n) for r, n in zip(recorded, numbers, strict=True)
        ]
    await net.wait_converged(within_s=120)
    return market


def _given(response: api.SubmitStatementResponse, via: str, kind: str, patent: str = "") -> Given:
    r = response
    return Given(r.statement_id, r.origin, r.index, via, kind, r.duplicate, patent)


def network_clients(pnet: ProxiedNetwork) -> dict[str, Client]:
    """A client of each node, trusting the network's keys, that tries each call once.

    The traders retry themselves, at a node of their choosing.
    """
    options = ClientOptions(deadline_s=CALL_DEADLINE_S, attempts=1)
    network_file = pnet.net.directory / NETWORK_FILE
    return {
        name: Client.for_network(network_file, name, options=options) for name in pnet.net.nodes
    }


class Trader:
    """A user who acts on the patents it owns through any node, until told to stop."""

    def __init__(
        self,
        name: str,
        market: Market,
        patents: list[PatentModel],
        clients: Mapping[str, Client],
        rng: random.Random,
        timeline: Timeline,
    ) -> None:
        """Act on ``patents`` (no other trader does) through ``clients``."""
        self.name = name
        self.market = market
        self.patents = patents
        self.clients = clients
        self.rng = rng
        self.timeline = timeline
        self.admitted = 0
        self.refused = 0
        self.lost = 0  # statements given up on with their outcome unknown

    async def run(self, until: float) -> None:
        """Act until the monotonic clock reads ``until`` (the statement in hand is finished)."""
        while time.monotonic() < until:
            patent = self.rng.choice(self.patents)
            if patent.stale and not await self._resync(patent):
                await asyncio.sleep(0.5)
                continue
            await self._act(patent)
            await asyncio.sleep(self.rng.uniform(0.0, 0.2))

    async def _act(self, patent: PatentModel) -> None:
        rng = self.rng
        owners = patent.owners
        others = [p for p in self.market.parties if p not in owners]
        pledgee = patent.pledge[1] if patent.pledge else None
        kinds = ["transfer"]
        kinds += ["accept"] * 4 + ["withdraw"] if patent.offer else ["offer"] * 2
        kinds += ["release"] if patent.pledge else ["pledge"]
        kind = rng.choice(kinds)
        number = patent.number
        if kind == "offer":
            signed = story.offer(number, owners + ([pledgee] if pledgee else []))
        elif kind == "accept":
            assert patent.offer is not None
            signed = story.acceptance(patent.offer, rng.choice(others))
        elif kind == "withdraw":
            assert patent.offer is not None
            signed = story.withdrawal(patent.offer, owners)
        elif kind == "pledge":
            signed = story.pledge(number, owners, rng.choice(others))
        elif kind == "release":
            assert pledgee is not None
            assert patent.pledge is not None
            release = pb.PledgeReleased(pledge_id=patent.pledge[0])
            signed = story.signed(
                pb.Statement(pledge_released=release), (pledgee.party_id, pledgee)
            )
        else:
            assignee = rng.choice([p for p in others if p is not pledgee])
            signed = story.transfer(number, owners, [assignee], *([pledgee] if pledgee else []))
        submitted = await self.submit(signed, kind, number)
        if submitted is None:
            patent.stale = True
            return
        sid = submitted.statement_id
        if kind == "offer":
            patent.offer = sid
        elif kind == "withdraw":
            patent.offer = None
        elif kind == "pledge":
            body = pb.Statement.FromString(signed.statement).pledge_registered
            patent.pledge = (sid, self.market.party[body.pledgee])
        elif kind == "release":
            patent.pledge = None
        elif kind == "transfer":
            body2 = pb.Statement.FromString(signed.statement).transfer_registered
            patent.owners = [self.market.party[a] for a in body2.assignees]

    async def submit(
        self, signed: pb.SignedStatement, kind: str, patent: str = ""
    ) -> Submitted | None:
        """Submit ``signed`` until a node answers, at random nodes; None if refused or lost.

        Every receipt is kept; some are asked for again at another node, and
        must be the same entry.
        """
        rng = self.rng
        nodes = list(self.clients)
        deadline = time.monotonic() + SUBMIT_PATIENCE_S
        via = rng.choice(nodes)
        while True:
            outcome = await self._once(signed, kind, via)
            if isinstance(outcome, Submitted):
                break
            if outcome == "refused":
                self.refused += 1
                return None
            if time.monotonic() > deadline:
                self.lost += 1
                sid = statement_id(signed.statement).hex()[:12]
                self.timeline(f"{self.name}: gave up on a {kind} ({sid})")
                return None
            # Nothing is known of the first attempt: the same bytes again, anywhere.
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            via = rng.choice(nodes)
        self.admitted += 1
        first = self.market.keep(outcome, via, kind, patent)
        if rng.random() < RESEND_SHARE:
            again_via = rng.choice([n for n in nodes if n != via])
            again = await self._once(signed, kind, again_via)
            if isinstance(again, Submitted):
                second = self.market.keep(again, again_via, kind, patent)
                if (second.origin, second.index) != (
                    first.origin,
                    first.index,
                ) or not second.duplicate:
                    self.market.violations.append(
                        f"{kind} {first.statement_id.hex()}: "
                        f"{via} gave {first.origin}#{first.index}, "
                        f"then {again_via} gave {second.origin}#{second.index} "
                        f"(duplicate={second.duplicate})"
                    )
        return outcome

    async def _once(self, signed: pb.SignedStatement, kind: str, via: str) -> Submitted | str:
        """One attempt at ``via``: the receipt, "refused", or "unknown" (try again)."""
        try:
            return await self.clients[via].submit(signed)
        except VerificationError as e:
            self.market.violations.append(f"{kind} via {via}: the receipt does not verify: {e}")
            return "refused"
        except ServerError as e:
            name = e.code.name if isinstance(e.code, grpc.StatusCode) else str(e.code)
            self.market.failures[name] = self.market.failures.get(name, 0) + 1
            if isinstance(e, UnavailableError) or e.code in (
                grpc.StatusCode.INTERNAL,
                grpc.StatusCode.UNKNOWN,
                grpc.StatusCode.CANCELLED,
            ):
                # The statement may or may not have been sequenced.
                return "unknown"
            return "refused"

    async def _resync(self, patent: PatentModel) -> bool:
        """Believe what the patent's home says of it now; False if the home did not answer."""
        try:
            reply = await self.clients[patent.home].patent(patent.number)
        except ServerError:
            return False
        party = self.market.party
        patent.owners = [party[o] for o in reply.owners]
        patent.offer = bytes(reply.active_offer_id) or None
        patent.pledge = (
            (bytes(reply.pledge.pledge_id), party[reply.pledgee]) if reply.pledgee else None
        )
        patent.stale = False
        return True


# -- the faults ---------------------------------------------------------------


class Chaos:
    """Random faults on a network's nodes and links, each undone after a few seconds."""

    def __init__(
        self, pnet: ProxiedNetwork, rng: random.Random, timeline: Timeline, market: Market
    ) -> None:
        """Inflict faults on ``pnet``; note them on ``timeline``, failures in ``market``."""
        self.pnet = pnet
        self.net = pnet.net
        self.rng = rng
        self.timeline = timeline
        self.market = market
        self.busy_nodes: set[str] = set()
        self.busy_links: set[tuple[str, str]] = set()
        self.paused: set[str] = set()
        self.crashed: set[str] = set()
        self.counts: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, duration_s: float) -> None:
        """Inflict faults for ``duration_s`` seconds; return once every one is undone."""
        end = time.monotonic() + duration_s
        faults: list[tuple[str, Callable[[], Awaitable[None]] | None]] = []
        while time.monotonic() < end:
            await asyncio.sleep(self.rng.uniform(0.3, 2.0))
            self._look_for_crashes()
            kind, fault = self._choose()
            if fault is None:
                continue
            self.counts[kind] = self.counts.get(kind, 0) + 1
            faults.append((kind, fault))
            task = asyncio.create_task(self._guarded(kind, fault))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.timeline("chaos: no new faults; waiting for the last ones to be undone")
        await asyncio.gather(*list(self._tasks))

    def _look_for_crashes(self) -> None:
        """Note a node no fault is about that is not running: it exited by itself."""
        for name, local in self.net.nodes.items():
            process = local.process
            if name in self.busy_nodes or process is None or process.poll() is None:
                continue
            if name not in self.crashed:
                self.crashed.add(name)
                self.timeline(f"{name} exited by itself ({process.returncode})")
                self.market.violations.append(f"{name} exited by itself ({process.returncode})")

    async def _guarded(self, kind: str, fault: Callable[[], Awaitable[None]]) -> None:
        try:
            await fault()
        except Exception as e:
            self.timeline(f"{kind} failed: {type(e).__name__}: {e}")
            self.market.violations.append(f"{kind}: {type(e).__name__}: {e}")

    def _choose(self) -> tuple[str, Callable[[], Awaitable[None]] | None]:
        rng = self.rng
        names = list(self.net.nodes)
        idle_nodes = [n for n in names if n not in self.busy_nodes and n not in self.crashed]
        idle_links = [link for link in self.pnet.links if link not in self.busy_links]
        kind = rng.choice(
            ["kill", "terminate", "pause", "cut", "blackhole", "stall", "delay", "partition"]
        )
        hold = rng.uniform(1.0, 6.0)
        if kind in ("kill", "terminate", "pause"):
            if not idle_nodes or len(self.busy_nodes) >= MAX_NODES_DOWN:
                return kind, None
            node = rng.choice(idle_nodes)
            self.busy_nodes.add(node)
            if kind == "pause":
                return kind, lambda: self._pause(node, hold)
            return kind, lambda: self._crash(node, hold, graceful=kind == "terminate")
        if kind == "partition":
            side = set(rng.sample(names, rng.randrange(1, len(names))))
            across = [(a, b) for a in names for b in names if a != b and (a in side) != (b in side)]
            if any(link in self.busy_links for link in across):
                return kind, None
            self.busy_links.update(across)
            return kind, lambda: self._partition(sorted(side), across, hold + 2.0)
        if not idle_links:
            return kind, None
        link = rng.choice(idle_links)
        self.busy_links.add(link)
        seconds = rng.uniform(0.05, 0.8)
        return kind, lambda: self._link_fault(kind, link, hold, seconds)

    async def _crash(self, node: str, down_s: float, *, graceful: bool) -> None:
        try:
            if graceful:
                self.timeline(f"SIGTERM {node}")
                try:
                    code = await self.net.stop(node)
                except TimeoutError as e:
                    # A finding; what its database is waiting for says why. Killed,
                    # so that the run goes on.
                    activity = await database_activity(self.net.database_url(node))
                    self.timeline(f"{node} still running after SIGTERM; SIGKILL\n{activity}")
                    self.market.violations.append(f"{node}: {e}")
                    await self.net.kill(node)
                    code = 0
                if code != 0:
                    self.market.violations.append(f"{node} exited {code} on SIGTERM")
            else:
                self.timeline(f"SIGKILL {node}")
                await self.net.kill(node)
            await asyncio.sleep(down_s)
            self.timeline(f"restart {node}")
            self.net.start(node)
            await self.net.wait_ready(node)
            self.timeline(f"{node} serving")
        finally:
            self.busy_nodes.discard(node)

    async def _pause(self, node: str, hold_s: float) -> None:
        try:
            self.timeline(f"SIGSTOP {node}")
            self.net.pause(node)
            self.paused.add(node)
            await asyncio.sleep(hold_s)
            self.timeline(f"SIGCONT {node}")
            self.net.resume(node)
            self.paused.discard(node)
        finally:
            self.busy_nodes.discard(node)

    async def _partition(
        self, side: list[str], across: list[tuple[str, str]], hold_s: float
    ) -> None:
        try:
            self.timeline(f"partition {side} from the rest")
            for link in across:
                self.pnet.links[link].cut()
            await asyncio.sleep(hold_s)
            self.timeline(f"partition of {side} healed")
            for link in across:
                self.pnet.links[link].heal()
        finally:
            self.busy_links.difference_update(across)

    async def _link_fault(
        self, kind: str, link: tuple[str, str], hold_s: float, delay_s: float
    ) -> None:
        proxy = self.pnet.links[link]
        try:
            if kind == "cut":
                proxy.cut()
            elif kind == "blackhole":
                proxy.cut(blackhole=True)
            elif kind == "stall":
                proxy.stall()
            else:
                proxy.delay(delay_s)
            what = f"{delay_s * 1000:.0f} ms" if kind == "delay" else ""
            self.timeline(f"{kind} {proxy.name} {what}".rstrip())
            await asyncio.sleep(hold_s)
            self.timeline(f"heal {proxy.name}")
            proxy.heal()
        finally:
            self.busy_links.discard(link)

    async def recover(self) -> None:
        """Heal every link and have every node running and serving (after :meth:`run`).

        A node found not running then is a crash: kept as a violation.
        """
        self.pnet.heal_all()
        for node in list(self.paused):
            self.net.resume(node)
            self.paused.discard(node)
        for name, local in self.net.nodes.items():
            if local.process is None or local.process.poll() is not None:
                # Every fault has been undone: a node that is not running left by itself.
                code = None if local.process is None else local.process.returncode
                if name not in self.crashed:
                    self.market.violations.append(f"{name} exited by itself ({code})")
                self.timeline(f"restart {name}, which exited by itself ({code})")
                self.net.start(name)
        await asyncio.gather(*(self.net.wait_ready(n) for n in self.net.nodes))
        self.timeline("every link healed, every node serving")


# -- what must hold after ------------------------------------------------------


async def read_logs(net: LocalNetwork, name: str, origins: Sequence[str]) -> dict[str, list[bytes]]:
    """Each of ``origins``' logs as node ``name`` serves it: each entry's statement id, in order."""
    logs: dict[str, list[bytes]] = {}
    async with net.client_channel(name) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        for origin in origins:
            ids: list[bytes] = []
            stream = stub.GetEntries(ledger_pb2.GetEntriesRequest(origin=origin), timeout=60)
            async for batch in stream:
                for entry in batch.entries:
                    if entry.index != len(ids):
                        raise AssertionError(
                            f"{name} served {origin}#{entry.index} after {len(ids)} entries"
                        )
                    ids.append(statement_id(pb.LogEntry.FromString(entry.data).statement))
            logs[origin] = ids
    return logs


async def fsck(url: str, origin: str) -> int:
    """``kaifang ledger fsck`` of ``origin``'s log in the database at ``url``: its exit status."""
    return await asyncio.to_thread(kaifang, ["ledger", "fsck", "--db", url, "--origin", origin])


async def rebuild_views(url: str) -> int:
    """``kaifang views rebuild`` of the database at ``url``: its exit status."""
    return await asyncio.to_thread(kaifang, ["views", "rebuild", "--db", url])


async def ledger_digest(url: str) -> dict[str, tuple[int, str]]:
    """Every table at ``url`` but the views (the logs, their checkpoints, …): rows and hash."""
    views = {table.name for table in VIEW_TABLES}
    db = Database(url)
    try:
        digest = await story.database_digest(db)
    finally:
        await db.dispose()
    return {name: value for name, value in digest.items() if name not in views}


async def view_rows(
    url: str, *, without: frozenset[tuple[str, str]] = frozenset()
) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every view table at ``url``, sorted; without the (table, column)s named."""

    def read(conn: Connection) -> dict[str, list[tuple[object, ...]]]:
        rows = {}
        for table in VIEW_TABLES:
            columns = [c for c in table.columns if (table.name, c.name) not in without]
            rows[table.name] = sorted((tuple(r) for r in conn.execute(select(*columns))), key=repr)
        return rows

    db = Database(url)
    try:
        return await db.scan(read)
    finally:
        await db.dispose()


def view_differences(
    before: Mapping[str, list[tuple[object, ...]]], after: Mapping[str, list[tuple[object, ...]]]
) -> list[str]:
    """Which view tables differ, with their row counts and a row only one side has."""
    differences = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name, []), after.get(name, [])
        if old != new:
            only_old = sorted(set(old) - set(new), key=repr)[:1]
            only_new = sorted(set(new) - set(old), key=repr)[:1]
            differences.append(
                f"{name}: {len(old)} rows, {len(new)} after; e.g. {only_old} became {only_new}"
            )
    return differences


def logged_errors(net: LocalNetwork) -> list[str]:
    """Lines of the nodes' logs at level ERROR or above, or not from the logger at all.

    A node logs one JSON object a line; anything else on its standard error
    (a traceback, a warning printed by a library) is reported too.
    """
    found = []
    for name, node in net.nodes.items():
        for line in node.log_file.read_text(errors="replace").splitlines():
            try:
                level = json.loads(line).get("level")
            except (ValueError, AttributeError):
                level = "not a log record"
            if level not in ("DEBUG", "INFO", "WARNING"):
                found.append(f"{name}: {line[:400]}")
    return found


def log_tails(net: LocalNetwork, lines: int = 40) -> str:
    """The last ``lines`` lines of every node's log, each line cut to 300 characters."""
    parts = []
    for name, node in net.nodes.items():
        text = node.log_file.read_text(errors="replace") if node.log_file.exists() else ""
        tail = [line[:300] for line in text.splitlines()[-lines:]]
        parts.append(f"--- {name}'s log, last {len(tail)} lines:\n" + "\n".join(tail))
    return "\n".join(parts)


async def missing_from_histories(
    pnet: ProxiedNetwork, market: Market, within_s: float
) -> dict[str, str]:
    """Patents whose witnessed history lacks a receipt given for them, with what is wrong.

    Each history is asked of the patent's home by a client that verifies it
    (checkpoint cosigned by a majority of the other members, every inclusion
    proof), again until ``within_s`` has passed: witnessing catches up after
    the faults like the rest.
    """
    wanted: dict[str, set[tuple[int, bytes]]] = {}
    for given in market.given:
        if given.patent:
            wanted.setdefault(given.patent, set()).add((given.index, given.statement_id))
    deadline = time.monotonic() + within_s
    problems: dict[str, str] = {}
    network_file = pnet.net.directory / NETWORK_FILE
    async with Client.for_network(network_file) as client:
        for patent in market.patents:
            while True:
                try:
                    history = await client.at(patent.home).history(patent=patent.number)
                except (ServerError, VerificationError) as e:
                    problem = f"{type(e).__name__}: {e}"
                else:
                    held = {(e.index, statement_id(e.entry.statement)) for e in history.entries}
                    lacking = wanted.get(patent.number, set()) - held
                    problem = f"{len(lacking)} receipts not in it" if lacking else ""
                if not problem:
                    problems.pop(patent.number, None)
                    break
                problems[patent.number] = problem
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
    return problems


async def database_activity(url: str) -> str:
    """On PostgreSQL, the sessions of the database at ``url`` and the locks they wait for.

    Printed when a node does not converge: a transaction left open, or a
    writer waiting on a lock, shows here. Empty on SQLite.
    """
    if not url.startswith("postgresql"):
        return ""
    query = text(
        "SELECT a.pid, a.state, a.xact_start, a.wait_event_type, a.wait_event, "
        "left(a.query, 120), (SELECT string_agg(l.mode || ' ' || l.locktype || "
        "coalesce(' ' || l.relation::regclass::text, '') || "
        "CASE WHEN l.granted THEN '' ELSE ' (waiting)' END, ', ') "
        "FROM pg_locks l WHERE l.pid = a.pid) "
        "FROM pg_stat_activity a WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
    )
    db = Database(url)
    try:
        rows = await db.read(lambda conn: conn.execute(query).all())
    finally:
        await db.dispose()
    return "\n".join(" | ".join(str(v) for v in row) for row in rows)


async def log_state(url: str) -> str:
    """Each log in the database at ``url``: entries held, and its five largest signed sizes."""
    query = text(
        "SELECT l.origin, (SELECT count(*) FROM entries e WHERE e.log_id = l.id), "
        "(SELECT max(e.idx) FROM entries e WHERE e.log_id = l.id) FROM logs l ORDER BY l.origin"
    )
    sizes = text(
        "SELECT size FROM checkpoints WHERE log_id = "
        "(SELECT id FROM logs WHERE origin = :origin) ORDER BY size DESC LIMIT 5"
    )

    def read(conn: Connection) -> list[str]:
        lines = []
        for origin, count, last in conn.execute(query).all():
            signed = list(conn.execute(sizes, {"origin": origin}).scalars())
            lines.append(f"{origin}: {count} entries (last index {last}), signed {signed}")
        return lines

    db = Database(url)
    try:
        return "\n".join(await db.read(read))
    finally:
        await db.dispose()
