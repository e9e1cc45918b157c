"""The migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData

from exchange.models import ViewBase
from ledger.db import Database
from ledger.models import Base

REPO = Path(__file__).resolve().parents[2]


async def test_models_and_migrations_agree(db: Database) -> None:
    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        combined = MetaData()
        for metadata in (Base.metadata, ViewBase.metadata):
            for table in metadata.tables.values():
                table.to_metadata(combined)
        return list(compare_metadata(context, combined))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_migrating_twice_changes_nothing(db: Database) -> None:
    await db.migrate()  # the fixture migrated once already


async def test_processes_migrating_at_once_all_succeed(db_url: str) -> None:
    # A node and `kaifang migrate`, or several replicas, may start together.
    script = (
        "import asyncio, sys, time\n"
        "from ledger.db import Database\n"
        "async def main():\n"
        "    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together\n"
        "    db = Database(sys.argv[1])\n"
        "    await db.migrate()\n"
        "    await db.dispose()\n"
        "asyncio.run(main())\n"
    )
    start = time.time() + 4  # after every process has imported
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            db_url,
            str(start),
            cwd=REPO,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    errors = [(await p.communicate())[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
