"""A network of exchanges run as local processes: for tests, benchmarks and demonstrations.

:class:`LocalNetwork` creates a network directory (``kaifang network init``,
on free loopback ports), then starts, stops, kills, pauses and resumes its
nodes as separate ``kaifang node`` processes, and talks to them the way
their users do: clients over each node's client address, peers over mutual
TLS with a member's identity. Nothing here is a fake: the nodes are the real
program, each with its own database. A member can be told to dial others at
other addresses (``dial``: a relay, or the fault tests' link proxies).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange.config import load_config
from exchange.network import (
    NETWORK_FILE,
    NODE_CONFIG_FILE,
    Network,
    TlsIdentity,
    channel_credentials,
    channel_options,
    init_network,
    load_network,
)
from kaifang.federation.v1 import federation_pb2 as fed
from kaifang.federation.v1 import federation_pb2_grpc as fed_grpc

# Seconds a node may take to migrate its database and start serving.
START_TIMEOUT_S = 60.0
# Seconds a stopped node may take to finish in-flight work and exit.
STOP_TIMEOUT_S = 30.0
_PORT_SEARCH_FROM = 20000


def free_port_block(count: int, start: int = _PORT_SEARCH_FROM) -> int:
    """Return a port P such that P .. P+count-1 are free on 127.0.0.1 right now."""
    port = start + (os.getpid() * 37) % 20000
    for _ in range(200):
        sockets = []
        try:
            for offset in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            port += count + 7
            if port + count > 65000:
                port = start
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"found no {count} consecutive free ports")


@dataclass
class LocalNode:
    """One member's directory, configuration and (when running) process."""

    name: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        """The node's configuration file."""
        return self.directory / NODE_CONFIG_FILE

    @property
    def log_file(self) -> Path:
        """Where the node's standard error (its log) goes."""
        return self.directory / "node.log"


