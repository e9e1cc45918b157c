"""The stored log: sequencing and integration of appends, and every read.

:class:`LogStore` is one log in one database. Its write path,
:meth:`LogStore.sequence`, runs a single transaction that

1. takes the log's write lock (``BEGIN IMMEDIATE`` on SQLite, a row lock on
   PostgreSQL), so that concurrent writers, in this process or others, queue;
2. dedups: an entry whose leaf hash the log already holds gets its first
   index back, and so does a repeat inside the batch;
3. assigns the next indices and extends the tree, storing with each entry the
   hashes of the complete subtrees it completes (:func:`ledger.merkle.node_home`);
4. signs one checkpoint at the new size and stores it.

Entries, subtree hashes and their covering checkpoint thus commit together:
a crash at any point leaves either none or all of them, so every checkpoint
ever signed stays consistent with the stored tree, and an append is never
acknowledged before its checkpoint is durable. The checkpoint is signed in
the same transaction rather than after it because rows are immutable (the
hashes cannot be filled in later) and one commit per batch is the cost that
dominates.

:class:`Sequencer` batches concurrent appends of one process into such
transactions, so that many appends share one commit and one signature.

**Keys.** A log accepts checkpoints signed by any of its keys (the
``log_keys`` table): the key it was created with, and each key added since
by :meth:`LogStore.accept_key`. A checkpoint may be signed by several of
them at once, which is how a log rotates its key: the next key is accepted,
then signs beside the current one, then alone. The write path signs only
with accepted keys (:class:`~ledger.errors.KeyMismatchError` otherwise), so
that a key file lost and recreated, or the wrong file named, never signs for
the log; and :meth:`LogStore.fsck` checks every stored checkpoint against
them all. Keys are never removed: the checkpoints they signed stay verifiable.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Row, Select, bindparam, func, insert, select

from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.db import Database, Prepared
from ledger.errors import (
    EntryNotFoundError,
    EntryTooLargeError,
    FsckError,
    IndexOutOfRangeError,
    KeyMismatchError,
    LedgerError,
    ProofError,
    ReplicaGapError,
    SizeNotSignedError,
    UnknownLogError,
)
from ledger.merkle import (
    HASH_SIZE,
    CompactRange,
    NodeId,
    ProofPlan,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    node_home,
    subtrees,
    verify_consistency,
    verify_inclusion,
)
from ledger.models import Checkpoint as CheckpointRow
from ledger.models import Entry, Log, LogKey
from ledger.note import Signer, Verifier
from ledger.receipt import Receipt

# Entry bundles of C2SP tlog-tiles prefix each entry with a 16-bit length.
MAX_ENTRY_SIZE = 0xFFFF
# Entries written per transaction by bulk appends; bounds memory and lock time.
BULK_CHUNK = 20000
# Leaf hashes looked up per dedup query; well under SQLite's bound-parameter limit.
_LOOKUP_CHUNK = 2000

Clock = Callable[[], datetime]
K = TypeVar("K")
T = TypeVar("T")
V = TypeVar("V")


def check_entry_sizes(datas: Sequence[bytes]) -> None:
    """Raise :class:`EntryTooLargeError` naming the first entry over :data:`MAX_ENTRY_SIZE`."""
    for i, data in enumerate(datas):
        if len(data) > MAX_ENTRY_SIZE:
            raise EntryTooLargeError(
                f"entry {i} is {len(data)} bytes; the limit is {MAX_ENTRY_SIZE}"
            )


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


# What signs a checkpoint: the log's key, or its keys (current first) while it rotates.
LogSigners = Signer | Sequence[Signer]


def _signers(signer: LogSigners) -> tuple[Signer, ...]:
    return (signer,) if isinstance(signer, Signer) else tuple(signer)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint the log signed: its size, root and the verbatim signed note."""

    size: int
    root_hash: bytes
    note: str


@dataclass(frozen=True)
class ReplicaBatch:
    """Consecutive entries of another log, and the origin's checkpoint that proves them."""

    start: int
    entries: Sequence[bytes]
    # Signed by the origin (verified by whoever builds the batch), at a size
    # at least start + len(entries).
    checkpoint: Checkpoint
    # The checkpoint's note, as stored (the origin's signature only).
    note: str
    # The consistency proof from start + len(entries) to the checkpoint's size.
    proof: Sequence[bytes]


@dataclass(frozen=True)
class Appended:
    """The outcome of one append: the entry's index and a checkpoint that covers it."""

    index: int
    checkpoint: SignedCheckpoint


