"""The ledger's database (SQLite or PostgreSQL): engines, units of work, migrations.

The one place that knows engine quirks:

- Store code is written once, as plain functions of a SQLAlchemy
  :class:`~sqlalchemy.Connection` (a *unit of work*), and :class:`Database`
  runs them: on PostgreSQL through the asyncpg engine (``run_sync``), on
  SQLite in a small thread pool on the standard-library driver. SQLite does
  its work in microseconds, and aiosqlite would cost a round trip between
  threads for every statement, cursor, begin and rollback: running a whole
  unit of work in one thread makes a proof one hop instead of eight.
- SQLite runs in WAL mode with ``synchronous=FULL`` (an acknowledged append
  survives power loss, not only a crashed process) and foreign keys on.
  Transactions are begun by us: a writer takes the database's write lock up
  front with ``BEGIN IMMEDIATE`` instead of failing to upgrade a read lock
  half-way, and a reader begins no transaction at all (each statement reads a
  consistent snapshot, and the ledger's rows never change once written).
- PostgreSQL writers serialise on a ``SELECT … FOR UPDATE`` of the log's row
  (see :mod:`ledger.store`).

URLs name the async driver (``sqlite+aiosqlite://``, ``postgresql+asyncpg://``)
because migrations run on the async engine.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import operator
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, DateTime, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

import migrations

log = logging.getLogger(__name__)

# The execution option that marks a connection's next transaction as a writer.
_WRITE = "kaifang_write"
SQLITE_BUSY_TIMEOUT_S = 60.0
# Threads running SQLite units of work: readers run in parallel (SQLite
# releases the GIL while it works); writers queue on the write lock.
SQLITE_THREADS = 4
# Page cache per SQLite connection, in KiB.
SQLITE_CACHE_KIB = 32 * 1024

T = TypeVar("T")
# Parameters of a prepared statement, by bind parameter name.
Params = Mapping[str, Any]


def sqlite_url(path: Path | str) -> str:
    """Return the SQLAlchemy URL of an SQLite database file."""
    return f"sqlite+aiosqlite:///{path}"


def _ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        # The embedded default lives in var/, which a fresh clone lacks.
        Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine, *, begin_readers: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own implicit BEGIN would defeat BEGIN IMMEDIATE; we begin ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # The dedup index takes random inserts; a page cache that holds more
        # of it means fewer pages read and rewritten per commit.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif begin_readers:
            conn.exec_driver_sql("BEGIN")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create an async engine for ``url`` with the settings the ledger relies on."""
    _ensure_sqlite_dir(url)
    if make_url(url).get_backend_name() == "sqlite":
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        engine = create_async_engine(url, connect_args=connect_args, **kwargs)
        # Migrations need real transactions, so readers begin one here too.
        _configure_sqlite(engine.sync_engine, begin_readers=True)
        return engine
    return create_async_engine(url, **kwargs)


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Open a transaction that will write; on SQLite it holds the write lock from the start."""
    async with engine.connect() as conn:
        await conn.execution_options(**{_WRITE: True})
        async with conn.begin():
            yield conn


def alembic_config(url: str | None = None) -> Config:
    """Return an alembic configuration pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


