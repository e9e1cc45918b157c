"""A process that appends to a log until it is killed; used by the crash tests.

Usage: ``python -m tests.ledger.appender URL ORIGIN KEY_FILE SEED [REPEAT_FILE]``.

Runs concurrent appenders through one :class:`ledger.store.Sequencer` and
prints one JSON line per *acknowledged* append (index, entry, checkpoint size
and root), flushed at once, so that the test knows exactly which receipts were
handed out before it killed the process. Entries listed in ``REPEAT_FILE``
(hex, one per line) are appended again along the way: dedup must give them
their first index back, even across restarts.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

from ledger.db import Database
from ledger.keys import load_key_file
from ledger.store import LogStore, Sequencer

WRITERS = 8


async def main(url: str, origin: str, key_file: str, seed: int, repeats: list[bytes]) -> None:
    db = Database(url)
    signer = load_key_file(Path(key_file))
    store = await LogStore.open(db, origin)
    sequencer = Sequencer(store, signer)
    rng = random.Random(seed)

    async def writer(k: int) -> None:
        n = 0
        while True:
            if repeats and rng.random() < 0.2:
                data = rng.choice(repeats)
            else:
                data = f"seed {seed} writer {k} entry {n} ".encode() * rng.randint(1, 20)
                n += 1
            appended = await sequencer.append(data)
            line = {
                "index": appended.index,
                "data": data.hex(),
                "size": appended.checkpoint.size,
                "root": appended.checkpoint.root_hash.hex(),
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

    await asyncio.gather(*(writer(k) for k in range(WRITERS)))


if __name__ == "__main__":
    url, origin, key_file, seed = sys.argv[1:5]
    repeat_lines = Path(sys.argv[5]).read_text().split() if len(sys.argv) > 5 else []
    asyncio.run(main(url, origin, key_file, int(seed), [bytes.fromhex(h) for h in repeat_lines]))