# An entries row as the hot path writes it: log id, index, leaf hash,
# subtree hashes, data.
_EntryRow = tuple[int, int, bytes, bytes, bytes]
# The hot path hands rows to the driver as tuples: SQLAlchemy's per-row
# parameter processing costs more than SQLite's own insert at bulk rates.
_INSERT_ENTRIES = "INSERT INTO entries (log_id, idx, leaf_hash, nodes, data) VALUES ({})"
_LOOKUP_HASHES = "SELECT leaf_hash, idx FROM entries WHERE log_id = ? AND leaf_hash IN ({})"
# PostgreSQL plans an IN list of thousands of byte strings as a scan of the
# whole log; a join against one array parameter uses the unique index.
_LOOKUP_HASHES_PG = (
    "SELECT e.leaf_hash, e.idx FROM unnest($2::bytea[]) AS h(leaf_hash) "
    "JOIN entries e ON e.log_id = $1 AND e.leaf_hash = h.leaf_hash"
)
_ROWS_BY_IDX = "SELECT idx, leaf_hash, nodes FROM entries WHERE log_id = {} AND idx IN ({})"
_ROW_RANGE = (
    "SELECT idx, leaf_hash, nodes FROM entries WHERE log_id = {} AND idx >= {} AND idx < {}"
)
_ROW_BLOCK_BITS = 8
# Rows whose subtree hashes a process keeps in memory (about 200 bytes each).
ROW_CACHE_SIZE = 1 << 17
# Signed checkpoints a process keeps in memory (about 500 bytes each).
CHECKPOINT_CACHE_SIZE = 4096
_checkpoint_at = select(CheckpointRow.size, CheckpointRow.root_hash, CheckpointRow.note).where(
    CheckpointRow.log_id == bindparam("log_id"), CheckpointRow.size == bindparam("size")
)
# The statements every sequencing transaction runs, prepared (see ledger.db.Prepared).
_MAX_INDEX = Prepared(select(func.max(Entry.idx)).where(Entry.log_id == bindparam("log_id")))
_INSERT_CHECKPOINT = Prepared(insert(CheckpointRow))
_latest_checkpoint = (
    select(CheckpointRow.size, CheckpointRow.root_hash, CheckpointRow.note)
    .where(CheckpointRow.log_id == bindparam("log_id"))
    .order_by(CheckpointRow.size.desc())
    .limit(1)
)
_LATEST = Prepared(_latest_checkpoint)


class LruCache(Generic[K, V]):
    """A small thread-safe least-recently-used map, for values that never change."""

    def __init__(self, capacity: int) -> None:
        """Keep at most ``capacity`` items."""
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K | None) -> V | None:
        """Return the value for ``key`` (None for a missing or None key)."""
        if key is None:
            return None
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Store ``value``, evicting the least recently used item beyond capacity."""
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


class RowCache:
    """A bounded, least-recently-used map from entry index to that row's subtree hashes.

    Values are the leaf hash followed by the hashes of the nodes the entry
    completed. Rows are immutable, so nothing is ever invalidated; a lock
    makes the cache safe for readers on the event loop and writers in threads.
    """

    def __init__(self, capacity: int) -> None:
        """Keep at most ``capacity`` rows."""
        self.capacity = capacity
        self._rows: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, indices: Iterable[int]) -> tuple[dict[int, bytes], list[int]]:
        """Return the cached rows among ``indices`` and the sorted indices not cached."""
        found: dict[int, bytes] = {}
        missing: list[int] = []
        with self._lock:
            for i in indices:
                row = self._rows.get(i)
                if row is None:
                    missing.append(i)
                else:
                    self._rows.move_to_end(i)
                    found[i] = row
        missing.sort()
        return found, missing

    def nodes(self, nodes: Iterable[NodeId]) -> dict[NodeId, bytes] | None:
        """Return the hashes of ``nodes`` if the rows holding all of them are cached, else None.

        The hot path of a proof served from memory, hence one lock and no helpers.
        """
        rows = self._rows
        found: dict[NodeId, bytes] = {}
        with self._lock:
            for node in nodes:
                level, index = node
                home = ((index + 1) << level) - 1  # node_home, inlined
                row = rows.get(home)
                if row is None:
                    return None
                rows.move_to_end(home)
                found[node] = row[level * HASH_SIZE : (level + 1) * HASH_SIZE]
        return found

    def put_many(self, rows: dict[int, bytes]) -> None:
        """Cache ``rows``, evicting the least recently used beyond capacity."""
        with self._lock:
            self._rows.update(rows)
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)


def _nodes_from_rows(nodes: Iterable[NodeId], rows: dict[int, bytes]) -> dict[NodeId, bytes]:
    """Pick each node's hash out of the row (leaf hash, then levels 1, 2, …) that holds it."""
    found: dict[NodeId, bytes] = {}
    for node in nodes:
        level = node[0]
        found[node] = rows[node_home(node)][level * HASH_SIZE : (level + 1) * HASH_SIZE]
    return found


