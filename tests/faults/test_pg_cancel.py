"""A read cancelled while its transaction begins does not swallow later writes, on PostgreSQL.

Found by the chaos run with a member on PostgreSQL (a session "idle in
transaction" for minutes, its last statement ``ROLLBACK TO
__asyncpg_savepoint_123c__``, holding the log's row lock while the node's
other writers waited for it; before that, a node whose peers held entries
and a checkpoint it no longer had, and re-sequenced: fork evidence).

A unit of work whose first statement runs through :class:`ledger.db.Prepared`
(the DBAPI cursor, as ``LogStore.size`` does) starts the transaction from
inside the driver. When the caller was cancelled while that ``BEGIN`` was
on its way (a gRPC call whose client went away, a stream the federation
replaces), asyncpg kept the transaction as the connection's own while
SQLAlchemy never saw it start, so nothing rolled it back: the connection
went back to the pool inside an open transaction. Every later transaction
on it became a savepoint of that one, and its commit only released the
savepoint: nothing it wrote was visible to anyone else, and all of it was
lost when the connection closed, though the log had answered as if it were
durable. Since fixed: a unit of work runs to its end even if its caller is
cancelled.

The cancellation is timed by wrapping the driver's ``execute``: the caller's
task is cancelled once the ``BEGIN`` is sent. Everything else is the
ledger's real code on a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import asyncpg
import pytest

from ledger.db import Database
from ledger.note import Signer
from ledger.store import LogStore
from tests.conftest import ORIGIN
from tests.pg import PostgresServer, create_database

_counter = itertools.count()


@contextlib.contextmanager
def cancelled_while_beginning(victim: asyncio.Task[Any]) -> Iterator[None]:
    """Cancel ``victim`` as soon as the next ``BEGIN`` has been sent to the server."""
    real = asyncpg.connection.Connection.execute
    armed = True

    async def execute(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal armed
        if armed and query.startswith("BEGIN"):
            armed = False
            # Delivered at the victim's next wait: the query is sent by then.
            victim.cancel()
        return await real(self, query, *args, **kwargs)

    with mock.patch.object(asyncpg.connection.Connection, "execute", execute):
        yield


async def test_an_entry_sequenced_after_a_cancelled_read_is_durable(
    pg_server: PostgresServer, signer: Signer
) -> None:
    url = await create_database(pg_server, f"cancel{os.getpid()}_{next(_counter)}")
    db = Database(url)
    await db.migrate()
    other = Database(url)  # another process's connection to the same database
    try:
        store = await LogStore.create(db, ORIGIN, signer.verifier_key())
        # The caller of a read is cancelled (its client went away) while the read begins.
        reading = asyncio.create_task(store.size())
        with cancelled_while_beginning(reading), pytest.raises(asyncio.CancelledError):
            await reading
        _, checkpoint = await store.sequence([b"an entry the log says it holds"], signer)
        assert checkpoint.size == 1
        seen = await (await LogStore.open(other, ORIGIN)).size()
        assert seen == 1, "the sequenced entry is not committed"
    finally:
        await other.dispose()
        await db.dispose()
