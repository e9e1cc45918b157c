"""The link proxy against an echo server: each fault does what it says, and heal undoes it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.faults.proxy import LinkProxy, LinkState, split_address

# Long enough that a byte that was going to get through would have.
QUIET_S = 0.3
# Bound on anything that should happen "at once" (a loaded machine is slow).
PROMPT_S = 5.0


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        yield f"{host}:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def proxy(echo: str) -> AsyncIterator[LinkProxy]:
    async with LinkProxy(echo, name="test") as link:
        yield link


class Dialled:
    """A client connection through the proxy."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def to(cls, address: str) -> Dialled:
        host, port = split_address(address)
        return cls(*await asyncio.open_connection(host, port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self, count: int, within_s: float = PROMPT_S) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(count), within_s)

    async def is_silent(self) -> bool:
        """Whether nothing arrives (and the connection stays open) for QUIET_S."""
        try:
            await asyncio.wait_for(self.reader.read(1), QUIET_S)
        except TimeoutError:
            return True
        except ConnectionError:
            return False
        return False  # a byte, or the end of the stream

    async def is_closed(self, within_s: float = PROMPT_S) -> bool:
        """Whether the proxy closes or resets the connection within ``within_s``."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), within_s)
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        return data == b""

    def close(self) -> None:
        self.writer.transport.abort()


@contextlib.asynccontextmanager
async def dial(address: str) -> AsyncIterator[Dialled]:
    connection = await Dialled.to(address)
    try:
        yield connection
    finally:
        connection.close()


async def test_an_open_link_relays_both_ways_and_counts_the_bytes(proxy: LinkProxy) -> None:
    async with dial(proxy.address) as c:
        await c.send(b"hello" * 1000)
        assert await c.receive(5000) == b"hello" * 1000
    assert proxy.stats.connections == 1
    assert proxy.stats.bytes_forwarded == 10000


async def test_a_cut_resets_open_connections_and_refuses_new_ones(proxy: LinkProxy) -> None:
    async with dial(proxy.address) as before:
        await before.send(b"x")
        assert await before.receive(1) == b"x"
        proxy.cut()
        assert proxy.state is LinkState.CUT
        assert await before.is_closed()
    async with dial(proxy.address) as during:
        assert await during.is_closed()
    proxy.heal()
    async with dial(proxy.address) as after:
        await after.send(b"y")
        assert await after.receive(1) == b"y"
    assert proxy.stats.resets >= 2


async def test_a_blackhole_holds_new_connections_silent_and_heal_resets_them(
    proxy: LinkProxy,
) -> None:
    proxy.cut(blackhole=True)
    async with dial(proxy.address) as held:
        await held.send(b"lost")
        assert await held.is_silent()
        assert proxy.open_connections == 1
        proxy.heal()
        assert await held.is_closed()
    async with dial(proxy.address) as after:
        await after.send(b"z")
        assert await after.receive(1) == b"z"


async def test_a_stall_forwards_nothing_until_healed_then_delivers_what_it_held(
    proxy: LinkProxy,
) -> None:
    async with dial(proxy.address) as c:
        await c.send(b"a")
        assert await c.receive(1) == b"a"
        proxy.stall()
        await c.send(b"held")
        assert await c.is_silent()
        async with dial(proxy.address) as new:
            await new.send(b"new")
            assert await new.is_silent()
            proxy.heal()
            assert await new.receive(3) == b"new"
        assert await c.receive(4) == b"held"


async def test_a_delay_holds_each_chunk_that_long_in_each_direction(proxy: LinkProxy) -> None:
    async with dial(proxy.address) as c:
        proxy.delay(0.25)
        started = time.monotonic()
        await c.send(b"slow")
        assert await c.receive(4) == b"slow"
        assert time.monotonic() - started >= 0.5  # there and back
        proxy.heal()
        assert proxy.delay_s == 0.0
        started = time.monotonic()
        await c.send(b"fast")
        assert await c.receive(4) == b"fast"
        assert time.monotonic() - started < 0.25


async def test_a_negative_delay_is_refused(proxy: LinkProxy) -> None:
    with pytest.raises(ValueError, match="-1"):
        proxy.delay(-1)


async def test_a_target_that_refuses_resets_the_connection() -> None:
    # A port that was free a moment ago: nothing listens there.
    probe = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with LinkProxy(f"127.0.0.1:{port}") as link, dial(link.address) as c:
        assert await c.is_closed()
    assert link.stats.resets == 1


async def test_a_proxy_without_a_target_resets_until_one_is_set(echo: str) -> None:
    async with LinkProxy() as link:
        async with dial(link.address) as c:
            assert await c.is_closed()
        link.target = echo
        async with dial(link.address) as c:
            await c.send(b"now")
            assert await c.receive(3) == b"now"


async def test_closing_the_proxy_resets_its_connections(echo: str) -> None:
    link = LinkProxy(echo)
    await link.start()
    async with dial(link.address) as c:
        await c.send(b"q")
        assert await c.receive(1) == b"q"
        await link.close()
        assert await c.is_closed()
    assert link.open_connections == 0


async def test_the_address_of_a_proxy_that_has_not_started_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = LinkProxy("127.0.0.1:1").address