class LogStore:
    """One log, identified by its origin, in a database migrated to the ledger schema.

    Every method is a unit of work run by :class:`ledger.db.Database`; the
    private ``_…`` helpers take the unit's connection.
    """

    def __init__(
        self, db: Database, log_id: int, origin: str, vkey: str, vkeys: Sequence[str] = ()
    ) -> None:
        """Use :meth:`open` or :meth:`create`; this binds an already-known log row.

        ``vkey`` is the key the log was created with, ``vkeys`` every key it
        accepts (``vkey`` is always among them).
        """
        self.db = db
        self.log_id = log_id
        self.origin = origin
        self.vkey = vkey
        # Every key the log accepts, in the order they were added.
        self.vkeys: tuple[str, ...] = tuple(dict.fromkeys([vkey, *vkeys]))
        # The right border of the tree as this process last wrote it; reloaded
        # whenever another writer has appended since.
        self._border: CompactRange | None = None
        # Signed checkpoints and stored rows never change, so any may be cached.
        self._checkpoints: LruCache[int, SignedCheckpoint] = LruCache(CHECKPOINT_CACHE_SIZE)
        self._rows = RowCache(ROW_CACHE_SIZE)

    @classmethod
    async def open(cls, db: Database, origin: str | None = None) -> LogStore:
        """Open the log named ``origin``, or the only log if ``origin`` is None.

        Raises :class:`UnknownLogError` if there is no such log (or, without an
        origin, not exactly one log).
        """
        query = select(Log.id, Log.origin, Log.vkey)
        if origin is not None:
            query = query.where(Log.origin == origin)
        rows = await db.read(lambda conn: conn.execute(query.limit(2)).all())
        if len(rows) != 1:
            if origin is not None:
                # The origin comes from a request: quote only its start.
                raise UnknownLogError(f"the database holds no log with origin {origin[:200]!r}")
            raise UnknownLogError(f"the database holds {len(rows) or 'no'} logs; name the origin")
        log_id, found_origin, vkey = rows[0]
        return cls(db, log_id, found_origin, vkey, await db.read(_keys_of(log_id)))

    @classmethod
    async def create(
        cls, db: Database, origin: str, vkey: str, *, clock: Clock = utc_now
    ) -> LogStore:
        """Return the log named ``origin``, creating it with the key ``vkey`` if it does not exist.

        An existing log is returned as it is: ``vkey`` is not added to the
        keys it accepts (:meth:`accept_key` does that), so signing for it
        with a key it never accepted still fails.
        """
        now = clock()
        values = {"origin": origin, "vkey": vkey, "created_at": now}
        statement = db.insert_ignore(Log, values, ["origin"])

        def run(conn: Connection) -> None:
            conn.execute(statement)
            # The key the log was created with is its first accepted key
            # (a no-op for an existing log, whose row already says so).
            log_id, first = conn.execute(select(Log.id, Log.vkey).where(Log.origin == origin)).one()
            key = {"log_id": log_id, "vkey": first, "added_at": now}
            conn.execute(db.insert_ignore(LogKey, key, ["log_id", "vkey"]))

        await db.write(run)
        return await cls.open(db, origin)

    # -- keys ---------------------------------------------------------------

    def verifiers(self) -> tuple[Verifier, ...]:
        """The verifiers of every key the log accepts, in the order they were added."""
        return tuple(Verifier.from_vkey(v) for v in self.vkeys)

    async def reload_keys(self) -> tuple[str, ...]:
        """Read the accepted keys again (another process may have added one); return them."""
        self.vkeys = tuple(dict.fromkeys([self.vkey, *await self.db.read(_keys_of(self.log_id))]))
        return self.vkeys

    async def accept_key(self, vkey: str, *, clock: Clock = utc_now) -> bool:
        """Accept checkpoints signed by ``vkey`` from now on; return whether it is new.

        The key's name must be the log's origin (:class:`KeyMismatchError`
        otherwise; :class:`~ledger.errors.KeyFormatError` for a malformed
        key). Who may add a key is the caller's decision: a node adds its
        next key only once its current key is known to be accepted
        (:meth:`check_signers`), a replica adds the keys the network file
        lists for its origin. A key once accepted stays accepted.
        """
        verifier = Verifier.from_vkey(vkey)
        if verifier.name != self.origin:
            raise KeyMismatchError(
                f"the key {vkey} is named {verifier.name!r}, not after log {self.origin!r}"
            )
        vkey = verifier.verifier_key()  # one spelling per key
        if vkey in await self.reload_keys():
            return False
        values = {"log_id": self.log_id, "vkey": vkey, "added_at": clock()}
        statement = self.db.insert_ignore(LogKey, values, ["log_id", "vkey"])
        await self.db.write(lambda conn: conn.execute(statement))
        await self.reload_keys()
        return True

    async def check_signers(self, signer: LogSigners) -> None:
        """Raise :class:`KeyMismatchError` unless the log accepts every key of ``signer``."""
        signers = _signers(signer)
        if not signers:
            raise KeyMismatchError(f"no key to sign checkpoints of log {self.origin} with")
        if any(s.verifier_key() not in self.vkeys for s in signers):
            # Another process may have accepted a key since this store was opened.
            await self.reload_keys()
        for s in signers:
            if s.verifier_key() not in self.vkeys:
                # A key file lost and recreated must not start signing for the log.
                raise KeyMismatchError(
                    f"the signing key {s.verifier_key()} is not the key of log {self.origin} "
                    f"(it accepts {', '.join(self.vkeys)})"
                )

    # -- write side -------------------------------------------------------

    async def sequence(
        self, datas: Sequence[bytes], signer: LogSigners, *, clock: Clock = utc_now
    ) -> tuple[list[int], SignedCheckpoint]:
        """Durably append ``datas`` in one transaction and sign a checkpoint covering them.

        ``signer`` is the log's key, or its keys (each signs the checkpoint).
        Returns each entry's index (the first index for an entry already in the
        log) and the checkpoint. Raises :class:`EntryTooLargeError` before
        writing anything if an entry exceeds :data:`MAX_ENTRY_SIZE`.
        """
        check_entry_sizes(datas)
        return await self.sequence_with(
            lambda _conn, appender: appender.extend(datas), signer, clock=clock
        )

    async def sequence_with(
        self,
        work: Callable[[Connection, Appender], T],
        signer: LogSigners,
        *,
        clock: Clock = utc_now,
    ) -> tuple[T, SignedCheckpoint]:
        """Run ``work`` in the log's write transaction; sign one checkpoint over what it appended.

        ``work`` appends through the :class:`Appender` it is given and may write
        other tables on the same connection: everything commits together with
        the entries and their checkpoint, or nothing does (if ``work`` raises).
        This is how a caller keeps state derived from the log in step with it.
        Raises :class:`KeyMismatchError` before writing anything if the log
        does not accept every key of ``signer``.
        """
        signers = _signers(signer)
        await self.check_signers(signers)

        def run(conn: Connection) -> tuple[T, SignedCheckpoint, CompactRange, list[_EntryRow]]:
            appender = Appender(self, conn)
            result = work(conn, appender)
            checkpoint = appender.finish(signers, clock)
            return result, checkpoint, appender.border, appender.written

        result, checkpoint, border, written = await self.db.write(run)
        self._border = border
        # What was just written is what the next proofs (the receipts of this
        # batch) need: keep it, as any read of it would have.
        self._checkpoints.put(checkpoint.size, checkpoint)
        self._rows.put_many({row[1]: row[2] + row[3] for row in written})
        return result, checkpoint

    async def replicate(
        self,
        batches: Sequence[ReplicaBatch],
        work: Callable[[Connection, list[tuple[int, bytes]]], T],
    ) -> T:
        """Append consecutive ``batches`` to this replica if the origin's checkpoints prove them.

        Each batch's checkpoint (whose signature the caller has verified) is
        at a size N at least the batch's end, and its proof is the consistency
        proof from that end to N. A batch is accepted only if the tree held so
        far, extended by its entries, has the root the origin signed (directly,
        or through the proof): an altered, dropped or reordered entry fails,
        and nothing at all is written. A checkpoint at the size its batch
        ends is stored with it. ``work`` runs in the same transaction with
        the new (index, entry) pairs, so state derived from them commits with
        them or not at all; several batches share that one transaction.

        Raises :class:`ReplicaGapError` if the replica does not end where the
        first batch starts, :class:`~ledger.errors.ProofError` if a proof
        fails or the batches are not consecutive.
        """
        for batch in batches:
            check_entry_sizes(batch.entries)

        def run(
            conn: Connection,
        ) -> tuple[T, CompactRange, list[_EntryRow], list[SignedCheckpoint]]:
            self._lock(conn)
            size = self._size(conn)
            if batches and size != batches[0].start:
                raise ReplicaGapError(
                    f"replica of {self.origin} holds {size} entries, not {batches[0].start}",
                    size,
                )
            border = self._load_border(conn, size)
            latest = self._latest(conn)
            newest = -1 if latest is None else latest.size
            rows: list[_EntryRow] = []
            stored: list[SignedCheckpoint] = []
            for batch in batches:
                if batch.start != border.size:
                    raise ProofError(f"a batch at {batch.start} does not follow {border.size}")
                for index, data in enumerate(batch.entries, batch.start):
                    h = leaf_hash(data)
                    completed = border.append(h)
                    rows.append((self.log_id, index, h, b"".join(completed[1:]), data))
                checkpoint = batch.checkpoint
                verify_consistency(
                    border.size, checkpoint.size, batch.proof, border.root(), checkpoint.root_hash
                )
                # Stored when at the batch's end and new (an empty batch brings
                # the checkpoint of the size already held).
                if checkpoint.size == border.size and checkpoint.size > newest:
                    stored.append(
                        SignedCheckpoint(checkpoint.size, checkpoint.root_hash, batch.note)
                    )
                    newest = checkpoint.size
            if rows:
                conn.exec_driver_sql(_INSERT_ENTRIES.format(self.db.placeholders(5)), rows)
            now = utc_now()
            for signed in stored:
                values = {
                    "log_id": self.log_id, "size": signed.size, "root_hash": signed.root_hash,
                    "note": signed.note, "signed_at": now,
                }  # fmt: skip
                _INSERT_CHECKPOINT.run(conn, values)
            result = work(conn, [(row[1], row[4]) for row in rows])
            return result, border, rows, stored

        # A replica's entries can always be fetched again: a power failure
        # that loses the last batches (whole, with the cursor) costs a re-fetch.
        result, border, rows, stored = await self.db.write(run, durable=False)
        self._border = border
        for signed in stored:
            self._checkpoints.put(signed.size, signed)
        self._rows.put_many({row[1]: row[2] + row[3] for row in rows})
        return result

    async def size(self) -> int:
        """The number of entries stored (for a replica, possibly beyond its latest checkpoint)."""
        return await self.db.read(self._size)

    def _lock(self, conn: Connection) -> None:
        # SQLite's BEGIN IMMEDIATE already holds the database's write lock.
        if not self.db.is_sqlite:
            conn.execute(select(Log.id).where(Log.id == self.log_id).with_for_update())

    def _size(self, conn: Connection) -> int:
        (last,) = _MAX_INDEX.first(conn, {"log_id": self.log_id})
        return 0 if last is None else int(last) + 1

    def _load_border(self, conn: Connection, size: int) -> CompactRange:
        """Return a copy of the tree's right border at ``size``, from cache or storage."""
        cached = self._border
        if cached is not None and cached.size == size:
            return CompactRange(size, cached.hashes())
        nodes = subtrees(0, size)
        found = self._fetch_nodes(conn, nodes)
        return CompactRange(size, [found[n] for n in nodes])

    def _lookup(self, conn: Connection, hashes: Sequence[bytes]) -> dict[bytes, int]:
        """Return the index of every given leaf hash that the log already holds."""
        unique = list(dict.fromkeys(hashes))
        # On the DBAPI cursor: sequencing runs this once per batch or, for the
        # exchange, once per statement, where SQLAlchemy's result setup would
        # cost more than the indexed lookup itself.
        cursor = conn.connection.cursor()
        try:
            if not self.db.is_sqlite:
                cursor.execute(_LOOKUP_HASHES_PG, (self.log_id, unique))
                return {bytes(h): int(i) for h, i in cursor.fetchall()}
            known: dict[bytes, int] = {}
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                cursor.execute(
                    _LOOKUP_HASHES.format(", ".join("?" * len(chunk))), (self.log_id, *chunk)
                )
                known.update((bytes(h), int(i)) for h, i in cursor.fetchall())
            return known
        finally:
            cursor.close()

    def _checkpoint_for(
        self, conn: Connection, border: CompactRange, signer: LogSigners, clock: Clock
    ) -> SignedCheckpoint:
        """Return the checkpoint at the border's size, signing and storing it if new."""
        row = _LATEST.first(conn, {"log_id": self.log_id})
        if row is not None and int(row[0]) == border.size:
            return SignedCheckpoint(int(row[0]), bytes(row[1]), row[2])
        root = border.root()
        note = sign_checkpoint(Checkpoint(self.origin, border.size, root), *_signers(signer))
        values = {"log_id": self.log_id, "size": border.size, "root_hash": root, "note": note,
                  "signed_at": clock()}  # fmt: skip
        _INSERT_CHECKPOINT.run(conn, values)
        return SignedCheckpoint(border.size, root, note)

    # -- read side --------------------------------------------------------

    def _latest(self, conn: Connection) -> SignedCheckpoint | None:
        row = conn.execute(_latest_checkpoint, {"log_id": self.log_id}).first()
        return None if row is None else SignedCheckpoint(int(row[0]), bytes(row[1]), row[2])

    def _signed(self, conn: Connection, size: int) -> SignedCheckpoint:
        cached = self._checkpoints.get(size)
        if cached is not None:
            return cached
        row = conn.execute(_checkpoint_at, {"log_id": self.log_id, "size": size}).first()
        if row is None:
            raise SizeNotSignedError(f"log {self.origin} never signed a checkpoint at size {size}")
        signed = SignedCheckpoint(int(row[0]), bytes(row[1]), row[2])
        self._checkpoints.put(size, signed)
        return signed

    def _resolve(self, conn: Connection, size: int | None) -> SignedCheckpoint:
        """Return the checkpoint at ``size``, or the latest; :class:`SizeNotSignedError` if none."""
        if size is not None:
            return self._signed(conn, size)
        latest = self._latest(conn)
        if latest is None:
            raise SizeNotSignedError(f"log {self.origin} has not signed a checkpoint yet")
        return latest

    async def latest_checkpoint(self) -> SignedCheckpoint:
        """Return the newest signed checkpoint.

        Raises :class:`SizeNotSignedError` if the log has signed none yet.
        """
        return await self.db.read(lambda conn: self._resolve(conn, None))

    async def checkpoint(self, size: int | None = None) -> SignedCheckpoint:
        """Return the checkpoint signed at ``size`` (the latest if None).

        Raises :class:`SizeNotSignedError` if the log never signed that size.
        """
        cached = self._checkpoints.get(size) if size is not None else None
        if cached is not None:
            return cached
        return await self.db.read(lambda conn: self._resolve(conn, size))

    async def signed_sizes(self, low: int, high: int) -> list[int]:
        """Return, in ascending order, every size in ``[low, high]`` the log signed."""
        query = (
            select(CheckpointRow.size)
            .where(
                CheckpointRow.log_id == self.log_id,
                CheckpointRow.size >= low,
                CheckpointRow.size <= high,
            )
            .order_by(CheckpointRow.size)
        )
        return await self.db.scan(lambda conn: [int(s) for s in conn.execute(query).scalars()])

    def _fetch_nodes(
        self, conn: Connection, nodes: Iterable[NodeId], *, tree_size: int | None = None
    ) -> dict[NodeId, bytes]:
        """Read the hashes of complete subtrees from the rows of the entries that completed them.

        When the whole tree of ``tree_size`` fits in the row cache, a missing
        row brings in its neighbours (256 at a time) too: after a few hundred
        random proofs every proof of such a log is answered from memory.
        """
        wanted = list(nodes)
        rows, missing = self._rows.get_many({node_home(n) for n in wanted})
        if missing:
            if tree_size is not None and tree_size <= self._rows.capacity:
                read = self._read_row_ranges(conn, missing)
            else:
                markers = self.db.placeholders(len(missing) + 1).split(", ", 1)
                read = {
                    int(i): bytes(lh) + bytes(ns)
                    for i, lh, ns in conn.exec_driver_sql(
                        _ROWS_BY_IDX.format(*markers), (self.log_id, *missing)
                    )
                }
            self._rows.put_many(read)
            rows.update(read)
        return _nodes_from_rows(wanted, rows)

    def _read_row_ranges(self, conn: Connection, missing: Sequence[int]) -> dict[int, bytes]:
        """Read the subtree hashes of every row in the 256-row blocks holding ``missing``."""
        read: dict[int, bytes] = {}
        sql = _ROW_RANGE.format(*self.db.placeholders(3).split(", "))
        for block in sorted({i >> _ROW_BLOCK_BITS for i in missing}):
            start = block << _ROW_BLOCK_BITS
            params = (self.log_id, start, start + (1 << _ROW_BLOCK_BITS))
            read.update(
                (int(i), bytes(lh) + bytes(ns)) for i, lh, ns in conn.exec_driver_sql(sql, params)
            )
        return read

    def _cached_nodes(self, nodes: Iterable[NodeId]) -> dict[NodeId, bytes] | None:
        """Return the hashes of ``nodes`` if every row holding them is in memory, else None."""
        return self._rows.nodes(nodes)

    async def node_hashes(self, nodes: Iterable[NodeId]) -> dict[NodeId, bytes]:
        """Return the hashes of complete subtrees (which must lie within the stored tree)."""
        wanted = list(nodes)
        return await self.db.scan(lambda conn: self._fetch_nodes(conn, wanted))

    async def inclusion_proof(
        self, index: int, size: int | None = None
    ) -> tuple[list[bytes], SignedCheckpoint]:
        """Return the inclusion proof of entry ``index`` at a signed size, and that checkpoint.

        Raises :class:`SizeNotSignedError` for a size never signed and
        :class:`IndexOutOfRangeError` for an index not below the size.
        """

        def plan_for(checkpoint: SignedCheckpoint) -> ProofPlan:
            if not 0 <= index < checkpoint.size:
                raise IndexOutOfRangeError(
                    f"index {index} is not below tree size {checkpoint.size}"
                )
            return inclusion_plan(index, checkpoint.size)

        known = self._checkpoints.get(size) if size is not None else None
        if known is not None:
            # Everything a proof needs is immutable: answer from memory if possible.
            plan = plan_for(known)
            hashes = self._cached_nodes(plan.nodes())
            if hashes is not None:
                return plan.assemble(hashes), known

        def work(conn: Connection) -> tuple[list[bytes], SignedCheckpoint]:
            checkpoint = self._resolve(conn, size)
            plan = plan_for(checkpoint)
            hashes = self._fetch_nodes(conn, plan.nodes(), tree_size=checkpoint.size)
            return plan.assemble(hashes), checkpoint

        return await self.db.read(work)

    async def index_of(self, leaf_hash_: bytes) -> int:
        """Return the index of the entry with this leaf hash.

        Raises :class:`EntryNotFoundError` if the log holds no such entry.
        """
        query = select(Entry.idx).where(Entry.log_id == self.log_id, Entry.leaf_hash == leaf_hash_)
        index = await self.db.read(lambda conn: conn.execute(query).scalar_one_or_none())
        if index is None:
            raise EntryNotFoundError(
                f"log {self.origin} has no entry with leaf hash {leaf_hash_.hex()}"
            )
        return int(index)

    async def consistency_proof(
        self, old_size: int, new_size: int | None = None, *, old_signed: bool = True
    ) -> tuple[list[bytes], SignedCheckpoint]:
        """Return the consistency proof between two signed sizes, and the newer checkpoint.

        ``old_size`` 0 needs no checkpoint, nor does any ``old_size`` with
        ``old_signed`` False (a replica proving a batch that ends between
        signed sizes). Raises :class:`SizeNotSignedError` or
        :class:`IndexOutOfRangeError` (old size above the new one).
        """

        def plan_for(new: SignedCheckpoint) -> ProofPlan:
            if old_size > new.size:
                raise IndexOutOfRangeError(f"old size {old_size} exceeds new size {new.size}")
            return consistency_plan(old_size, new.size)

        known = self._checkpoints.get(new_size) if new_size is not None else None
        old_known = old_size == 0 or not old_signed or self._checkpoints.get(old_size) is not None
        if known is not None and old_known:
            plan = plan_for(known)
            hashes = self._cached_nodes(plan.nodes())
            if hashes is not None:
                return plan.assemble(hashes), known

        def work(conn: Connection) -> tuple[list[bytes], SignedCheckpoint]:
            new = self._resolve(conn, new_size)
            plan = plan_for(new)
            if old_size != 0 and old_signed:
                self._signed(conn, old_size)
            hashes = self._fetch_nodes(conn, plan.nodes(), tree_size=new.size)
            return plan.assemble(hashes), new

        return await self.db.read(work)

    async def entries(
        self, start: int, end: int, *, batch: int = 1000
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        """Yield the entries ``[start, end)`` in order, ``batch`` at a time.

        The caller checks the range against a signed size; this reads what is stored.
        """
        position = start
        while position < end:
            stop = min(end, position + batch)
            query = (
                select(Entry.idx, Entry.data)
                .where(Entry.log_id == self.log_id, Entry.idx >= position, Entry.idx < stop)
                .order_by(Entry.idx)
            )
            rows = await self.db.scan(functools.partial(_entry_rows, query))
            if len(rows) != stop - position:
                raise IndexOutOfRangeError(f"entries [{position}, {stop}) are not all stored")
            yield rows
            position = stop

    async def entry(self, index: int) -> bytes:
        """Return one entry's bytes; :class:`IndexOutOfRangeError` if it is not stored."""
        query = select(Entry.data).where(Entry.log_id == self.log_id, Entry.idx == index)
        data = await self.db.read(lambda conn: conn.execute(query).scalar_one_or_none())
        if data is None:
            raise IndexOutOfRangeError(f"log {self.origin} has no entry {index}")
        return bytes(data)

    async def receipt(
        self, index: int, size: int | None = None, *, entry: bytes | None = None
    ) -> Receipt:
        """Return the C2SP tlog-proof@v1 receipt of entry ``index`` at a signed size.

        ``entry`` is the entry's bytes if the caller has them (it just appended
        them): the proof is checked against them, so wrong bytes cannot make a
        receipt that verifies.
        """
        proof, checkpoint = await self.inclusion_proof(index, size)
        data = await self.entry(index) if entry is None else entry
        if entry is not None:
            verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root_hash)
        return Receipt(index, tuple(proof), checkpoint.note, data)

    # -- checking ---------------------------------------------------------

    async def fsck(
        self, verifier: Verifier | Sequence[Verifier] | None = None, *, batch: int = 5000
    ) -> int:
        """Recompute every hash from the entries and check every stored checkpoint.

        Checks that indices run from 0 without gaps, each stored leaf hash and
        subtree hash equals its recomputation, and each checkpoint's root equals
        the recomputed root at its size and its note is signed by a log key
        (``verifier``, or any of the keys the log accepts) and by no key of
        them with a bad signature. Returns the number of entries checked;
        raises :class:`FsckError` naming the first mismatch.
        """
        if verifier is None:
            await self.reload_keys()
            verifiers: tuple[Verifier, ...] = self.verifiers()
        else:
            verifiers = (verifier,) if isinstance(verifier, Verifier) else tuple(verifier)
        query = (
            select(CheckpointRow.size, CheckpointRow.root_hash, CheckpointRow.note)
            .where(CheckpointRow.log_id == self.log_id)
            .order_by(CheckpointRow.size)
        )

        def overview(conn: Connection) -> tuple[list[tuple[int, bytes, str]], int]:
            checkpoints = [(int(s), bytes(r), n) for s, r, n in conn.execute(query)]
            return checkpoints, self._size(conn)

        checkpoints, size = await self.db.scan(overview)
        pending = iter(checkpoints)
        next_cp = next(pending, None)
        border = CompactRange()

        def check_checkpoints() -> None:
            nonlocal next_cp
            while next_cp is not None and next_cp[0] == border.size:
                _check_checkpoint(self.origin, verifiers, border, *next_cp)
                next_cp = next(pending, None)

        check_checkpoints()
        position = 0
        while position < size:
            stop = min(size, position + batch)
            query_rows = (
                select(Entry.idx, Entry.leaf_hash, Entry.nodes, Entry.data)
                .where(Entry.log_id == self.log_id, Entry.idx >= position, Entry.idx < stop)
                .order_by(Entry.idx)
            )
            rows = await self.db.scan(functools.partial(_all_rows, query_rows))
            for idx, stored_leaf, stored_nodes, data in rows:
                if idx != border.size:
                    raise FsckError(f"entry {border.size} is missing (next stored index is {idx})")
                computed = leaf_hash(bytes(data))
                if bytes(stored_leaf) != computed:
                    raise FsckError(
                        f"entry {idx}: stored leaf hash {bytes(stored_leaf).hex()} "
                        f"!= computed {computed.hex()}"
                    )
                completed = border.append(computed)
                if bytes(stored_nodes) != b"".join(completed[1:]):
                    raise FsckError(f"entry {idx}: stored subtree hashes differ from recomputed")
                check_checkpoints()
            if len(rows) != stop - position:
                raise FsckError(f"entry {border.size} is missing")
            position = stop
        if next_cp is not None:
            raise FsckError(f"checkpoint at size {next_cp[0]} is beyond the {size} stored entries")
        return size


