"""Run a real node (:func:`exchange.server.start_node`) for a benchmark, in its own process.

Run by the ``proofs`` and ``admission`` benchmarks as::

    python -m bench.node --database URL --key FILE --origin ORIGIN [--register-key FILE]

It listens on 127.0.0.1 on a free port, prints ``{"port": N}`` on stdout once
serving, and stops when its standard input closes (so it cannot outlive the
benchmark that started it, even one that died) or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path

from exchange.config import NodeConfig
from exchange.server import start_node

LISTEN = "127.0.0.1:0"


async def serve(config: NodeConfig, max_seconds: float) -> None:
    """Serve until stdin reaches end of file, or ``max_seconds`` have passed."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with start_node(config) as node:
        print(json.dumps({"port": node.port}), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin.read(), max_seconds)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.node", description=__doc__)
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of the database")
    parser.add_argument("--key", required=True, type=Path, help="the log's signer key file")
    parser.add_argument("--origin", required=True, help="the log's origin")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--register-key", type=Path, help="the register authority's key file")
    parser.add_argument("--operator-key", type=Path, help="the operator's key file")
    args = parser.parse_args(argv)
    config = NodeConfig(
        origin=args.origin, listen=LISTEN, database=args.database, log_key=args.key,
        register_key=args.register_key, operator_key=args.operator_key,
    )  # fmt: skip
    asyncio.run(serve(config, args.max_seconds))


if __name__ == "__main__":
    main()
