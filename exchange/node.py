"""The exchange's I/O shell: admit signed statements, sequence them, update the views.

:class:`Exchange` ties the pure admission (:mod:`exchange.admission`) to the
ledger (:class:`ledger.store.Sequencer`) and the views (:mod:`exchange.views`).
Submissions wait in a queue; one worker takes everything queued (up to
:data:`MAX_BATCH`) and, in **one** database transaction holding the log's
write lock, for each statement in arrival order:

1. dedup: a statement already sequenced gets its first place back;
2. admission reads the views *on that transaction*, so it sees what the
   statements before it in the batch did (a second acceptance of an offer
   withdrawn earlier in the same batch is refused, as it would be alone);
3. a statement whose subject's home is another exchange is not sequenced
   here: it is handed to the node's router (:data:`Router`), which forwards
   it to its home and returns the home's receipt; a node without a router
   refuses it with :class:`NotHomeError` naming the home;
4. the entry is built with its ``previous`` link, appended, and applied to
   the views.

Then one checkpoint is signed and everything commits together: the views
never run ahead of or behind the node's own log. A refused statement writes
nothing (admission raises before any write for it). An unexpected failure
rolls the whole batch back; its statements are then retried one per
transaction, so that one poisonous statement cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from sqlalchemy import Connection, select

from exchange import metrics
from exchange.admission import admit, run_signature_checks, signature_checks, subject_of
from exchange.errors import ExchangeError, InvalidFieldError, NotHomeError, RuleViolationError
from exchange.limits import MAX_SUBMIT_BATCH as MAX_SUBMIT_BATCH  # re-exported
from exchange.models import OfferRow, ViewCursor
from exchange.statements import parse_statement, statement_id
from exchange.views import DbWorld, apply_entry, build_entry
from exchange.viewstore import MemoryViewStore, SqlViewStore, analyze_views
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.db import Database
from ledger.errors import LedgerError
from ledger.models import Log
from ledger.store import MAX_ENTRY_SIZE as MAX_ENTRY
from ledger.store import Appender, LogStore, Sequencer

log = logging.getLogger(__name__)

# Statements per transaction: enough to share one commit and one signature
# widely, small enough that the write lock is held for tens of milliseconds.
MAX_BATCH = 256
# Log entries applied to the views per transaction when catching up or rebuilding.
APPLY_CHUNK = 1000
# Submissions of fewer statements are verified inside the admitting
# transaction: checking them beforehand on another thread costs more (the
# hop, a connection, a key read) than the verification it moves.
PRECHECK_MIN = 16


@dataclass(frozen=True)
class Submitted:
    """Where a statement was sequenced, and its receipt."""

    statement_id: bytes
    origin: str
    index: int
    receipt: str
    duplicate: bool


@dataclass(frozen=True)
class _Placed:
    """Where a statement is, decided inside the batch transaction."""

    statement_id: bytes
    origin: str
    index: int
    duplicate: bool
    entry: bytes | None = None  # the entry appended, for a new statement
    size: int | None = None  # the size of the checkpoint that covers it


@dataclass
class _Pending:
    signed: pb.SignedStatement
    future: asyncio.Future[_Placed]
    queued_at: float


Outcome = Submitted | ExchangeError
# Forwards a statement to its subject's home exchange (named by origin) and
# returns the home's receipt: the seam federation fills in.
Router = Callable[[str, pb.SignedStatement], Awaitable[Submitted]]


def outcome_label(error: ExchangeError) -> str:
    """The ``outcome`` label of a refusal in the admissions metric."""
    if isinstance(error, RuleViolationError):
        return error.code
    return type(error).__name__.removesuffix("Error").upper() or "REFUSED"


def kind_label(signed: pb.SignedStatement) -> str:
    """The ``kind`` label of a statement in the admissions metric ("malformed" if unparsable)."""
    try:
        kind = pb.Statement.FromString(signed.statement).WhichOneof("body")
    except DecodeError:
        return "malformed"
    return kind or "malformed"


class Exchange:
    """One exchange node's admission path."""

    def __init__(
        self,
        db: Database,
        store: LogStore,
        sequencer: Sequencer,
        register_key: bytes,
        operator_keys: Mapping[str, bytes],
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        *,
        max_batch: int = MAX_BATCH,
        router: Router | None = None,
    ) -> None:
        """Admit into ``store`` (the node's own log) through ``sequencer``."""
        self.db = db
        self.store = store
        self.sequencer = sequencer
        self.origin = store.origin
        self._register_key = register_key
        self._operator_keys = dict(operator_keys)
        self._clock = clock
        self._max_batch = max_batch
        self.router = router
        # Signature checks run here, off the event loop and the writer thread.
        self._verifier = ThreadPoolExecutor(1, thread_name_prefix="kaifang-verify")
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None
        # Counts commits that changed the views; watchers wait for it to move.
        self.version = 0
        # Set when the node stops: watch streams end.
        self.stopping = False
        self._changed = asyncio.Condition()
        self._grown: dict[str, asyncio.Event] = {}
        self._logs: dict[str, LogStore] = {store.origin: store}

    def world(self, conn: Connection) -> DbWorld:
        """Admission's view of the world on ``conn``."""
        return DbWorld(conn, self._register_key, self._operator_keys)

    async def submit(self, signed: pb.SignedStatement, *, route: bool = True) -> Submitted:
        """Admit and sequence ``signed``; raise an :class:`ExchangeError` if it is refused.

        ``route`` False refuses a statement whose home is elsewhere instead of
        forwarding it: a statement forwarded here is never forwarded on, so
        two nodes whose views disagree on a home cannot pass it back and forth.
        """
        (outcome,) = await self.submit_many([signed], route=route)
        if isinstance(outcome, ExchangeError):
            raise outcome
        return outcome

    async def submit_many(
        self, signeds: Sequence[pb.SignedStatement], *, route: bool = True
    ) -> list[Outcome]:
        """Admit ``signeds`` in order; return each one's receipt or the error that refused it.

        The statements are sequenced in the order given (a later one sees what
        an earlier one did); a refused one does not stop the others.
        """
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        await self._check_signatures(signeds)
        pending = [_Pending(s, loop.create_future(), now) for s in signeds]
        self._queue.extend(pending)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        placed = await asyncio.gather(
            *(asyncio.shield(p.future) for p in pending), return_exceptions=True
        )
        outcomes: list[Outcome] = []
        for signed, p in zip(signeds, placed, strict=True):
            if isinstance(p, NotHomeError) and self.router is not None and route:
                try:
                    outcomes.append(await self.router(p.home, signed))
                except ExchangeError as e:
                    outcomes.append(e)
            elif isinstance(p, ExchangeError):
                outcomes.append(p)
            elif isinstance(p, BaseException):
                raise p
            else:
                outcomes.append(await self._with_receipt(p))
        return outcomes

    async def _check_signatures(self, signeds: Sequence[pb.SignedStatement]) -> None:
        """Verify the statements' signatures on another core while a batch is being admitted.

        Ed25519 verification releases the GIL, so it runs in parallel with the
        transaction in progress; admission then finds the results remembered
        (:data:`exchange.statements.VERIFIED`) and only compares keys. With
        nothing in progress there is nothing to overlap, and for fewer than
        :data:`PRECHECK_MIN` statements the hop to another thread costs more
        than it moves: admission verifies.
        """
        if len(signeds) < PRECHECK_MIN or self._worker is None or self._worker.done():
            return

        def check(conn: Connection) -> None:
            run_signature_checks(signature_checks(signeds, self.world(conn)))

        if self.db.is_sqlite:
            await self.db.scan(check)  # a worker thread, with its own connection
        else:
            checks = await self.db.read(lambda c: signature_checks(signeds, self.world(c)))
            await asyncio.get_running_loop().run_in_executor(
                self._verifier, run_signature_checks, checks
            )

    async def _with_receipt(self, placed: _Placed) -> Submitted:
        receipt = ""
        if placed.origin == self.origin:
            found = await self.store.receipt(placed.index, placed.size, entry=placed.entry)
            receipt = found.format()
        else:
            # A duplicate of a statement another exchange sequenced: its
            # receipt from the replica, against the latest checkpoint held.
            try:
                receipt = (await (await self.log(placed.origin)).receipt(placed.index)).format()
            except LedgerError:
                log.warning("no receipt yet for entry %d of %s", placed.index, placed.origin)
        return Submitted(
            placed.statement_id, placed.origin, placed.index, receipt, placed.duplicate
        )

    async def views_changed(self, origin: str | None = None) -> None:
        """Wake the watchers: a commit changed the views (and ``origin``'s log, if given)."""
        async with self._changed:
            self.version += 1
            self._changed.notify_all()
        if origin is not None:
            # Those waiting for this log only; a fresh event for the next change.
            self._grown.pop(origin, asyncio.Event()).set()

    def log_grown(self, origin: str) -> asyncio.Event:
        """An event set when ``origin``'s log next grows here (or the node stops).

        Streams of one log wait on it rather than on every commit of the
        node, which in a network are mostly other logs' commits.
        """
        event = self._grown.get(origin)
        if event is None:
            event = self._grown[origin] = asyncio.Event()
            if self.stopping:
                event.set()
        return event

    async def wait_for_change(self, version: int) -> None:
        """Return once the views changed after ``version``, or the node stops.

        The caller bounds the wait.
        """
        async with self._changed:
            await self._changed.wait_for(lambda: self.version != version or self.stopping)

    async def stop_watches(self) -> None:
        """End every watch: the node is stopping."""
        async with self._changed:
            self.stopping = True
            self._changed.notify_all()
        for event in self._grown.values():
            event.set()

    async def log(self, origin: str) -> LogStore:
        """The stored log of ``origin`` (this node's own, or one it replicates)."""
        store = self._logs.get(origin)
        if store is None:
            store = self._logs[origin] = await LogStore.open(self.db, origin)
        return store

    async def close(self) -> None:
        """Finish the submissions queued so far."""
        if self._worker is not None:
            await asyncio.shield(self._worker)
        self._verifier.shutdown(wait=False)

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                await self._sequence(batch)
            except Exception:
                # One statement broke the transaction for all: try each alone.
                for item in batch:
                    try:
                        await self._sequence([item])
                    except Exception as e:
                        if not item.future.done():
                            item.future.set_exception(e)
            except BaseException:
                # Cancelled mid-batch: nobody may be left waiting forever. The
                # batch may or may not have committed; dedup makes a retry safe.
                for item in batch + self._queue:
                    item.future.cancel()
                self._queue.clear()
                raise

    async def _sequence(self, batch: Sequence[_Pending]) -> None:
        now = self._clock()

        def work(conn: Connection, appender: Appender) -> list[_Placed | ExchangeError]:
            world = self.world(conn)
            results: list[_Placed | ExchangeError] = []
            for item in batch:
                try:
                    results.append(self._place(conn, world, appender, item.signed, now))
                except ExchangeError as e:
                    results.append(e)
            world.flush()
            return results

        results, checkpoint = await self.sequencer.sequence_with(work)
        metrics.LEDGER_SIZE.labels(self.origin).set(checkpoint.size)
        done = time.perf_counter()
        admitted = 0
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, ExchangeError):
                metrics.ADMISSIONS.labels(kind_label(item.signed), outcome_label(result)).inc()
                item.future.set_exception(result)
            else:
                admitted += not result.duplicate
                metrics.SEQUENCING_SECONDS.observe(done - item.queued_at)
                if not result.duplicate:
                    result = dataclasses.replace(result, size=checkpoint.size)
                item.future.set_result(result)
        if admitted:
            metrics.BATCH_SIZE.observe(admitted)
            await self.views_changed(self.origin)

    def _place(
        self,
        conn: Connection,
        world: DbWorld,
        appender: Appender,
        signed: pb.SignedStatement,
        now: dt.datetime,
    ) -> _Placed:
        """Sequence one statement inside the batch transaction, or raise why not."""
        sid = statement_id(signed.statement)
        found = world.placed(sid)
        if found is not None:
            return _Placed(sid, found[0], found[1], duplicate=True)
        try:
            admitted = admit(signed, world, now)
        except ExchangeError:
            # These views may lag the home's (replication is asynchronous):
            # the home, not this node, judges statements about its subjects.
            self._refer_home(signed, world)
            raise
        home = world.home(admitted.patent, admitted.party)
        if home is not None and home != self.origin:
            raise NotHomeError(home, admitted.patent or admitted.party or "?")
        entry = build_entry(self.origin, now, signed, admitted, world)
        if len(entry) > MAX_ENTRY:
            raise InvalidFieldError("signed", f"the log entry would be {len(entry)} bytes")
        (index,) = appender.extend([entry], fresh=True)
        try:
            parsed = (admitted.statement, sid, now)
            apply_entry(world, self.origin, index, entry, parsed=parsed)
        except ExchangeError as e:
            # Admitted but not applicable: a bug, and the transaction already
            # holds some of its writes; fail the batch (it is retried per
            # statement) rather than let it commit half done.
            raise RuntimeError(f"admitted statement {sid.hex()} could not be applied") from e
        metrics.ADMISSIONS.labels(admitted.kind, "admitted").inc()
        return _Placed(sid, self.origin, index, duplicate=False, entry=entry)

    def _refer_home(self, signed: pb.SignedStatement, world: DbWorld) -> None:
        """Raise :class:`NotHomeError` if a refused statement's subject has its home elsewhere."""
        try:
            statement = parse_statement(signed.statement)
            patent, party = subject_of(statement, world)
        except ExchangeError:
            return
        home = world.home(patent, party)
        if home is not None and home != self.origin:
            raise NotHomeError(home, patent or party or "?")

    async def catch_up(self) -> int:
        """Apply the entries of every log held here that the views have not seen; count them."""
        origins = await self.db.read(lambda c: list(c.execute(select(Log.origin)).scalars()))
        applied = 0
        for origin in sorted(origins):
            applied += await apply_log(self.db, await self.log(origin))
        # Statistics for the query planner, which the views outgrow as they grow.
        await self.db.write(analyze_views)
        if applied:
            await self.views_changed()
        return applied