# Any constant: the advisory lock that serialises migrations on PostgreSQL.
_MIGRATION_LOCK = 0x6B616966  # "kaif"


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database schema up to ``revision`` by running the alembic migrations.

    Safe when several processes start at once: they take turns (the write
    lock on SQLite, an advisory lock on PostgreSQL), and the later ones find
    nothing left to do.
    """

    def _upgrade(sync_conn: Connection) -> None:
        if sync_conn.dialect.name == "postgresql":
            sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with write_transaction(engine) as conn:
        await conn.run_sync(_upgrade)


class Database:
    """A ledger database: runs units of work, migrates, and is disposed of at the end.

    A unit of work is a function of a :class:`~sqlalchemy.Connection`; it must
    not block on anything but the database.
    """

    def __init__(self, url: str) -> None:
        """Connect lazily to the database at ``url`` (a SQLAlchemy URL, async driver)."""
        self.url = url
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        self._sync: Engine | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._writer: Engine | None = None
        self._write_thread: ThreadPoolExecutor | None = None
        # Units of work whose callers were cancelled, left to finish (PostgreSQL).
        self._orphans: set[asyncio.Task[Any]] = set()
        if self.dialect == "sqlite":
            parsed = make_url(url).set(drivername="sqlite")
            self._sync = create_sync_engine(
                parsed,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
                pool_size=SQLITE_THREADS,
            )
            _configure_sqlite(self._sync, begin_readers=False)
            self._threads = ThreadPoolExecutor(SQLITE_THREADS, thread_name_prefix="kaifang-db")
            # Every write of this process on one connection and one thread:
            # writes queue on SQLite's lock anyway, and the page cache is per
            # connection, so one writer keeps the pages writes touch (index
            # leaves, the tree's border) warm instead of four cold caches.
            self._writer = create_sync_engine(
                parsed,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
                pool_size=1,
                max_overflow=0,
            )
            _configure_sqlite(self._writer, begin_readers=False)
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="kaifang-db-writer")

    def placeholders(self, count: int) -> str:
        """Return ``count`` positional parameter markers in the driver's own style."""
        if self.is_sqlite:
            return ", ".join("?" * count)
        return ", ".join(f"${i}" for i in range(1, count + 1))

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is SQLite."""
        return self.dialect == "sqlite"

    def insert_ignore(
        self, table: Any, values: Mapping[str, object], keys: Sequence[str]
    ) -> Executable:
        """An INSERT of ``values`` into ``table`` that does nothing if a row with the same
        ``keys`` exists (an idempotent write: retried, replayed or raced)."""
        dialect = sqlite if self.is_sqlite else postgresql
        statement: Executable = (
            dialect.insert(table)
            .values(dict(values))
            .on_conflict_do_nothing(index_elements=list(keys))
        )
        return statement

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work``, a point read (a few indexed rows), on a connection that only reads.

        On SQLite the read runs right here, on the event loop's thread: it takes
        tens of microseconds, less than handing it to a thread and back, and a
        reader in WAL mode never waits for a writer.
        """
        if self._sync is None:
            return await self._to_the_end(self._pg_read(work))
        with self._sync.connect() as conn:
            return work(conn)

    async def _pg_read(self, work: Callable[[Connection], T]) -> T:
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    async def _to_the_end(self, unit: Coroutine[Any, Any, T]) -> T:
        """Run a unit of work on PostgreSQL to its end, even if its caller is cancelled.

        A unit cancelled in the middle (a gRPC call whose client went away,
        a stream replaced) can leave asyncpg inside a transaction that
        SQLAlchemy never saw begin: the connection goes back to the pool in
        it, every later transaction on it is only a savepoint, and their
        commits are lost with the connection. So the caller's cancellation
        stops the caller, not the unit: it finishes (commits or rolls back)
        on its own, and its connection comes back clean.
        """
        task = asyncio.ensure_future(unit)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                self._orphans.add(task)
                task.add_done_callback(self._orphan_done)
            raise

    def _orphan_done(self, task: asyncio.Task[Any]) -> None:
        self._orphans.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("a unit of work whose caller was cancelled failed: %s", task.exception())

    async def scan(self, work: Callable[[Connection], T]) -> T:
        """Run ``work``, a read of many rows, without holding up the event loop."""
        if self._sync is None:
            return await self.read(work)
        sync = self._sync

        def run() -> T:
            with sync.connect() as conn:
                return work(conn)

        return await self._in_thread(run)

    async def write(self, work: Callable[[Connection], T], *, durable: bool = True) -> T:
        """Run ``work`` in one write transaction, committed if it returns, rolled back if it raises.

        On SQLite the transaction holds the database's write lock from its start.
        ``durable`` False lets the commit return before the transaction is on
        disk (SQLite ``synchronous=NORMAL`` in WAL mode, PostgreSQL
        ``synchronous_commit=off``): a power failure may then lose it, whole,
        never in part. Only for what can be fetched again, such as entries
        replicated from a peer.
        """
        if self._sync is None:
            return await self._to_the_end(self._pg_write(work, durable))
        writer = self._writer
        assert writer is not None

        def run() -> T:
            with writer.connect() as conn:
                raw = conn.connection.dbapi_connection
                assert raw is not None
                if not durable:
                    # Outside the transaction: SQLite applies it to the next commit.
                    raw.execute("PRAGMA synchronous=NORMAL")
                try:
                    conn.execution_options(**{_WRITE: True})
                    with conn.begin():
                        return work(conn)
                finally:
                    if not durable:
                        raw.execute("PRAGMA synchronous=FULL")

        return await asyncio.get_running_loop().run_in_executor(self._write_thread, run)

    async def _pg_write(self, work: Callable[[Connection], T], durable: bool) -> T:
        async with write_transaction(self.engine) as conn:
            # A checkpoint, once served, must survive a server crash
            # whatever the server's own setting.
            setting = "on" if durable else "off"
            await conn.exec_driver_sql(f"SET LOCAL synchronous_commit = {setting}")
            return await conn.run_sync(work)

    async def _in_thread(self, run: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, run)

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision``."""
        await migrate(self.engine, revision)

    async def dispose(self) -> None:
        """Close every connection and stop the worker threads."""
        if self._orphans:
            await asyncio.wait(list(self._orphans))
        await self.engine.dispose()
        if self._sync is not None:
            self._sync.dispose()
        if self._writer is not None:
            self._writer.dispose()
        if self._threads is not None:
            self._threads.shutdown(wait=True)
        if self._write_thread is not None:
            self._write_thread.shutdown(wait=True)


_REQUIRED = object()  # marks a parameter the caller must give


@functools.lru_cache(maxsize=4096)
def _converted(processor: Callable[[Any], Any], value: Any) -> Any:
    # Rows written together share few instants (a batch's sequencing time):
    # each is converted once.
    return processor(value)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    fixed: tuple[Any, ...]
    get: Callable[[Params], tuple[Any, ...]]  # every parameter, by itemgetter
    converting: tuple[tuple[int, Any], ...]  # (position, processor) of date-times


class Prepared:
    """A Core statement compiled once per dialect into driver SQL with positional parameters.

    Executing a SQLAlchemy statement costs tens of microseconds of cache-key
    and result work, several times SQLite's own for a point read; the hot
    paths (sequencing, admission) run many. The statement runs on the DBAPI
    cursor of the connection, inside the transaction SQLAlchemy began on it;
    parameters go to the driver as a tuple, and only date-times are
    converted (by the dialect's own processor), since SQLite keeps them as
    text.
    """

    _compiled: ClassVar[dict[tuple[str, int], _Compiled]] = {}

    def __init__(self, statement: Any) -> None:
        """Prepare ``statement`` (its parameters are named bind parameters)."""
        self.statement = statement

    def _for(self, conn: Connection) -> _Compiled:
        dialect = conn.dialect
        key = (dialect.name, id(self))
        found = self._compiled.get(key)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            names = tuple(compiled.positiontup or ())
            binds = [compiled.binds[n] for n in names]
            processors = tuple(
                b.type.dialect_impl(dialect).bind_processor(dialect)
                if isinstance(b.type, DateTime)
                else None
                for b in binds
            )
            # Values fixed in the statement itself (a LIMIT, a literal).
            fixed = tuple(_REQUIRED if b.required else b.value for b in binds)
            get = operator.itemgetter(*names) if names else (lambda _: ())
            getter = get if len(names) != 1 else (lambda params: (get(params),))
            converting = tuple((i, p) for i, p in enumerate(processors) if p is not None)
            found = self._compiled[key] = _Compiled(str(compiled), names, fixed, getter, converting)
        return found

    @staticmethod
    def _values(compiled: _Compiled, params: Params) -> tuple[Any, ...]:
        values: Sequence[Any]
        try:
            values = compiled.get(params)  # every value given: the common case
        except KeyError:  # a fixed value left out: the long way
            values = []
            for name, fixed in zip(compiled.names, compiled.fixed, strict=True):
                value = params.get(name, fixed)
                if value is _REQUIRED:
                    raise KeyError(f"no value for the parameter {name!r}") from None
                values.append(value)
        if not compiled.converting:
            return tuple(values)
        converted = list(values)
        for i, processor in compiled.converting:
            if converted[i] is not None:
                converted[i] = _converted(processor, converted[i])
        return tuple(converted)

    def _run(self, conn: Connection, params: Params) -> Any:
        """Execute with ``params``; return the DBAPI cursor (the caller closes it)."""
        compiled = self._for(conn)
        cursor = conn.connection.cursor()
        cursor.execute(compiled.sql, self._values(compiled, params))
        return cursor

    def run(self, conn: Connection, params: Params) -> None:
        """Execute a statement that returns no rows."""
        self._run(conn, params).close()

    def run_many(self, conn: Connection, rows: Iterable[Params], *, chunk: int = 5000) -> int:
        """Execute a statement that returns no rows once per row of parameters; count them.

        The rows are handed to the driver ``chunk`` at a time, so an iterator
        of millions never becomes one list.
        """
        compiled = self._for(conn)
        values = (self._values(compiled, row) for row in rows)
        done = 0
        cursor = conn.connection.cursor()
        try:
            while batch := list(itertools.islice(values, chunk)):
                cursor.executemany(compiled.sql, batch)
                done += len(batch)
        finally:
            cursor.close()
        return done

    def first(self, conn: Connection, params: Params) -> Any:
        """The first row of the result, or None."""
        cursor = self._run(conn, params)
        try:
            return cursor.fetchone()
        finally:
            cursor.close()