def _entry_rows(query: Select[tuple[int, bytes]], conn: Connection) -> list[tuple[int, bytes]]:
    return [(int(i), bytes(d)) for i, d in conn.execute(query)]


def _all_rows(query: Select[Any], conn: Connection) -> Sequence[Row[Any]]:
    return conn.execute(query).all()


def _keys_of(log_id: int) -> Callable[[Connection], list[str]]:
    """A unit of work reading the keys ``log_id`` accepts, in the order they were added."""
    query = (
        select(LogKey.vkey).where(LogKey.log_id == log_id).order_by(LogKey.added_at, LogKey.vkey)
    )
    return lambda conn: list(conn.execute(query).scalars())


def _check_checkpoint(
    origin: str,
    verifiers: Sequence[Verifier],
    border: CompactRange,
    size: int,
    root: bytes,
    note: str,
) -> None:
    try:
        signed = open_checkpoint(note, verifiers, origin=origin)
    except LedgerError as e:
        raise FsckError(f"checkpoint at size {size}: {e}") from e
    computed = border.root()
    if root != computed:
        raise FsckError(
            f"checkpoint at size {size}: stored root {root.hex()} != computed {computed.hex()}"
        )
    if (signed.origin, signed.size, signed.root_hash) != (origin, size, computed):
        raise FsckError(
            f"checkpoint at size {size}: its note says origin {signed.origin!r}, "
            f"size {signed.size}, root {signed.root_hash.hex()}"
        )