async def apply_log(db: Database, store: LogStore, *, chunk: int = APPLY_CHUNK) -> int:
    """Apply ``store``'s entries that the views have not seen, in order; count them.

    Entries are applied ``chunk`` per transaction, each transaction moving the
    origin's cursor with them, so that an interrupted run resumes where it
    stopped and memory stays bounded whatever the log's size.
    """
    # Every stored entry was verified when written (sequenced here, or
    # replicated against its origin's signature), even one beyond the latest
    # checkpoint a replica holds.
    size = await store.size()
    query = select(ViewCursor.next_index).where(ViewCursor.origin == store.origin)
    start = await db.read(lambda c: c.execute(query).scalar_one_or_none()) or 0
    applied = skipped = 0
    async for rows in store.entries(start, size, batch=chunk):
        skipped += await db.write(functools.partial(apply_rows, store.origin, rows))
        applied += len(rows)
    _warn_skipped(store.origin, skipped)
    return applied


def _warn_skipped(origin: str, skipped: int) -> None:
    if skipped:
        log.warning(
            "%d entries of %s are not statements, or are about a subject whose home is another "
            "log; the views skip them", skipped, origin,
            extra={"origin": origin, "skipped": skipped},
        )  # fmt: skip


def apply_rows(origin: str, rows: Sequence[tuple[int, bytes]], conn: Connection) -> int:
    """Apply ``rows``; return how many were not statements (skipped)."""
    store = SqlViewStore(conn)
    skipped = sum(not apply_entry(store, origin, index, data) for index, data in rows)
    store.flush()
    return skipped


