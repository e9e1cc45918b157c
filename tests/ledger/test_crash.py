"""Crash safety: SIGKILL a process while it appends, at random moments, again and again.

After every kill the log must pass fsck, and every receipt the dead process
handed out must still hold: the entry at its index, and a stored checkpoint at
the size it was given, with the same root, consistent with the latest one.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from pathlib import Path

from ledger.db import Database
from ledger.keys import create_key_file
from ledger.merkle import verify_consistency
from ledger.store import LogStore
from tests.conftest import ORIGIN

ROUNDS = 6
REPO = Path(__file__).resolve().parents[2]


async def _run_until_killed(
    url: str, key: Path, seed: int, repeat_file: Path, rng: random.Random
) -> list[dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.ledger.appender", url, ORIGIN, str(key), str(seed),
        str(repeat_file),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    acked: list[dict[str, object]] = []

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            if raw.endswith(b"\n"):  # a line cut by the kill was never acknowledged
                acked.append(json.loads(raw))

    reader = asyncio.create_task(read())
    # Wait for the first acknowledgement (start-up costs vary), then kill at
    # a random moment while appends are in flight.
    for _ in range(600):
        if acked or proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(rng.uniform(0.0, 0.6))
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    await reader
    stderr = await proc.stderr.read() if proc.stderr else b""
    assert proc.returncode == -signal.SIGKILL, stderr.decode()
    return acked


async def test_killed_appender_loses_no_acknowledged_entry(
    db: Database, tmp_path: Path, db_url: str
) -> None:
    rng = random.Random(os.environ.get("KAIFANG_CRASH_SEED", "crash"))
    key = tmp_path / "log.key"
    signer = create_key_file(key, ORIGIN)
    store = await LogStore.create(db, ORIGIN, signer.verifier_key())
    repeat_file = tmp_path / "repeats"
    repeat_file.write_text("")
    all_acked: dict[bytes, int] = {}
    sizes: dict[int, bytes] = {}
    for round_ in range(ROUNDS):
        acked = await _run_until_killed(db_url, key, round_, repeat_file, rng)
        assert acked, f"round {round_}: the appender acknowledged nothing before the kill"
        fresh = await LogStore.open(db, ORIGIN)  # no state carried over in memory
        await fresh.fsck()
        for line in acked:
            data, index = bytes.fromhex(str(line["data"])), int(str(line["index"]))
            assert all_acked.setdefault(data, index) == index, "dedup gave a second index"
            assert await fresh.entry(index) == data
            size, root = int(str(line["size"])), bytes.fromhex(str(line["root"]))
            assert size > index
            assert (await fresh.checkpoint(size)).root_hash == root
            sizes[size] = root
        repeat_file.write_text("\n".join(d.hex() for d in list(all_acked)[:200]))
    latest = await store.latest_checkpoint()
    for size, root in sizes.items():
        proof, _ = await store.consistency_proof(size, latest.size)
        verify_consistency(size, latest.size, proof, root, latest.root_hash)
    assert await store.fsck() == latest.size
