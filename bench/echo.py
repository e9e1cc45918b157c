"""A bare gRPC echo service in a process of its own: the ``admission`` benchmark's baseline.

Run as ``python -m bench.echo``. Its one method returns the request bytes
unchanged (no protobuf decoding), so calling it costs what gRPC alone costs.
It listens on 127.0.0.1 on a free port, prints ``{"port": N}`` on stdout
once serving, and stops when its standard input closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc

from exchange.server import MAX_MESSAGE_BYTES

SERVICE = "kaifang.bench.v1.Echo"
METHOD = f"/{SERVICE}/Echo"


async def serve() -> None:
    """Serve until standard input reaches end of file."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    # No (de)serializers: the handler gets and returns the raw bytes.
    handler = grpc.unary_unary_rpc_method_handler(echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print(json.dumps({"port": port}), flush=True)
    try:
        await stdin.read()
    finally:
        await server.stop(None)


if __name__ == "__main__":
    asyncio.run(serve())
