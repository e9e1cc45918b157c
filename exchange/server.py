"""The node process: migrate, load the log key, serve the gRPC APIs until stopped.

Serves ``kaifang.ledger.v1.LedgerService`` plus the standard gRPC health and
reflection services, so that generic tools (grpcurl, grpc-health-probe) work
against a node without the project's protos.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from exchange.config import ConfigError, NodeConfig
from exchange.node import Exchange
from exchange.rules import REGISTER
from exchange.service import ExchangeService, add_exchange_service
from kaifang.exchange.v1 import exchange_pb2
from kaifang.ledger.v1 import ledger_pb2
from ledger.db import Database
from ledger.keys import load_or_create_key_file
from ledger.note import Signer
from ledger.service import LedgerService, add_ledger_service
from ledger.store import LogStore, Sequencer

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 << 20
GRACE_S = 5.0
# Key name of an exchange operator's key (roles are signed "operator:<origin>").
OPERATOR_KEY_NAME = "operator"


@dataclass(frozen=True)
class RunningNode:
    """A started node: its bound port, its log and key, and its gRPC server."""

    port: int
    store: LogStore
    signer: Signer
    server: grpc.aio.Server
    exchange: Exchange


@asynccontextmanager
async def start_node(config: NodeConfig) -> AsyncIterator[RunningNode]:
    """Start a node for ``config``; stop it and release the database on exit."""
    db = Database(config.database)
    try:
        await db.migrate()
        signer = load_or_create_key_file(config.log_key, config.origin)
        store = await LogStore.create(db, config.origin, signer.verifier_key())
        # A new log signs its empty checkpoint, so that readers and witnesses
        # always have one to start from.
        await store.sequence([], signer)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        add_ledger_service(LedgerService(store), server)
        # The operator's key grants roles; the register key checks the patent
        # feed. A local node creates both (a network file will name them).
        operator = load_or_create_key_file(config.operator_key_file(), OPERATOR_KEY_NAME)
        register = load_or_create_key_file(config.register_key_file(), REGISTER)
        exchange = Exchange(
            db,
            store,
            Sequencer(store, signer),
            register_key=register.public_key,
            operator_keys={config.origin: operator.public_key},
        )
        await exchange.catch_up()
        add_exchange_service(ExchangeService(exchange), server)
        # grpc-stubs does not know the asyncio health servicer.
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        ledger_name = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
        exchange_name = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name
        reflection.enable_server_reflection(
            [ledger_name, exchange_name, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        try:
            port = server.add_insecure_port(config.listen)
        except RuntimeError as e:
            raise ConfigError(f"cannot listen on {config.listen}: {e}") from e
        await server.start()
        for name in ("", ledger_name, exchange_name):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        try:
            yield RunningNode(port, store, signer, server, exchange)
        finally:
            await health_servicer.enter_graceful_shutdown()
            await server.stop(GRACE_S)
    finally:
        await db.dispose()


async def run_node(config: NodeConfig) -> None:
    """Run a node until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with start_node(config) as node:
        host = config.listen.rsplit(":", 1)[0]
        log.info("log %s, verifier key %s", config.origin, node.signer.verifier_key())
        log.info("serving kaifang.ledger.v1 and kaifang.exchange.v1 on %s:%d", host, node.port)
        await stop.wait()
        log.info("stopping")
