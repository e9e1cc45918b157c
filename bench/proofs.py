"""Benchmark 3, ``proofs``: a 1,000,000-entry log: building it, then proving inclusion.

1. The log is built on SQLite by :mod:`bench.appender` in a process of its
   own, which reports its peak RSS (target: < 200 MB) against its RSS once
   started up (imports, migration, an open log) as the baseline.
2. Inclusion proofs of random indices at the latest signed size, in-process:
   :data:`Sizes.proof_tasks` concurrent tasks calling
   :meth:`LogStore.inclusion_proof` for a few seconds (target: >= 5,000/s).
   Baseline: the same tasks running a bare point query,
   ``SELECT data FROM entries WHERE log_id = ? AND idx = ?`` (the primary
   key), each as one read of the same :class:`ledger.db.Database`.
3. The same over gRPC: a real node (:mod:`bench.node`, i.e.
   :func:`exchange.server.start_node`) in a process of its own on the same
   database, and as many client tasks on one channel calling
   ``LedgerService.GetInclusionProof`` (target: >= 2,000/s). Baseline: the
   standard health ``Check`` RPC on the same node and channel, the cheapest
   call it serves.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import Connection, text

from bench.common import (
    ORIGIN,
    REPO_ROOT,
    BenchError,
    Context,
    Figure,
    Outcome,
    ServerProcess,
    Target,
    Throughput,
    run_concurrently,
    server_process,
)
from kaifang.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ledger.db import Database, sqlite_url
from ledger.keys import create_key_file
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.store import LogStore

NAME = "proofs"
RSS_TARGET = Target("<", 200.0)
IN_PROCESS_TARGET = Target(">=", 5_000)
GRPC_TARGET = Target(">=", 2_000)
MB = 1_000_000
BUILD_TIMEOUT_S = 900.0

_point_query = text("SELECT data FROM entries WHERE log_id = :log_id AND idx = :idx")


async def build_log(ctx: Context, url: str, key: Path, count: int) -> dict[str, Any]:
    """Run :mod:`bench.appender` to append ``count`` entries; return what it reports."""
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bench.appender", "--database", url, "--key", str(key)],
        *["--count", str(count), "--seed", str(ctx.seed)],
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: it and its worker child
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), BUILD_TIMEOUT_S)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise BenchError(f"building the log took over {BUILD_TIMEOUT_S:.0f} s") from None
    if process.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-20:]
        raise BenchError("bench.appender failed:\n" + "\n".join(tail))
    facts: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return facts


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid``, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime and stime fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def node_process(url: str, key: Path, log_file: Path) -> AsyncIterator[ServerProcess]:
    """Start :mod:`bench.node` on the database; yield its port; stop it on exit."""
    args = ["--database", url, "--key", str(key), "--origin", ORIGIN]
    async with server_process("bench.node", args, log_file) as node:
        yield node


async def _timed(ctx: Context, operation: Callable[[random.Random], Awaitable[None]]) -> Throughput:
    """Run ``operation`` from the configured number of tasks for the configured time."""
    sizes = ctx.sizes
    return await run_concurrently(
        operation, workers=sizes.proof_tasks, seconds=sizes.proof_seconds, seed=ctx.seed
    )


async def check_one_proof(
    store: LogStore, index: int, size: int, hashes: list[bytes], root: bytes
) -> None:
    """Verify one served proof of ``index`` at ``size`` against the root it came with."""
    verify_inclusion(leaf_hash(await store.entry(index)), index, size, hashes, root)


async def in_process(ctx: Context, store: LogStore, size: int) -> tuple[Figure, Figure]:
    """Point queries, then inclusion proofs (at the latest size, then at a given size)."""
    sizes = ctx.sizes
    log_id = store.log_id

    def select_data(index: int, conn: Connection) -> bytes:
        data: bytes = conn.execute(_point_query, {"log_id": log_id, "idx": index}).scalar_one()
        return data

    async def point(rng: random.Random) -> None:
        if not await store.db.read(partial(select_data, rng.randrange(size))):
            raise BenchError("an entry read back empty")

    async def proof_latest(rng: random.Random) -> None:
        await store.inclusion_proof(rng.randrange(size))

    async def proof_at_size(rng: random.Random) -> None:
        await store.inclusion_proof(rng.randrange(size), size)

    proof, checkpoint = await store.inclusion_proof(size // 3)
    await check_one_proof(store, size // 3, checkpoint.size, proof, checkpoint.root_hash)
    bare = await _timed(ctx, point)
    latest = await _timed(ctx, proof_latest)
    at_size = await _timed(ctx, proof_at_size)
    ctx.log(
        NAME,
        f"in-process: point query {bare.rate:,.0f}/s, proofs {latest.rate:,.0f}/s "
        f"(latest), {at_size.rate:,.0f}/s (given size)",
    )
    figure = Figure(
        key="proofs.in_process",
        label=f"inclusion proofs, {size:,} log, in-process",
        value=latest.rate,
        unit="proofs/s",
        baseline=bare.rate,
        baseline_label="bare SELECT data by primary key, same Database and tasks",
        targets=(IN_PROCESS_TARGET,),
        detail={
            "tasks": sizes.proof_tasks,
            "proofs": latest.operations,
            "seconds": latest.seconds,
            "at_given_size_rate": at_size.rate,
            "point_queries": bare.operations,
        },
    )
    return figure, Figure(
        key="proofs.in_process_at_size",
        label=f"inclusion proofs, {size:,} log, in-process, tree_size given",
        value=at_size.rate,
        unit="proofs/s",
        baseline=bare.rate,
        baseline_label="bare SELECT data by primary key, same Database and tasks",
        detail={"proofs": at_size.operations, "seconds": at_size.seconds},
    )


async def over_grpc(
    ctx: Context, store: LogStore, size: int, node: ServerProcess, in_process_rate: float
) -> Figure:
    """Health checks, then GetInclusionProof calls, from concurrent tasks on one channel.

    Also reports the CPU time per call of the node and of this (client)
    process: on two cores, whether the server is CPU-bound is the question.
    """
    sizes = ctx.sizes
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        async def check(_: random.Random) -> None:
            await health.Check(health_pb2.HealthCheckRequest(service=""))

        async def proof(rng: random.Random) -> None:
            request = ledger_pb2.GetInclusionProofRequest(index=rng.randrange(size))
            await ledger.GetInclusionProof(request)

        index = size // 5
        answer = await ledger.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(index=index))
        root = (await store.checkpoint(answer.tree_size)).root_hash
        await check_one_proof(store, index, answer.tree_size, list(answer.hashes), root)
        health_cpu = process_cpu_seconds(node.pid)
        bare = await _timed(ctx, check)
        health_cpu = process_cpu_seconds(node.pid) - health_cpu
        server_cpu, client_cpu = process_cpu_seconds(node.pid), time.process_time()
        proofs = await _timed(ctx, proof)
        server_cpu = process_cpu_seconds(node.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
    ctx.log(NAME, f"gRPC: health Check {bare.rate:,.0f}/s, proofs {proofs.rate:,.0f}/s")
    return Figure(
        key="proofs.grpc",
        label=f"inclusion proofs, {size:,} log, over gRPC",
        value=proofs.rate,
        unit="proofs/s",
        baseline=bare.rate,
        baseline_label="grpc.health.v1 Check on the same node and channel",
        targets=(GRPC_TARGET,),
        detail={
            "client_tasks": sizes.proof_tasks,
            "proofs": proofs.operations,
            "seconds": proofs.seconds,
            "health_checks": bare.operations,
            "ratio_to_in_process": proofs.rate / in_process_rate,
            # Includes the untimed warm-up calls, a few per cent of the total.
            "server_cpu_us_per_call": 1e6 * server_cpu / proofs.operations,
            "client_cpu_us_per_call": 1e6 * client_cpu / proofs.operations,
            "server_cpu_us_per_health_check": 1e6 * health_cpu / bare.operations,
            "node": "bench.node subprocess (start_node), client in the benchmark process",
        },
    )


async def run(ctx: Context) -> Outcome:
    """Build the large log in a subprocess, then time proofs in-process and over gRPC."""
    outcome = Outcome()
    count = ctx.sizes.big_log
    with tempfile.TemporaryDirectory(prefix="kaifang-bench-proofs-") as tmp:
        url = sqlite_url(Path(tmp) / "big.db")
        key = Path(tmp) / "log.key"
        create_key_file(key, ORIGIN)
        ctx.log(NAME, f"building a {count:,}-entry log in a subprocess…")
        built = await build_log(ctx, url, key, count)
        ctx.log(
            NAME,
            f"built in {built['seconds']:.1f} s ({built['rate']:,.0f}/s), "
            f"peak RSS {built['peak_rss_bytes'] / MB:.1f} MB",
        )
        rates = built.pop("slice_rates")
        outcome.figures.append(
            Figure(
                key="proofs.append_rss",
                label=f"appender peak RSS, {count:,} entries",
                value=built["peak_rss_bytes"] / MB,
                unit="MB",
                baseline=built["startup_rss_bytes"] / MB,
                baseline_label="the same process's RSS once started (imports, migration)",
                targets=(RSS_TARGET,),
                detail=built,
            )
        )
        outcome.figures.append(
            Figure(
                key="proofs.append_rate",
                label=f"append_batch, {count:,} entries (subprocess)",
                value=built["rate"],
                unit="entries/s",
                detail={
                    "first_slice_rate": rates[0],
                    "last_slice_rate": rates[-1],
                    "slowest_slice_rate": min(rates),
                    "slices": len(rates),
                },
            )
        )
        db = Database(url)
        try:
            store = await LogStore.open(db, ORIGIN)
            size = (await store.latest_checkpoint()).size
            if size != count:
                raise BenchError(f"the built log has {size} entries, not {count}")
            figure, at_size = await in_process(ctx, store, size)
            outcome.figures += [figure, at_size]
            async with node_process(url, key, Path(tmp) / "node.log") as node:
                outcome.figures.append(await over_grpc(ctx, store, size, node, figure.value))
        finally:
            await db.dispose()
    return outcome
