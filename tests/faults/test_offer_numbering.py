"""Two transactions that change offers and number new ones do not deadlock on PostgreSQL.

Found by the chaos run with a member on PostgreSQL, since fixed: a node
catching up several logs at once applies them in concurrent transactions,
and sequences its own in another. A transaction that has already changed an
offer (an acceptance counts on it, a withdrawal closes it) holds the offers
table in ROW EXCLUSIVE mode; numbering a new offer used to ask for the table
in EXCLUSIVE mode, which waits for every other transaction that changed an
offer. Two such transactions waited for each other; PostgreSQL aborted one
("deadlock detected"), and that batch of the log was not applied.

The two transactions here are exactly that: each counts an acceptance on an
offer, then numbers a new offer, and commits as soon as it has its number.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.models import OfferRow
from exchange.viewstore import SqlViewStore
from ledger.db import Database
from tests.pg import PostgresServer, create_database

_counter = itertools.count()
# PostgreSQL looks for deadlocks after a waiter has waited deadlock_timeout (1 s).
WITHIN_S = 30.0


def _count_acceptance(offer_id: bytes) -> Callable[[Connection], None]:
    return lambda conn: SqlViewStore(conn).increment(OfferRow, offer_id, "acceptances")


async def _number_and_commit(conn: AsyncConnection) -> Exception | None:
    """Number a new offer and commit; the error (the transaction rolled back) if that fails."""
    try:
        await conn.run_sync(lambda c: SqlViewStore(c).next_seq())
    except DBAPIError as e:
        await conn.rollback()
        return e
    await conn.commit()
    return None


async def test_two_transactions_numbering_offers_do_not_deadlock(pg_server: PostgresServer) -> None:
    url = await create_database(pg_server, f"numbering{os.getpid()}_{next(_counter)}")
    db = Database(url)
    await db.migrate()
    try:
        async with db.engine.connect() as one, db.engine.connect() as two:
            # Both transactions have changed an offer before either numbers one.
            await one.run_sync(_count_acceptance(b"\1" * 32))
            await two.run_sync(_count_acceptance(b"\2" * 32))
            first = asyncio.create_task(_number_and_commit(one))
            await asyncio.sleep(0.2)
            second = asyncio.create_task(_number_and_commit(two))
            errors = await asyncio.wait_for(asyncio.gather(first, second), WITHIN_S)
        assert errors == [None, None]
    finally:
        await db.dispose()
