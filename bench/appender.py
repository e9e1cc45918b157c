"""Build a large log in a process of its own, and report what that process cost.

Run by the ``proofs`` benchmark as::

    python -m bench.appender --database URL --key FILE --count N [--seed S]

It migrates the database, opens (or creates) the log named by the key, and
appends ``count`` generated entries through :meth:`Sequencer.append_batch`,
a slice of :data:`SLICE` entries at a time, so that the entries themselves
never all sit in memory. Its last line on stdout is a JSON object with the
elapsed time, the rate, the peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``)
after start-up and at the end (with /proc's ``VmHWM`` as a cross-check), and the rate of each slice
(to show whether appends slow down as the log grows).

Linux carries ``ru_maxrss`` across ``execve``, so a process started by the
benchmark runner would report the runner's own peak; the work therefore
runs in a child forked at start, whose count starts afresh. Start this in a
new session, so that both can be killed together.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import iter_entries
from ledger.db import Database
from ledger.keys import load_key_file
from ledger.store import BULK_CHUNK, LogStore, Sequencer

# Entries generated and handed to append_batch at once: one transaction's
# worth, so that what this harness holds adds little to the ledger's own RSS.
SLICE = BULK_CHUNK


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def vm_hwm_bytes() -> int | None:
    """The peak RSS of this process image as /proc says it (``VmHWM``), as a cross-check."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


async def build(database: str, key: Path, count: int, seed: int) -> dict[str, Any]:
    """Append ``count`` entries to the log of ``key`` in ``database``; return the facts."""
    signer = load_key_file(key)
    db = Database(database)
    try:
        await db.migrate()
        store = await LogStore.create(db, signer.name, signer.verifier_key())
        sequencer = Sequencer(store, signer)
        startup_rss = peak_rss_bytes()
        entries = iter_entries(count, seed)
        slice_rates: list[float] = []
        size = 0
        start = time.perf_counter()
        while batch := list(itertools.islice(entries, SLICE)):
            began = time.perf_counter()
            _, checkpoint = await sequencer.append_batch(batch)
            slice_rates.append(len(batch) / (time.perf_counter() - began))
            size = checkpoint.size
        seconds = time.perf_counter() - start
    finally:
        await db.dispose()
    return {
        "entries": count,
        "size": size,
        "seconds": seconds,
        "rate": count / seconds,
        "startup_rss_bytes": startup_rss,
        "peak_rss_bytes": peak_rss_bytes(),
        "vm_hwm_bytes": vm_hwm_bytes(),
        "slice": SLICE,
        "slice_rates": slice_rates,
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, build, print the facts as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.appender", description=__doc__)
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of the database")
    parser.add_argument("--key", required=True, type=Path, help="the log's signer key file")
    parser.add_argument("--count", required=True, type=int, help="entries to append")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated entries")
    args = parser.parse_args(argv)
    # Linux keeps ru_maxrss across execve: a process started by a large parent
    # (the benchmark runner) begins with that parent's peak. A forked child
    # starts its own count, so the appending runs in one.
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            facts = asyncio.run(build(args.database, args.key, args.count, args.seed))
            print(json.dumps(facts), flush=True)
            code = 0
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