async def rebuild_views(db: Database, *, chunk: int = APPLY_CHUNK) -> int:
    """Replace the views by a rebuild from every log the database holds; count the entries.

    The logs are applied in memory (each in its own order: a statement is
    sequenced only in its subject's home log, so logs are independent) and
    the views are then replaced in one transaction: readers see the old
    views or the new, never a half-built one, and an interrupted rebuild
    leaves the old views in place. Offers keep the watch cursors the old
    views gave them (:meth:`MemoryViewStore.keep_numbers`). Memory grows
    with the size of the views.
    """
    views = MemoryViewStore()
    origins = await db.read(lambda c: list(c.execute(select(Log.origin)).scalars()))
    applied = 0
    for origin in sorted(origins):
        store = await LogStore.open(db, origin)
        size = await store.size()
        skipped = 0
        async for rows in store.entries(0, size, batch=chunk):
            for index, data in rows:
                skipped += not apply_entry(views, origin, index, data)
            applied += len(rows)
        _warn_skipped(origin, skipped)

    def replace(conn: Connection) -> int:
        # In the transaction that replaces them, so no offer numbered since is missed.
        old = conn.execute(select(OfferRow.offer_id, OfferRow.seq))
        views.keep_numbers({bytes(offer_id): int(seq) for offer_id, seq in old})
        return views.write(conn)

    await db.write(replace)
    return applied