class Appender:
    """Appends to one log inside a write transaction of :meth:`LogStore.sequence_with`.

    Creating it takes the log's write lock and loads the tree's right border;
    :meth:`extend` assigns indices (dedup by leaf hash, against the log and
    within the transaction) and extends the border in memory; :meth:`finish`
    writes the new rows and signs the checkpoint at the new size.
    """

    def __init__(self, store: LogStore, conn: Connection) -> None:
        """Lock ``store``'s log on ``conn`` and start from its current size."""
        self._store = store
        self._conn = conn
        store._lock(conn)
        self.border = store._load_border(conn, store._size(conn))
        self._rows: list[_EntryRow] = []
        self._known: dict[bytes, int] = {}
        # The rows :meth:`finish` wrote.
        self.written: list[_EntryRow] = []

    @property
    def size(self) -> int:
        """The log's size including what was appended so far: the next entry's index."""
        return self.border.size

    def extend(self, datas: Sequence[bytes], *, fresh: bool = False) -> list[int]:
        """Append ``datas``; return each one's index (its first index if already held).

        ``fresh`` says the caller knows the entries are new (the exchange's
        entries carry a statement it deduplicated and the instant it was
        sequenced): the lookup of each leaf hash is skipped, and the unique
        index on leaf hashes still refuses a duplicate, failing the transaction.
        """
        check_entry_sizes(datas)
        hashes = [leaf_hash(d) for d in datas]
        new = [] if fresh else [h for h in hashes if h not in self._known]
        if new:
            self._known.update(self._store._lookup(self._conn, new))
        indices: list[int] = []
        log_id = self._store.log_id
        for data, h in zip(datas, hashes, strict=True):
            index = self._known.get(h)
            if index is None:
                index = self.border.size
                completed = self.border.append(h)
                self._rows.append((log_id, index, h, b"".join(completed[1:]), data))
                self._known[h] = index
            indices.append(index)
        return indices

    def finish(self, signer: LogSigners, clock: Clock) -> SignedCheckpoint:
        """Write the appended rows and return the checkpoint at the new size, signed if new.

        The caller has checked that the log accepts every key of ``signer``.
        """
        store = self._store
        if self._rows:
            sql = _INSERT_ENTRIES.format(store.db.placeholders(5))
            self._conn.exec_driver_sql(sql, self._rows)
            self.written.extend(self._rows)
            self._rows = []
        return store._checkpoint_for(self._conn, self.border, signer, clock)