class LocalNetwork:
    """The members of one network directory, run as local processes."""

    def __init__(self, directory: Path) -> None:
        """Use the network already created in ``directory``."""
        self.directory = directory
        self.network: Network = load_network(directory / NETWORK_FILE)
        self.nodes = {m.name: LocalNode(m.name, directory / m.name) for m in self.network.members}

    @classmethod
    def create(
        cls,
        directory: Path,
        names: Sequence[str],
        *,
        peers: Mapping[str, Sequence[str]] | None = None,
        databases: Mapping[str, str] | None = None,
        dial: Mapping[str, Mapping[str, str]] | None = None,
    ) -> LocalNetwork:
        """Create a network of ``names`` in ``directory`` on free loopback ports.

        ``peers`` restricts whom a member replicates from (a partial mesh);
        ``databases`` gives a member a database URL other than its own SQLite file;
        ``dial`` gives a member the addresses to dial other members at (see
        :meth:`set_dial`).
        """
        init_network(directory, names, base_port=free_port_block(2 * len(names)))
        for name, members in (peers or {}).items():
            listed = ", ".join(f'"{m}"' for m in members)
            _edit(directory / name / NODE_CONFIG_FILE, r"^# peers = .*$", f"peers = [{listed}]")
        for name, url in (databases or {}).items():
            _edit(directory / name / NODE_CONFIG_FILE, r"^database = .*$", f'database = "{url}"')
        network = cls(directory)
        for name, table in (dial or {}).items():
            network.set_dial(name, table)
        return network

    def set_dial(self, name: str, table: Mapping[str, str]) -> None:
        """Make member ``name`` dial each member of ``table`` at the address given there.

        Writes the ``[federation] dial`` table of ``name``'s configuration,
        replacing any it had; the node reads it when it (re)starts. Peers'
        certificates are still checked, so the address may be a relay or a
        fault-injecting proxy but not an impostor.
        """
        unknown = (set(table) | {name}) - set(self.nodes)
        if unknown:
            raise KeyError(f"not members of the network: {sorted(unknown)}")
        listed = ", ".join(f'"{member}" = "{address}"' for member, address in table.items())
        path = self.nodes[name].config
        text = re.sub(r"^dial = .*\n", "", path.read_text(), flags=re.MULTILINE)
        path.write_text(text)
        _edit(path, r"^(tls_certificate = .*)$", rf"\1\ndial = {{ {listed} }}")

    # -- processes ----------------------------------------------------------

    def start(self, name: str) -> None:
        """Start member ``name``'s node (use :meth:`wait_ready` to wait for it)."""
        node = self.nodes[name]
        if node.process is not None and node.process.poll() is None:
            raise RuntimeError(f"{name} is already running")
        with node.log_file.open("ab") as log:
            node.process = subprocess.Popen(  # noqa: S603 - our own program, fixed arguments
                [sys.executable, "-m", "clients.cli", "node", "--config", str(node.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=Path(__file__).resolve().parent.parent,
            )  # fmt: skip

    async def start_all(self, names: Sequence[str] | None = None) -> None:
        """Start the named members (all by default) and wait until each serves."""
        chosen = list(names) if names is not None else list(self.nodes)
        for name in chosen:
            self.start(name)
        await asyncio.gather(*(self.wait_ready(n) for n in chosen))

    async def wait_ready(self, name: str, within_s: float = START_TIMEOUT_S) -> None:
        """Wait until ``name``'s node reports SERVING on its client address."""
        node = self.nodes[name]
        deadline = time.monotonic() + within_s
        async with self.client_channel(name) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(f"{name} exited at start; see {node.log_file}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not start within {within_s} s")
                await asyncio.sleep(0.1)

    def _signal(self, name: str, sig: signal.Signals) -> subprocess.Popen[bytes]:
        process = self.nodes[name].process
        if process is None or process.poll() is not None:
            raise RuntimeError(f"{name} is not running")
        process.send_signal(sig)
        return process

    async def stop(self, name: str) -> int:
        """Stop ``name`` gracefully (SIGTERM); return its exit code."""
        process = self._signal(name, signal.SIGTERM)
        return await _wait(process, STOP_TIMEOUT_S)

    async def kill(self, name: str) -> None:
        """Kill ``name`` at once (SIGKILL), as a crash would."""
        await _wait(self._signal(name, signal.SIGKILL), STOP_TIMEOUT_S)

    def pause(self, name: str) -> None:
        """Freeze ``name`` (SIGSTOP): it holds its connections but answers nothing."""
        self._signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """Let a paused ``name`` run again (SIGCONT)."""
        self._signal(name, signal.SIGCONT)

    async def close(self) -> None:
        """Stop every running node: gracefully, or killed if it does not exit in time."""
        for node in self.nodes.values():
            process = node.process
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            if node.process is not None:
                try:
                    await _wait(node.process, STOP_TIMEOUT_S)
                except TimeoutError:
                    node.process.kill()
                    await _wait(node.process, STOP_TIMEOUT_S)

    # -- talking to the nodes -------------------------------------------------

    def database_url(self, name: str) -> str:
        """Member ``name``'s database URL as its node resolves it (an SQLite file's full path).

        For operator commands (``kaifang ledger fsck --db``, ``kaifang views
        rebuild --db``) run while the node is stopped.
        """
        return load_config(self.nodes[name].config).database

    def identity(self, name: str) -> TlsIdentity:
        """Member ``name``'s TLS identity."""
        directory = self.nodes[name].directory
        return TlsIdentity.load(directory / "tls.key", directory / "tls.pem")

    def client_channel(self, name: str) -> grpc.aio.Channel:
        """A channel to ``name``'s client API (exchange and ledger services)."""
        return grpc.aio.insecure_channel(self.network.member(name).client_address)

    def peer_channel(self, name: str, *, as_member: str) -> grpc.aio.Channel:
        """A mutual-TLS channel to ``name``'s federation API, as member ``as_member``."""
        member = self.network.member(name)
        credentials = channel_credentials(self.network, self.identity(as_member))
        return grpc.aio.secure_channel(member.address, credentials, options=channel_options(member))

    async def heads(self, name: str) -> fed.GetHeadsResponse:
        """``name``'s heads, asked as ``name`` itself."""
        async with self.peer_channel(name, as_member=name) as channel:
            stub = fed_grpc.FederationServiceStub(channel)
            return await stub.GetHeads(fed.GetHeadsRequest(), timeout=10.0)

    async def wait_converged(
        self, names: Sequence[str] | None = None, within_s: float = 60.0
    ) -> fed.GetHeadsResponse:
        """Wait until the named members (all by default) report one network digest.

        The heads must also cover the log of each of them, so that nodes that
        have not yet heard of one do not count as converged. Returns the heads
        of the first member.
        """
        chosen = list(names) if names is not None else list(self.nodes)
        expected = set(chosen)
        deadline = time.monotonic() + within_s
        last: dict[str, fed.GetHeadsResponse] = {}
        silent: dict[str, str] = {}  # members whose last GetHeads failed, and how
        while True:
            for name in chosen:
                try:
                    last[name] = await self.heads(name)
                    silent.pop(name, None)
                except grpc.aio.AioRpcError as e:
                    silent[name] = e.code().name
            if not silent:
                digests = {r.network_digest for r in last.values()}
                complete = all({h.origin for h in r.heads} >= expected for r in last.values())
                if len(digests) == 1 and complete:
                    return last[chosen[0]]
            if time.monotonic() > deadline:
                summary = {n: [_size_of(h) for h in r.heads] for n, r in last.items()}
                raise TimeoutError(
                    f"not converged within {within_s} s: {summary}"
                    + (f"; not answering: {silent}" if silent else "")
                )
            await asyncio.sleep(0.2)


def _size_of(head: fed.Head) -> tuple[str, int] | tuple[str, int, str]:
    """(origin, signed size), with what is held beyond it or a halt when there is one."""
    notes = []
    if head.entries_held != head.tree_size:
        notes.append(f"{head.entries_held} held")
    if head.halted:
        notes.append("halted")
    if notes:
        return head.origin, head.tree_size, ", ".join(notes)
    return head.origin, head.tree_size


def _edit(path: Path, pattern: str, replacement: str) -> None:
    text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.MULTILINE)
    if count != 1:
        raise RuntimeError(f"{path}: no line matches {pattern!r}")
    path.write_text(text)


async def _wait(process: subprocess.Popen[bytes], within_s: float) -> int:
    deadline = time.monotonic() + within_s
    while process.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {process.pid} did not exit within {within_s} s")
        await asyncio.sleep(0.05)
    return process.returncode
