"""TLS 1.2 or later only: the federation port (and a TLS client port) refuse older handshakes.

Two ways in, so that the test does not depend on what the local OpenSSL
still agrees to speak:

- a hand-written TLS 1.1 ClientHello on a bare socket (legacy version
  0x0302, TLS 1.0/1.1 cipher suites, no ``supported_versions``): the node
  must end the connection (gRPC's TLS stack closes it without an alert; a
  fatal ``protocol_version`` alert would do too), never answer a
  ServerHello, while the same hello as TLS 1.2 is answered with one;
- Python's :mod:`ssl` with ``maximum_version = TLSv1_1``: the handshake must
  fail, whether the node refuses it or the local OpenSSL refuses even to
  try (its security level may forbid TLS 1.1; the test then records which).

And the same port accepts TLS 1.2 and TLS 1.3 handshakes from a member.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import ssl
import struct
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from exchange.config import load_config
from exchange.network import init_network
from exchange.server import RunningNode, start_node

pytestmark = pytest.mark.asyncio(loop_scope="module")

TIMEOUT_S = 10.0
# TLS record content types and alert descriptions (RFC 5246 §6.2.1, §7.2).
HANDSHAKE, ALERT = 22, 21
FATAL, PROTOCOL_VERSION = 2, 70


@dataclasses.dataclass(frozen=True)
class Ports:
    """A member's federation port (mutual TLS) and its client port (TLS too here)."""

    federation: int
    client: int
    directory: Path  # the network's


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ports]:
    directory = tmp_path_factory.mktemp("tls") / "net"
    init_network(directory, ["a", "b"], client_tls=True)
    config = load_config(directory / "a" / "kaifang.toml")
    assert config.federation is not None
    config = dataclasses.replace(
        config,
        listen="127.0.0.1:0",
        federation=dataclasses.replace(config.federation, listen="127.0.0.1:0"),
    )
    running: RunningNode
    async with start_node(config) as running:
        assert running.peer_port is not None
        yield Ports(running.peer_port, running.port, directory)


# Cipher suites an old client offers (TLS 1.0/1.1: CBC with SHA-1), and one a
# TLS 1.2 client offers that the node's ECDSA certificate can serve.
OLD_SUITES = [0xC009, 0xC00A, 0xC013, 0x002F]  # ECDHE_ECDSA/RSA_AES_CBC_SHA, RSA_AES_128_CBC_SHA
TLS12_SUITES = [0xC02B]  # ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
TLS11, TLS12 = 0x0302, 0x0303


def _client_hello(version: int, suites: list[int]) -> bytes:
    """A ClientHello record of ``version`` (no ``supported_versions``: nothing later offered)."""
    extensions = b"".join(
        [
            struct.pack("!HHHH", 0x000A, 4, 2, 0x0017),  # supported_groups: secp256r1
            struct.pack("!HHBB", 0x000B, 2, 1, 0),  # ec_point_formats: uncompressed
            # signature_algorithms: ecdsa_secp256r1_sha256 (ignored before TLS 1.2)
            struct.pack("!HHHH", 0x000D, 4, 2, 0x0403),
        ]
    )
    body = b"".join(
        [
            struct.pack("!H", version),
            os.urandom(32),
            b"\x00",  # no session id
            struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites),
            b"\x01\x00",  # compression: null only
            struct.pack("!H", len(extensions)) + extensions,
        ]
    )
    handshake = struct.pack("!B", 1) + len(body).to_bytes(3, "big") + body
    return struct.pack("!BHH", HANDSHAKE, 0x0301, len(handshake)) + handshake


def _answer_to_hello(port: int, hello: bytes) -> bytes:
    """Send ``hello`` to ``port``; return what comes back before the node stops (or 7 bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw:
        raw.sendall(hello)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while len(received) < 7:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                received += chunk
    return received


@pytest.mark.parametrize("port", ["federation", "client"])
async def test_a_tls_1_1_client_hello_is_refused_where_a_tls_1_2_one_is_answered(
    node: Ports, port: str
) -> None:
    number = getattr(node, port)
    # The control: the same hand-made hello, as TLS 1.2, gets a ServerHello.
    modern = await asyncio.to_thread(_answer_to_hello, number, _client_hello(TLS12, TLS12_SUITES))
    assert modern[:1] == bytes([HANDSHAKE]), modern
    assert modern[5] == 2, modern  # a ServerHello
    old = await asyncio.to_thread(_answer_to_hello, number, _client_hello(TLS11, OLD_SUITES))
    # No handshake: the node's TLS stack ends the connection, at most with a
    # fatal protocol_version alert first (gRPC's closes without one).
    assert old[:1] != bytes([HANDSHAKE]), old
    if old:
        assert struct.unpack("!BHH", old[:5])[::2] == (ALERT, 2), old
        assert (old[5], old[6]) == (FATAL, PROTOCOL_VERSION), old


@contextlib.contextmanager
def _tls_context(
    directory: Path, low: ssl.TLSVersion, high: ssl.TLSVersion
) -> Iterator[ssl.SSLContext]:
    # TLS 1.0 and 1.1 are deprecated in Python's ssl; naming them here is the point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = low
        context.maximum_version = high
    context.load_verify_locations(cafile=directory / "ca" / "ca.pem")
    context.load_cert_chain(directory / "b" / "tls.pem", directory / "b" / "tls.key")
    context.set_alpn_protocols(["h2"])
    if high < ssl.TLSVersion.TLSv1_2:
        # Let the local OpenSSL offer what an old client would, if it still can.
        with contextlib.suppress(ssl.SSLError):
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
    yield context


def _handshake(port: int, context: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname="a") as tls,
    ):
        return tls.version()


def _old_versions() -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1


async def test_pythons_tls_1_1_handshake_with_the_federation_port_fails(node: Ports) -> None:
    low, high = _old_versions()
    with (
        _tls_context(node.directory, low, high) as context,
        pytest.raises(ssl.SSLError) as failed,
    ):
        await asyncio.to_thread(_handshake, node.federation, context)
    # The node ends the connection (EOF) or alerts protocol_version; or the
    # local OpenSSL would not offer TLS 1.1 at all (its security level), and
    # then the hand-made hello above is what shows the node's refusal.
    assert failed.value.reason in (
        "UNEXPECTED_EOF_WHILE_READING", "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE",
    ), failed.value  # fmt: skip


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"]
)
async def test_the_federation_port_accepts_tls_1_2_and_1_3_from_a_member(
    node: Ports, version: ssl.TLSVersion
) -> None:
    with _tls_context(node.directory, version, version) as context:
        negotiated = await asyncio.to_thread(_handshake, node.federation, context)
    assert (
        negotiated
        == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    )