class Sequencer:
    """Batches one process's concurrent appends to a log into shared transactions.

    Appends wait in a queue; one worker task takes everything queued (up to
    ``max_batch``), sequences it in one transaction with one checkpoint, and
    answers each waiting append. While it writes, new appends queue for the
    next batch, so batch size grows with load and latency stays one commit.
    """

    def __init__(
        self,
        store: LogStore,
        signer: LogSigners,
        *,
        max_batch: int = 4096,
        clock: Clock = utc_now,
    ) -> None:
        """Serve appends to ``store``, signing checkpoints with ``signer`` (each of its keys)."""
        self.store = store
        self.signer = signer
        self.max_batch = max_batch
        self.clock = clock
        self._queue: list[tuple[bytes, asyncio.Future[Appended]]] = []
        self._worker: asyncio.Task[None] | None = None
        # One transaction at a time from this process: others would only wait
        # for the database lock and reload the tree border.
        self._write = asyncio.Lock()

    async def append(self, data: bytes) -> Appended:
        """Append one entry; return its index once a signed checkpoint covers it."""
        if len(data) > MAX_ENTRY_SIZE:
            raise EntryTooLargeError(f"entry is {len(data)} bytes; the limit is {MAX_ENTRY_SIZE}")
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._queue.append((data, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def sequence_with(
        self, work: Callable[[Connection, Appender], T]
    ) -> tuple[T, SignedCheckpoint]:
        """Run :meth:`LogStore.sequence_with` between this sequencer's own batches."""
        async with self._write:
            return await self.store.sequence_with(work, self.signer, clock=self.clock)

    async def append_batch(self, datas: Sequence[bytes]) -> tuple[list[int], SignedCheckpoint]:
        """Append many entries, :data:`BULK_CHUNK` per transaction.

        Returns every entry's index and the last checkpoint signed.
        """
        check_entry_sizes(datas)  # all of them, before the first chunk commits
        indices: list[int] = []
        checkpoint: SignedCheckpoint | None = None
        for start in range(0, len(datas), BULK_CHUNK):
            async with self._write:
                chunk_indices, checkpoint = await self.store.sequence(
                    datas[start : start + BULK_CHUNK], self.signer, clock=self.clock
                )
            indices.extend(chunk_indices)
        if checkpoint is None:
            checkpoint = await self.store.latest_checkpoint()
        return indices, checkpoint

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            try:
                async with self._write:
                    indices, checkpoint = await self.store.sequence(
                        [data for data, _ in batch], self.signer, clock=self.clock
                    )
            except Exception as e:
                _fail(batch, e)
                continue
            except BaseException as e:
                # Cancelled mid-batch: nobody may be left waiting forever. The
                # entries may or may not have committed; dedup makes a retry safe.
                _fail(batch + self._queue, e)
                self._queue.clear()
                raise
            for (_, future), index in zip(batch, indices, strict=True):
                if not future.done():
                    future.set_result(Appended(index, checkpoint))

    async def close(self) -> None:
        """Finish the appends queued so far and stop.

        Cancelling ``close`` does not cancel the batch being written.
        """
        if self._worker is not None:
            await asyncio.shield(self._worker)


def _fail(batch: Sequence[tuple[bytes, asyncio.Future[Appended]]], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(error)
