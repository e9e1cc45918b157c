"""TLS on a node's client port: opt-in with ``[client_tls]``, server authentication only.

Real nodes in process on port 0, configured from real files: a client that
trusts the node's CA is served over TLS; a plaintext client, or one that
trusts another CA, is not; a key file others can read stops the node before
it starts; and a configuration without ``[client_tls]`` is plaintext as
before. ``init_network(client_tls=True)`` gives every member such a table,
reusing its federation identity.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange.config import ClientTls, ConfigError, NodeConfig, load_config
from exchange.network import create_ca, init_network, issue_certificate, private_key_pem
from exchange.server import RunningNode, start_node
from kaifang.ledger.v1 import ledger_pb2, ledger_pb2_grpc

# Long enough for a loaded machine, short enough that a hang fails the test.
DEADLINE_S = 10.0


@dataclass(frozen=True)
class Pki:
    """A CA and a server identity it issued, written as PEM files."""

    ca_pem: bytes
    key_path: Path
    cert_path: Path


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _ca_pem(common_name: str) -> bytes:
    return _pem(create_ca(common_name)[1])


def _write_identity(
    directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[Path, Path]:
    key, certificate = issue_certificate(ca_key, ca, "node")
    key_path = directory / "tls.key"
    key_path.write_bytes(private_key_pem(key))
    key_path.chmod(0o600)
    cert_path = directory / "tls.pem"
    cert_path.write_bytes(_pem(certificate))
    return key_path, cert_path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca_key, ca = create_ca("test CA")
    key_path, cert_path = _write_identity(tmp_path, ca_key, ca)
    return Pki(_pem(ca), key_path, cert_path)


def _write_config(directory: Path, *, client_tls: bool) -> Path:
    """Write a node configuration serving on a free loopback port; return its path."""
    lines = [
        "[node]",
        'origin = "tls.kaifang.example/log"',
        'listen = "127.0.0.1:0"',
        'database = "sqlite+aiosqlite:///kaifang.db"',
        'metrics_listen = "off"',
        'log_format = "text"',
    ]
    if client_tls:
        lines += ["", "[client_tls]", 'key = "tls.key"', 'certificate = "tls.pem"']
    path = directory / "node.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
async def tls_node(tmp_path: Path, pki: Pki) -> AsyncIterator[RunningNode]:
    async with start_node(load_config(_write_config(tmp_path, client_tls=True))) as node:
        yield node


def _tls_channel(port: int, ca_pem: bytes, *, name: str | None = None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    options = [] if name is None else [("grpc.ssl_target_name_override", name)]
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options)


async def _checkpoint_size(channel: grpc.aio.Channel) -> int:
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)
    response = await stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=DEADLINE_S)
    return len(response.checkpoint)


async def _health_error(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)
    return failed.value


# -- configuration ---------------------------------------------------------


def test_client_tls_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_config(_write_config(tmp_path, client_tls=True))
    assert config.client_tls == ClientTls(
        key=tmp_path / "tls.key", certificate=tmp_path / "tls.pem"
    )


def test_config_without_client_tls_has_none(tmp_path: Path) -> None:
    assert load_config(_write_config(tmp_path, client_tls=False)).client_tls is None
    assert NodeConfig.defaults().client_tls is None


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        ('key = "tls.key"', "client_tls.certificate", "is required"),
        ('certificate = "tls.pem"', "client_tls.key", "is required"),
        (
            'key = "tls.key"\ncertificate = "tls.pem"\nkeyfile = "x"',
            "client_tls.keyfile",
            "unknown",
        ),
        ('key = ""\ncertificate = "tls.pem"', "client_tls.key", "must name a file"),
        ('key = 1\ncertificate = "tls.pem"', "client_tls.key", "must be a string"),
    ],
)
def test_bad_client_tls_table_is_refused_naming_the_key(
    tmp_path: Path, table: str, key: str, reason: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f"[node]\n\n[client_tls]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=reason) as refused:
        load_config(path)
    assert refused.value.key == key
    assert str(path) in str(refused.value)


def test_client_tls_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('client_tls = "tls.pem"\n[node]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[client_tls\]"):
        load_config(path)


# -- the node --------------------------------------------------------------


async def test_tls_client_port_serves_a_client_that_trusts_the_ca(
    tls_node: RunningNode, pki: Pki
) -> None:
    async with _tls_channel(tls_node.port, pki.ca_pem) as channel:
        assert await _checkpoint_size(channel) > 0
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_tls_client_port_checks_the_name_the_client_asks_for(
    tls_node: RunningNode, pki: Pki
) -> None:
    # The certificate names "node" (and localhost, 127.0.0.1), not this one.
    async with _tls_channel(tls_node.port, pki.ca_pem, name="node") as channel:
        assert await _checkpoint_size(channel) > 0
    async with _tls_channel(tls_node.port, pki.ca_pem, name="elsewhere.example") as channel:
        assert (await _health_error(channel)).code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_client_of_a_tls_client_port_is_unavailable(
    tls_node: RunningNode,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_node.port}") as channel:
        assert (await _health_error(channel)).code() == grpc.StatusCode.UNAVAILABLE


async def test_client_trusting_another_ca_fails_the_handshake(tls_node: RunningNode) -> None:
    async with _tls_channel(tls_node.port, _ca_pem("another CA")) as channel:
        failed = await _health_error(channel)
    assert failed.code() == grpc.StatusCode.UNAVAILABLE
    assert "handshake" in (failed.details() or "").lower()


def _handshake(port: int, ca_pem: bytes) -> tuple[str | None, dict[str, object] | None]:
    """Handshake with the standard library; return the TLS version and the server's certificate."""
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version(), dict(tls.getpeercert() or {})


