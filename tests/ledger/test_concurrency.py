"""Strong dedup across writer processes racing on one database, on both engines."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ledger.db import Database

REPO = Path(__file__).resolve().parents[2]


async def test_concurrent_processes_appending_the_same_entries_agree_on_indices(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    # Three writer processes race to append the same entries, several
    # transactions each: strong dedup
    # means each entry is stored once and every process reports its one index.
    key = tmp_path / "log.key"
    kaifang = [sys.executable, "-m", "clients.cli"]
    init = await asyncio.create_subprocess_exec(
        *kaifang, "ledger", "init", "--db", db_url, "--origin", "race.example/log",
        "--key-file", str(key), cwd=REPO, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await init.wait() == 0
    entries = tmp_path / "entries"
    entries.write_bytes(b"\n".join(f"entry {i % 6000}".encode() for i in range(12000)) + b"\n")
    procs = [
        await asyncio.create_subprocess_exec(
            *kaifang,
            "ledger",
            "append",
            "--db",
            db_url,
            "--origin",
            "race.example/log",
            "--key-file",
            str(key),
            str(entries),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e.decode() for _, e in outputs]
    indices = [[int(i) for i in out.split()] for out, _ in outputs]
    assert indices[0] == indices[1] == indices[2]
    assert sorted(set(indices[0])) == list(range(6000))
