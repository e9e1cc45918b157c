"""Alembic environment: runs the migrations on an async engine.

Called two ways: by :func:`ledger.db.migrate` with an open connection in
``config.attributes["connection"]`` (the node and the tests), or by the
``alembic`` command with ``sqlalchemy.url`` set (developers).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from exchange.models import ViewBase
from ledger.db import create_engine
from ledger.models import Base

config = context.config
# The ledger's tables and the exchange's views share one database and one history.
target_metadata = [Base.metadata, ViewBase.metadata]


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on a new engine for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection")
    asyncio.run(_run_with_own_engine(url))


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
