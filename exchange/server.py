"""The node process: migrate, load the keys, serve the gRPC APIs and metrics until stopped.

Serves ``kaifang.ledger.v1.LedgerService`` and ``kaifang.exchange.v1.ExchangeService``
plus the standard gRPC health and reflection services, so that generic tools
(grpcurl, grpc-health-probe) work against a node without the project's
protos, and Prometheus metrics (:mod:`exchange.metrics`) over HTTP. The client
port is plaintext, or TLS (server authentication only) when the configuration
has a ``[client_tls]`` table.

Stopping (SIGTERM or SIGINT, or leaving :func:`start_node`) is graceful and
in this order, each step relying on the one before:

1. health says NOT_SERVING, so that load balancers stop sending work;
2. the gRPC server refuses new RPCs and gives those in flight the grace
   period (``shutdown_grace_seconds``) to finish;
3. the exchange admits what is queued, and the sequencer writes what it
   holds and stops;
4. the log is sealed: a signed checkpoint covers every entry (one is signed
   only if the latest does not already);
5. the metrics endpoint stops and the database is released.

**Log keys.** The node signs its checkpoints with ``log_key``, and with
``log_key_next`` too while the configuration names one (a key rotation, see
:mod:`exchange.config`): the next key is first added to the keys the log
accepts, but only once the current key is known to be one of them, so that
a wrong key file can never bring in a key of its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from exchange.config import ConfigError, NodeConfig, parse_address
from exchange.errors import ExchangeError
from exchange.federation import Federation
from exchange.federation_service import FederationService, add_federation_service
from exchange.limits import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES  # re-exported
from exchange.limits import SERVER_OPTIONS
from exchange.metrics import LEDGER_SIZE
from exchange.network import (
    WITNESS_KEY_FILE,
    client_server_credentials,
    load_client_tls,
    load_federation,
    server_credentials,
)
from exchange.node import Exchange
from exchange.rules import REGISTER
from exchange.sample import Sample, sample_statements
from exchange.service import ExchangeService, add_exchange_service
from kaifang.exchange.v1 import exchange_pb2
from kaifang.federation.v1 import federation_pb2
from kaifang.ledger.v1 import ledger_pb2
from ledger.db import Database
from ledger.keys import load_or_create_key_file, load_or_create_witness_key_file
from ledger.note import Signer
from ledger.service import LedgerService, add_ledger_service
from ledger.store import LogStore, Sequencer

log = logging.getLogger(__name__)

# Key name of an exchange operator's key (roles are signed "operator:<origin>").
OPERATOR_KEY_NAME = "operator"


@dataclass(frozen=True)
class RunningNode:
    """A started node: its bound ports, its log and key, and its gRPC server."""

    port: int
    store: LogStore
    signer: Signer  # the log's current key
    server: grpc.aio.Server
    exchange: Exchange
    # The bound port of the metrics endpoint; None when metrics are off.
    metrics_port: int | None = None
    # The federation, and its bound (mutual TLS) port, of a node in a network.
    federation: Federation | None = None
    peer_port: int | None = None
    # The log's next key while it rotates (it signs every checkpoint too).
    next_signer: Signer | None = None

    @property
    def signers(self) -> tuple[Signer, ...]:
        """Every key that signs the log's checkpoints: the current key, then the next."""
        return (self.signer,) if self.next_signer is None else (self.signer, self.next_signer)


