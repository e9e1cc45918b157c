"""Fixtures shared by every test: databases on both engines, keys, a clean clock.

Every storage test runs twice, on SQLite and on PostgreSQL. The PostgreSQL
leg starts one throwaway server per test session (see ``tests/pg.py``) and a
fresh database per test. Without PostgreSQL binaries the leg is skipped with
the reason, except in CI (``CI`` set), where it must run and fails instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from ledger.db import Database, sqlite_url
from ledger.note import Signer
from tests.pg import PostgresServer, PostgresUnavailableError, create_database, postgres_server

ORIGIN = "test.kaifang.example/log"

# Property tests check correctness, not speed: on a shared 2-core machine a
# per-example deadline only produces flaky failures.
settings.register_profile("kaifang", deadline=None)
settings.load_profile("kaifang")
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailableError as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {e}")
        pytest.skip(f"PostgreSQL leg skipped: {e}")


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, on each engine in turn."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "ledger.db")
    server: PostgresServer = request.getfixturevalue("pg_server")
    return await create_database(server, f"t{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A database built by running the real migrations."""
    database = Database(db_url)
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def signer() -> Signer:
    """A fresh log key for the test origin."""
    return Signer.generate(ORIGIN)