async def test_tls_client_port_negotiates_tls_1_2_or_later_without_a_client_certificate(
    tls_node: RunningNode, pki: Pki
) -> None:
    # The handshake completes although this client has no certificate: the
    # client port authenticates the server only.
    version, certificate = await asyncio.to_thread(_handshake, tls_node.port, pki.ca_pem)
    assert version in ("TLSv1.2", "TLSv1.3")
    assert certificate  # verified against the CA and 127.0.0.1


async def test_config_without_client_tls_serves_plaintext_as_before(tmp_path: Path) -> None:
    async with (
        start_node(load_config(_write_config(tmp_path, client_tls=False))) as node,
        grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel,
    ):
        assert await _checkpoint_size(channel) > 0


async def test_client_tls_key_readable_by_others_is_refused_before_the_node_starts(
    tmp_path: Path, pki: Pki
) -> None:
    pki.key_path.chmod(0o644)
    config = load_config(_write_config(tmp_path, client_tls=True))
    with pytest.raises(ConfigError, match="chmod 600") as refused:
        async with start_node(config):
            pytest.fail("the node started with a key file others can read")
    assert str(pki.key_path) in str(refused.value)
    assert refused.value.key == "client_tls.key"
    # Refused before it touched anything: no database, no log key.
    assert not (tmp_path / "kaifang.db").exists()
    assert not (tmp_path / "log.key").exists()


async def test_client_tls_key_of_another_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    ca_key, ca = create_ca("test CA")
    other = tmp_path / "other"
    other.mkdir()
    other_key, _ = _write_identity(other, ca_key, ca)
    pki.key_path.write_bytes(other_key.read_bytes())
    config = load_config(_write_config(tmp_path, client_tls=True))
    with pytest.raises(ConfigError, match="is not the key of the certificate") as refused:
        async with start_node(config):
            pytest.fail("the node started with a key that is not its certificate's")
    assert refused.value.key == "client_tls.key"


# -- init_network ----------------------------------------------------------


def test_init_network_leaves_the_client_port_plaintext_by_default(tmp_path: Path) -> None:
    init_network(tmp_path / "net", ["solo"])
    assert load_config(tmp_path / "net" / "solo" / "kaifang.toml").client_tls is None


async def test_member_from_init_network_with_client_tls_serves_clients_over_tls(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "net"
    init_network(directory, ["solo"], client_tls=True)
    config = load_config(directory / "solo" / "kaifang.toml")
    assert config.client_tls == ClientTls(
        key=directory / "solo" / "tls.key", certificate=directory / "solo" / "tls.pem"
    )
    assert config.federation is not None
    # Port 0 instead of the network's fixed ports, which another test may hold.
    config = dataclasses.replace(
        config,
        listen="127.0.0.1:0",
        federation=dataclasses.replace(config.federation, listen="127.0.0.1:0"),
    )
    ca_pem = (directory / "ca" / "ca.pem").read_bytes()
    async with start_node(config) as node:
        async with _tls_channel(node.port, ca_pem) as channel:
            assert await _checkpoint_size(channel) > 0
        async with _tls_channel(node.port, ca_pem, name="solo") as channel:
            assert await _checkpoint_size(channel) > 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
            assert (await _health_error(channel)).code() == grpc.StatusCode.UNAVAILABLE
