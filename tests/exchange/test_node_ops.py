"""Running a node: configuration errors, metrics, logs, the sample, graceful shutdown.

Against real parts: nodes on loopback ports, metrics scraped over HTTP,
a node in a process of its own stopped with a real signal, and the database
it leaves behind opened and checked afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import os
import pty
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from exchange.config import ConfigError, NodeConfig, load_config
from exchange.errors import SignatureInvalidError
from exchange.logs import configure_logging
from exchange.rules import REGISTER
from exchange.sample import generate, in_force_on, sample_statements
from exchange.server import RunningNode, start_node
from exchange.statements import sign, statement_id
from kaifang.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from kaifang.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ledger.db import Database, sqlite_url
from ledger.keys import load_key_file
from ledger.note import Signer
from ledger.store import LogStore
from tests.conftest import ORIGIN

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 27, 4, 0, tzinfo=dt.UTC)


def _config(tmp_path: Path, database: str | None = None, **changes: Any) -> NodeConfig:
    config = NodeConfig(
        origin=ORIGIN,
        listen="127.0.0.1:0",
        database=database or sqlite_url(tmp_path / "node.db"),
        log_key=tmp_path / "log.key",
    )
    return NodeConfig(**{**config.__dict__, **changes})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at http://127.0.0.1:port/metrics, by name and labels."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _registration(seed: int) -> pb.SignedStatement:
    party = generate(seed, parties=1, patents=1).parties[0]
    statement = pb.Statement(nonce=b"r" * 16, party_registered=party.registration)
    statement.created_at.GetCurrentTime()
    data = statement.SerializeToString()
    return pb.SignedStatement(statement=data, signatures=[sign(data, party.party_id, party.key)])


# -- configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "reason"),
    [
        ("origin = 5", "origin", "must be a string"),
        ('origin = ""', "origin", "empty"),
        ('origin = "a log"', "origin", "space"),
        ('listen = "50051"', "listen", "not host:port"),
        ('listen = "127.0.0.1:99999"', "listen", "0..65535"),
        ('listen = "127.0.0.1:http"', "listen", "0..65535"),
        ('listen = "::1:50051"', "listen", "brackets"),
        ('database = "kaifang.db"', "database", "not an SQLAlchemy URL"),
        ('database = "sqlite:///kaifang.db"', "database", "sqlite+aiosqlite"),
        ('database = "sqlite+aiosqlite://"', "database", "in-memory"),
        ('log_key = ""', "log_key", "must name a file"),
        ("operator_key = 1", "operator_key", "must be a string"),
        ('register_key = ["a"]', "register_key", "must be a string"),
        ('metrics_listen = "9464"', "metrics_listen", "not host:port"),
        ("metrics_listen = false", "metrics_listen", "must be a string"),
        ('log_format = "xml"', "log_format", "not one of auto, json, text"),
        ('log_level = "LOUD"', "log_level", "not one of DEBUG"),
        ("shutdown_grace_seconds = -1", "shutdown_grace_seconds", "non-negative"),
        ("shutdown_grace_seconds = nan", "shutdown_grace_seconds", "non-negative"),
        ('shutdown_grace_seconds = "5"', "shutdown_grace_seconds", "number of seconds"),
        ("shutdown_grace_seconds = true", "shutdown_grace_seconds", "number of seconds"),
        ('register_public_key = "abc"', "register_public_key", "64 hex digits"),
        ("register_public_key = 7", "register_public_key", "must be a string"),
        ('metric_listen = "127.0.0.1:9464"', "metric_listen", "unknown [node] keys"),
    ],
)
def test_a_bad_config_value_is_refused_naming_the_key_and_the_reason(
    tmp_path: Path, line: str, key: str, reason: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f"[node]\n{line}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert refused.value.key == key
    assert key in str(refused.value)
    assert reason in str(refused.value)
    assert str(path) in str(refused.value)


def test_a_refused_database_url_does_not_echo_its_password(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\ndatabase = "mysql://kaifang:hunter2@db.example/kaifang"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert refused.value.key == "database"
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    "text", ["[node]\nlisten = ", "[nod]\nlisten = '127.0.0.1:1'\n", "node = 1\n"]
)
def test_a_malformed_config_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


def test_the_new_keys_and_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[node]\n")
    config = load_config(path)
    assert config.metrics_listen == "127.0.0.1:9464"
    assert (config.log_format, config.log_level, config.shutdown_grace_seconds) == (
        "auto",
        "INFO",
        5.0,
    )
    assert load_config(None).metrics_listen == "127.0.0.1:9464"
    for off in ('""', '"off"', '"OFF"'):
        path.write_text(f"[node]\nmetrics_listen = {off}\n")
        assert load_config(path).metrics_listen is None
    path.write_text(
        "[node]\n"
        'metrics_listen = "[::1]:0"\n'
        'log_format = "json"\n'
        'log_level = "debug"\n'
        "shutdown_grace_seconds = 0\n"
        'database = "postgresql+asyncpg://kaifang@db.example/kaifang"\n'
        'log_key = "keys/log.key"\n'
    )
    config = load_config(path)
    assert config.metrics_listen == "[::1]:0"
    assert (config.log_format, config.log_level, config.shutdown_grace_seconds) == (
        "json",
        "DEBUG",
        0.0,
    )
    assert config.log_key == tmp_path / "keys" / "log.key"


# -- logs ---------------------------------------------------------------------


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Give the root logger back its handlers and level after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_json_logs_are_one_object_a_line_with_extras_and_never_raw_bytes() -> None:
    out = io.StringIO()  # not a terminal: "auto" means JSON
    configure_logging("auto", "INFO", out)
    log = logging.getLogger("kaifang.test")
    seed = bytes(range(32))
    log.info("served %d", 3, extra={"origin": ORIGIN, "seed": seed, "level": "x", "名": "开放"})
    log.debug("not at INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO"
    assert first["logger"] == "kaifang.test"
    assert first["msg"] == "served 3"
    assert first["origin"] == ORIGIN
    assert first["seed"] == "<32 bytes>"  # a key passed by mistake is not written out
    assert first["level_"] == "x"  # an extra never shadows a core field
    assert first["名"] == "开放"
    assert "开放" in lines[0]  # kept readable, not \\u-escaped
    assert dt.datetime.fromisoformat(first["ts"]).tzinfo == dt.UTC
    assert first["ts"].endswith("Z")
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exc"]


@pytest.mark.usefixtures("root_logging")
def test_text_logs_on_a_terminal() -> None:
    controller, terminal = pty.openpty()
    try:
        with open(terminal, "w", closefd=False) as stream:
            handler = configure_logging("auto", "INFO", stream)
            record = logging.LogRecord("kaifang.test", logging.INFO, "", 0, "up", None, None)
            record.port = 50051
            line = handler.format(record)
    finally:
        os.close(controller)
        os.close(terminal)
    assert line.endswith(" INFO kaifang.test up port=50051")
    dt.datetime.fromisoformat(line.split(" ")[0])


# -- the sample ---------------------------------------------------------------


def test_sample_statements_are_reproducible_distinct_and_in_admission_order() -> None:
    sample = generate(1, parties=20, patents=100)
    register = Signer.generate(REGISTER)
    first = sample_statements(sample, register, NOW)
    again = sample_statements(sample, register, NOW)
    assert [s.SerializeToString() for s in first] == [s.SerializeToString() for s in again]
    assert len({statement_id(s.statement) for s in first}) == len(first)
    kinds = [pb.Statement.FromString(s.statement).WhichOneof("body") for s in first]
    offers = kinds.count("offer_published")
    assert (
        kinds
        == ["party_registered"] * 20 + ["patent_recorded"] * 100 + ["offer_published"] * offers
    )
    today = NOW.date()  # 04:00 UTC is noon of the same day in China
    in_force = [p for p in sample.patents if in_force_on(p, today)]
    assert offers == (len(in_force) + 1) // 2 > 0


@pytest.fixture
async def node(db_url: str, tmp_path: Path) -> AsyncIterator[RunningNode]:
    async with start_node(_config(tmp_path, db_url)) as running:
        yield running


async def test_every_sample_statement_is_admitted_by_a_node(
    node: RunningNode, tmp_path: Path
) -> None:
    sample = generate(1)
    register = load_key_file(tmp_path / "register.key")  # the key the node checks the feed with
    statements = sample_statements(sample, register, dt.datetime.now(dt.UTC))
    for signed in statements:
        submitted = await node.exchange.submit(signed)
        assert not submitted.duplicate
    assert (await node.store.latest_checkpoint()).size == len(statements)
    offers: dict[str, bytes] = {}
    for signed in statements:
        statement = pb.Statement.FromString(signed.statement)
        if statement.HasField("offer_published"):
            offers[statement.offer_published.application_number] = statement_id(signed.statement)
    assert offers
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        for number, offer_id in offers.items():
            state = await stub.GetPatent(exchange_pb2.GetPatentRequest(application_number=number))
            assert state.active_offer_id == offer_id


async def test_a_node_started_with_the_sample_loads_it_once(tmp_path: Path) -> None:
    sample = generate(2, parties=5, patents=20)
    config = _config(tmp_path)
    async with start_node(config, sample=sample) as node:
        size = (await node.store.latest_checkpoint()).size
        assert size >= 25
    async with start_node(config, sample=sample) as node:
        assert (await node.store.latest_checkpoint()).size == size


# -- metrics ------------------------------------------------------------------


async def test_metrics_are_served_over_http_with_the_ledger_size(tmp_path: Path) -> None:
    config = _config(tmp_path, metrics_listen="127.0.0.1:0")
    async with start_node(config, sample=generate(3, parties=4, patents=10)) as node:
        assert node.metrics_port
        size = (await node.store.latest_checkpoint()).size
        assert size >= 14
        samples = await asyncio.to_thread(_scrape, node.metrics_port)
        assert samples[("kaifang_ledger_size", (("origin", ORIGIN),))] == size
        # The node's other metrics are exported by the same endpoint.
        assert ("kaifang_sequencing_seconds_count", ()) in samples
    with pytest.raises(OSError):  # the endpoint is gone with the node
        await asyncio.to_thread(_scrape, node.metrics_port)


async def test_metrics_off_and_a_busy_metrics_port(tmp_path: Path) -> None:
    async with start_node(_config(tmp_path)) as node:
        assert node.metrics_port is None
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(ConfigError) as refused:
            async with start_node(_config(tmp_path, metrics_listen=address)):
                pass
    assert refused.value.key == "metrics_listen"
    assert address in str(refused.value)


# -- graceful shutdown ----------------------------------------------------------


async def test_shutdown_lets_in_flight_rpcs_finish_refuses_new_ones_and_seals_the_log(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, shutdown_grace_seconds=30.0)
    started, stop, entered, gate = (asyncio.Event() for _ in range(4))
    nodes: list[RunningNode] = []

    async def serve() -> None:
        async with start_node(config) as node:
            db = node.store.db
            original = db.write

            async def held(work: Any, *, durable: bool = True) -> Any:
                # Hold the node's next write (the submission's transaction)
                # until the test lets it go: an RPC still in flight.
                entered.set()
                await gate.wait()
                return await original(work, durable=durable)

            db.write = held  # type: ignore[method-assign]
            nodes.append(node)
            started.set()
            await stop.wait()

    serving = asyncio.create_task(serve())
    await started.wait()
    address = f"127.0.0.1:{nodes[0].port}"
    async with grpc.aio.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        request = exchange_pb2.SubmitStatementRequest(signed=_registration(41))

        async def in_flight() -> exchange_pb2.SubmitStatementResponse:
            return await stub.SubmitStatement(request)

        submit = asyncio.create_task(in_flight())
        await asyncio.wait_for(entered.wait(), 10)
        stop.set()
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        # New RPCs are refused while the one in flight is still running.
        refused: grpc.StatusCode | None = None
        for _ in range(50):
            async with grpc.aio.insecure_channel(address) as fresh:
                try:
                    await ledger_pb2_grpc.LedgerServiceStub(fresh).GetCheckpoint(
                        ledger_pb2.GetCheckpointRequest(), timeout=1
                    )
                except grpc.aio.AioRpcError as e:
                    refused = e.code()
            if refused is not None:
                break
            await asyncio.sleep(0.1)
        assert refused == grpc.StatusCode.UNAVAILABLE, "the stopping node accepts new RPCs"
        assert not submit.done()
        gate.set()
        response = await asyncio.wait_for(submit, 10)
    await asyncio.wait_for(serving, 10)
    assert response.index == 0
    db = Database(config.database)
    try:
        store = await LogStore.open(db, ORIGIN)
        assert (await store.latest_checkpoint()).size == await store.fsck() == 1
    finally:
        await db.dispose()


async def _wait_serving(address: str, process: asyncio.subprocess.Process) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            assert process.returncode is None, "the node exited before serving"
            try:
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.aio.AioRpcError:
                answer = None
            if answer is not None and answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
            await asyncio.sleep(0.1)
    pytest.fail("the node did not become SERVING")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_node_process_stops_cleanly_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    port, metrics_port = _free_port(), _free_port()
    config = tmp_path / "node.toml"
    config.write_text(
        "[node]\n"
        f'origin = "{ORIGIN}"\n'
        f'listen = "127.0.0.1:{port}"\n'
        f'metrics_listen = "127.0.0.1:{metrics_port}"\n'
        'database = "sqlite+aiosqlite:///node.db"\n'
        'log_format = "json"\n'
    )
    argv = [sys.executable, "-m", "clients.cli", "node", "--config", str(config)]
    argv += ["--sample", "--sample-seed", "4", "--sample-parties", "4", "--sample-patents", "10"]
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        address = f"127.0.0.1:{port}"
        await _wait_serving(address, process)
        samples = await asyncio.to_thread(_scrape, metrics_port)
        loaded = samples[("kaifang_ledger_size", (("origin", ORIGIN),))]
        assert loaded >= 14  # 4 parties, 10 patents and the offers
        async with grpc.aio.insecure_channel(address) as channel:
            stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
            request = exchange_pb2.SubmitStatementRequest(signed=_registration(42))
            assert (await stub.SubmitStatement(request)).index == loaded
        process.send_signal(sig)
        code = await asyncio.wait_for(process.wait(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = stderr_path.read_text(encoding="utf-8")
    assert code == 0, log
    lines = [json.loads(line) for line in log.splitlines()]
    assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
    messages = [line["msg"] for line in lines]
    assert messages[-3:] == ["stopping", "log sealed", "stopped"]
    assert lines[-2]["size"] == loaded + 1
    for name in ("log.key", "operator.key", "register.key"):
        # PRIVATE+KEY+<name>+<key id>+<base64 seed>: names hold no '+', base64 may.
        secret = (tmp_path / name).read_text().strip().split("+", 4)[4]
        assert len(secret) > 40
        assert secret not in log
    db = Database(sqlite_url(tmp_path / "node.db"))
    try:
        store = await LogStore.open(db, ORIGIN)
        # The latest signed checkpoint covers every entry the process wrote.
        assert (await store.latest_checkpoint()).size == await store.fsck() == loaded + 1
    finally:
        await db.dispose()


async def test_a_node_given_only_the_register_public_key_holds_no_register_key(
    tmp_path: Path,
) -> None:
    register = Signer.generate(REGISTER)  # the authority's, kept elsewhere
    path = tmp_path / "node.toml"
    path.write_text(
        f'[node]\nlisten = "127.0.0.1:0"\nmetrics_listen = "off"\n'
        f'register_public_key = "{register.public_key.hex()}"\n'
    )
    config = load_config(path)
    assert config.register_public_key == register.public_key
    sample = generate(71, parties=1, patents=4)
    now = dt.datetime.now(dt.UTC)
    async with start_node(config) as node:
        statements = sample_statements(sample, register, now)
        outcomes = await node.exchange.submit_many(statements)
        assert not [o for o in outcomes if isinstance(o, Exception)]
        # A record signed by another key: refused, though it names the register.
        other = Signer.generate(REGISTER)
        forged = next(
            s
            for s in sample_statements(sample, other, now + dt.timedelta(seconds=1))
            if pb.Statement.FromString(s.statement).HasField("patent_recorded")
        )
        with pytest.raises(SignatureInvalidError):
            await node.exchange.submit(forged)
    assert not (tmp_path / "register.key").exists()
    with pytest.raises(ConfigError, match="register_public_key"):
        async with start_node(config, sample=sample):
            pass