@dataclass(frozen=True)
class MetricsEndpoint:
    """The Prometheus HTTP endpoint, served from a thread of its own."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server.server_port)

    async def stop(self) -> None:
        """Stop serving and close the socket."""
        # shutdown() blocks until the serving loop notices; not on the event loop.
        await asyncio.to_thread(self.server.shutdown)
        self.server.server_close()
        await asyncio.to_thread(self.thread.join)


def start_metrics(address: str) -> MetricsEndpoint:
    """Serve the process's Prometheus registry at ``http://address/metrics``.

    Raises :class:`ConfigError` naming ``metrics_listen`` if the address cannot be bound.
    """
    try:
        host, port = parse_address(address)
        server, thread = start_http_server(port, host)
    except (ValueError, OSError) as e:
        raise ConfigError(
            f"metrics_listen: cannot listen on {address}: {e}", key="metrics_listen"
        ) from e
    return MetricsEndpoint(server, thread)


async def load_sample(exchange: Exchange, register: Signer, sample: Sample) -> int:
    """Admit ``sample``'s statements if the node's log is empty; return how many.

    A log that already holds entries is left alone, so that restarting a node
    started with the sample loads nothing twice. A statement refused raises
    its :class:`~exchange.errors.ExchangeError`: the sample is meant to be
    admissible, so a refusal is a bug to hear about, not to skip.
    """
    if (await exchange.store.latest_checkpoint()).size:
        log.info("log is not empty; sample not loaded", extra={"origin": exchange.origin})
        return 0
    statements = sample_statements(sample, register, dt.datetime.now(dt.UTC))
    # One ordered submission: each statement sees what those before it did,
    # and the exchange shares transactions and checkpoints among them.
    for outcome in await exchange.submit_many(statements):
        if isinstance(outcome, ExchangeError):
            raise outcome
    log.info(
        "sample loaded",
        extra={
            "statements": len(statements),
            "parties": len(sample.parties),
            "patents": len(sample.patents),
        },
    )
    return len(statements)


@asynccontextmanager
async def start_node(
    config: NodeConfig, *, sample: Sample | None = None
) -> AsyncIterator[RunningNode]:
    """Start a node for ``config``; stop it gracefully and release the database on exit.

    With ``sample``, an empty log is first loaded with the sample's
    statements (see :func:`load_sample`); health turns SERVING after that.
    Raises :class:`ConfigError` for a bad key file, certificate or address.
    """
    # First, so that a bad TLS key or certificate stops the node before it
    # creates a database or a key.
    client_identity = load_client_tls(config)
    db = Database(config.database)
    metrics: MetricsEndpoint | None = None
    try:
        await db.migrate()
        signer = load_or_create_key_file(config.log_key, config.origin)
        next_signer: Signer | None = None
        if config.log_key_next is not None:
            next_signer = load_or_create_key_file(config.log_key_next, config.origin)
            if next_signer.public_key == signer.public_key:
                raise ConfigError(
                    f"log_key_next: {config.log_key_next} holds the same key as log_key",
                    key="log_key_next",
                )
        # Before the log is touched: a network file that does not list the
        # node's keys stops it here.
        membership = load_federation(config)
        store = await LogStore.create(db, config.origin, signer.verifier_key())
        signers = [signer]
        if next_signer is not None:
            # KeyMismatchError for a current key the log never accepted,
            # before the next key is added on its word.
            await store.check_signers(signer)
            if await store.accept_key(next_signer.verifier_key()):
                next_vkey = next_signer.verifier_key()
                log.info(
                    "log accepts its next key",
                    extra={"origin": config.origin, "next_verifier_key": next_vkey},
                )
            signers.append(next_signer)
        # A new log signs its empty checkpoint, so that readers and witnesses
        # always have one to start from.
        await store.sequence([], signers)
        server = grpc.aio.server(options=SERVER_OPTIONS)
        add_ledger_service(LedgerService(store), server)
        # The operator's key grants roles; the register key checks the patent
        # feed. A local node creates both (a network file will name them).
        operator = load_or_create_key_file(config.operator_key_file(), OPERATOR_KEY_NAME)
        register: Signer | None = None
        register_key = config.register_public_key
        operator_keys = {config.origin: operator.public_key}
        if membership is not None:
            # In a network, the network file names the register authority and
            # every exchange's operator.
            register_key = register_key or membership[0].register_public_key
            operator_keys = membership[0].operator_keys()
        if register_key is None:
            register = load_or_create_key_file(config.register_key_file(), REGISTER)
            register_key = register.public_key
        sequencer = Sequencer(store, signers)
        exchange = Exchange(
            db, store, sequencer, register_key=register_key, operator_keys=operator_keys
        )
        federation: Federation | None = None
        if membership is not None and config.federation is not None:
            network, identity = membership
            witness = load_or_create_witness_key_file(
                config.log_key.with_name(WITNESS_KEY_FILE), config.origin
            )
            listed = network.member(config.origin).witness_vkey
            if listed is not None and listed != witness.verifier_key():
                raise ConfigError(
                    f"{config.log_key.with_name(WITNESS_KEY_FILE)} is not the witness key the "
                    f"network file lists for {config.origin!r}",
                    key="federation.network",
                )
            federation = Federation(
                exchange,
                network,
                identity,
                witness,
                peers=config.federation.peers,
                dial=config.federation.dial,
            )
            exchange.router = federation.route
            await federation.start_replicas()
        await exchange.catch_up()
        if sample is not None:
            if register is None:
                raise ConfigError(
                    "the sample data is signed by the register authority, whose key this node "
                    "does not hold (register_public_key is set)",
                    key="register_public_key",
                )
            await load_sample(exchange, register, sample)
        add_exchange_service(ExchangeService(exchange), server)
        peer_port: int | None = None
        if federation is not None and config.federation is not None:
            add_federation_service(FederationService(federation), server)
            credentials = server_credentials(*membership)  # type: ignore[misc]
            try:
                peer_port = server.add_secure_port(config.federation.listen, credentials)
            except RuntimeError as e:
                raise ConfigError(
                    f"[federation] listen: cannot listen on {config.federation.listen}: {e}",
                    key="federation.listen",
                ) from e
        # grpc-stubs does not know the asyncio health servicer.
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        ledger_name = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
        exchange_name = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name
        names = [ledger_name, exchange_name, health.SERVICE_NAME, reflection.SERVICE_NAME]
        if federation is not None:
            names.append(federation_pb2.DESCRIPTOR.services_by_name["FederationService"].full_name)
        reflection.enable_server_reflection(names, server)
        try:
            if client_identity is None:
                port = server.add_insecure_port(config.listen)
            else:
                client_credentials = client_server_credentials(client_identity)
                port = server.add_secure_port(config.listen, client_credentials)
        except RuntimeError as e:
            raise ConfigError(f"listen: cannot listen on {config.listen}: {e}", key="listen") from e
        LEDGER_SIZE.labels(origin=store.origin).set((await store.latest_checkpoint()).size)
        if config.metrics_listen is not None:
            metrics = start_metrics(config.metrics_listen)
        await server.start()
        if federation is not None:
            await federation.start()
        for name in ("", ledger_name, exchange_name):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        try:
            yield RunningNode(
                port, store, signer, server, exchange, metrics.port if metrics else None,
                federation, peer_port, next_signer,
            )  # fmt: skip
        finally:
            grace = config.shutdown_grace_seconds
            log.info("stopping", extra={"grace_seconds": grace})
            await health_servicer.enter_graceful_shutdown()
            # Watch streams never end by themselves: end them first, so that
            # the grace period is left to the calls that do.
            await exchange.stop_watches()
            if federation is not None:
                await federation.stop()
            await server.stop(grace)
            await exchange.close()
            await sequencer.close()
            # Every append signs its checkpoint in the same transaction, so
            # this normally signs nothing; it makes sure of it before exit.
            _, sealed = await store.sequence([], signers)
            LEDGER_SIZE.labels(origin=store.origin).set(sealed.size)
            log.info("log sealed", extra={"origin": store.origin, "size": sealed.size})
    finally:
        if metrics is not None:
            await metrics.stop()
        await db.dispose()


async def run_node(config: NodeConfig, *, sample: Sample | None = None) -> None:
    """Run a node until SIGINT or SIGTERM, then stop it gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with start_node(config, sample=sample) as node:
            host = config.listen.rsplit(":", 1)[0]
            transport = "plaintext" if config.client_tls is None else "TLS"
            log.info(
                "serving kaifang.ledger.v1 and kaifang.exchange.v1 on %s:%d (%s)",
                host,
                node.port,
                transport,
                extra={
                    "origin": config.origin,
                    "client_transport": transport,
                    # The verifier key is the public half: what clients check against.
                    "verifier_key": node.signer.verifier_key(),
                    "next_verifier_key": (
                        node.next_signer.verifier_key() if node.next_signer else None
                    ),
                    "port": node.port,
                    "metrics_port": node.metrics_port,
                },
            )
            await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("stopped")
