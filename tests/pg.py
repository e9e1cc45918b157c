"""A throwaway PostgreSQL server for tests and benchmarks.

Started from the binaries on PATH (``initdb``, ``pg_ctl``) in a temporary
directory, listening only on a unix socket there. PostgreSQL refuses to run
as root, so under root (as in CI) the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailableError(RuntimeError):
    """The machine has no PostgreSQL server binaries."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where its socket is and who may connect."""

    socket_dir: Path
    user: str

    def url(self, database: str) -> str:
        """Return the SQLAlchemy asyncpg URL of ``database`` on this server."""
        return f"postgresql+asyncpg://{self.user}@/{database}?host={self.socket_dir}"

    def dsn(self, database: str) -> str:
        """Return the libpq-style DSN for asyncpg itself."""
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}"


def _runner() -> tuple[list[str], str]:
    """Return the command prefix that runs the server's binaries, and the server's OS user."""
    if os.geteuid() != 0:
        return [], pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise PostgresUnavailableError("running as root and there is no postgres user") from e
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailableError("running as root and runuser is missing")
    return [runuser, "-u", "postgres", "--"], "postgres"


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """Start a throwaway server; stop it and delete its files on exit.

    ``durable=False`` turns off fsync, which tests do not need (they never
    crash the server itself) and which makes them several times faster.
    """
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise PostgresUnavailableError("initdb and pg_ctl are not on PATH")
    prefix, os_user = _runner()
    base = Path(tempfile.mkdtemp(prefix="kaifang-pg-"))
    data = base / "data"
    if prefix:
        shutil.chown(base, "postgres", "postgres")
    options = f"-k {base} -c listen_addresses='' -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", os_user, "-E", "UTF8",
             "--no-sync"],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-l", str(base / "log"), "-o", options, "-w",
             "start"],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        try:
            yield PostgresServer(base, os_user)
        finally:
            subprocess.run(
                [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                check=False, capture_output=True, env=env,
            )  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def create_database(server: PostgresServer, name: str) -> str:
    """Create an empty database on the server and return its SQLAlchemy URL."""
    import asyncpg  # only the PostgreSQL leg needs the driver

    conn = await asyncpg.connect(server.dsn("postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.url(name)
