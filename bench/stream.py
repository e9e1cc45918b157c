"""A bare gRPC server stream in a process of its own: the ``federation`` benchmark's baseline.

Run by :mod:`bench.federation` as::

    python -m bench.stream --payload FILE --network FILE --tls-key FILE --tls-cert FILE

It loads messages already serialized from ``FILE`` (each prefixed by its
length, 4 bytes big-endian; :func:`write_payload`) and serves one
server-streaming method that sends every caller all of them, in order. No
database, no proof, no protobuf encoding: a consumer measures what gRPC and
TLS alone cost to move those bytes. It uses the network's mutual TLS, the
credentials a member's federation endpoint uses (:mod:`exchange.network`),
listens on 127.0.0.1 on a free port, prints ``{"port": N}`` on stdout once
serving, and stops when its standard input closes.

:func:`consume` is the other end: concurrent consumers, each on a connection
of its own, that read the whole stream without parsing it, again and again
for a given time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from exchange.network import (
    Network,
    TlsIdentity,
    channel_credentials,
    channel_options,
    load_network,
    server_credentials,
)
from exchange.server import MAX_MESSAGE_BYTES

SERVICE = "kaifang.bench.v1.Stream"
METHOD = f"/{SERVICE}/Stream"
_LENGTH = struct.Struct(">I")


def write_payload(path: Path, messages: Iterable[bytes]) -> None:
    """Write ``messages`` to ``path``, each prefixed by its length."""
    with path.open("wb") as out:
        for message in messages:
            out.write(_LENGTH.pack(len(message)))
            out.write(message)


def read_payload(path: Path) -> list[bytes]:
    """The messages :func:`write_payload` wrote to ``path``."""
    data = path.read_bytes()
    messages = []
    position = 0
    while position < len(data):
        (length,) = _LENGTH.unpack_from(data, position)
        position += _LENGTH.size
        messages.append(data[position : position + length])
        position += length
    return messages


@dataclass(frozen=True)
class Consumed:
    """What the consumers received together, and in how long."""

    # Complete passes over the payload, all consumers together.
    passes: int
    messages: int
    payload_bytes: int
    seconds: float


async def consume(
    port: int,
    network: Network,
    server_name: str,
    identities: list[TlsIdentity],
    min_seconds: float,
) -> Consumed:
    """Read the whole stream once per identity, concurrently, each on a connection of its own.

    Each consumer calls again until ``min_seconds`` have passed, so that a
    small payload is still timed over a measurable span. ``server_name`` is
    the member whose certificate the server presents (TLS checks that name,
    as peers do); each consumer presents its identity.
    """
    options = [
        *channel_options(network.member(server_name)),
        # Each consumer a connection of its own, as each peer has: channels
        # with equal arguments otherwise share one.
        ("grpc.use_local_subchannel_pool", 1),
    ]
    channels = [
        grpc.aio.secure_channel(
            f"127.0.0.1:{port}", channel_credentials(network, identity), options=options
        )
        for identity in identities
    ]
    try:
        await asyncio.gather(*(c.channel_ready() for c in channels))
        start = time.perf_counter()
        deadline = start + min_seconds

        async def read(channel: grpc.aio.Channel) -> tuple[int, int, int]:
            passes = count = size = 0
            while passes == 0 or time.perf_counter() < deadline:
                # No (de)serializers: the consumer gets the raw bytes.
                call: Any = channel.unary_stream(METHOD, None, None)(b"")
                async for message in call:
                    count += 1
                    size += len(message)
                passes += 1
            return passes, count, size

        counts = await asyncio.gather(*(read(c) for c in channels))
        seconds = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.close(None) for c in channels))
    passes, messages, size = (sum(column) for column in zip(*counts, strict=True))
    return Consumed(passes, messages, size, seconds)


async def serve(messages: list[bytes], credentials: grpc.ServerCredentials) -> None:
    """Serve ``messages`` until standard input reaches end of file."""
    server = grpc.aio.server(
        options=[
            # The node's own server options (exchange.server).
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    )

    async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        for message in messages:
            yield message

    # No (de)serializers: the handler yields the raw bytes.
    handler = grpc.unary_stream_rpc_method_handler(stream)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler}),)
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print(json.dumps({"port": port}), flush=True)
    try:
        await stdin.read()
    finally:
        await server.stop(None)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, load the payload and serve it."""
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__)
    parser.add_argument("--payload", required=True, type=Path, help="the messages to stream")
    parser.add_argument("--network", required=True, type=Path, help="the network file")
    parser.add_argument("--tls-key", required=True, type=Path, help="a member's TLS key")
    parser.add_argument("--tls-cert", required=True, type=Path, help="that member's certificate")
    args = parser.parse_args(argv)
    credentials = server_credentials(
        load_network(args.network), TlsIdentity.load(args.tls_key, args.tls_cert)
    )
    asyncio.run(serve(read_payload(args.payload), credentials))


if __name__ == "__main__":
    main()
