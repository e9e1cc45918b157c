"""A loopback TCP proxy for one directed link, which breaks the link on command.

In a fault test every node dials every peer through a proxy of its own
(``[federation] dial``), so that the link from A to B can fail while the
link from B to A works, as real networks fail. The proxy relays bytes
blindly (TLS passes through it end to end) and, on command:

- :meth:`LinkProxy.cut` resets every open connection and every new one
  (the peer's port refuses), or, with ``blackhole=True``, holds new ones
  open and silent (the peer's packets vanish) until :meth:`~LinkProxy.heal`
  resets them;
- :meth:`LinkProxy.stall` keeps connections open and forwards nothing
  either way; new connections are accepted and held. Bytes already read are
  delivered once healed, as TCP would retransmit them after a partition;
- :meth:`LinkProxy.delay` delivers every chunk ``seconds`` after it was
  read, in order (latency, not a bandwidth limit);
- :meth:`LinkProxy.heal` forwards normally again, at once.

Resets use ``SO_LINGER`` 0, so each side sees a connection reset, not an
orderly close. A connection whose target refuses is reset too. Everything
runs on the caller's event loop; no threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from dataclasses import dataclass

# Bytes read per chunk; also the granularity of a delay.
CHUNK = 64 * 1024
# Chunks buffered per direction before the proxy stops reading (backpressure):
# a stalled or delayed link holds at most this much in memory.
QUEUE_CHUNKS = 64
# Seconds to connect to the target before the client's connection is reset.
CONNECT_TIMEOUT_S = 5.0


class LinkState(enum.Enum):
    """What a link does with connections and bytes."""

    OPEN = "open"
    CUT = "cut"
    BLACKHOLE = "blackhole"
    STALLED = "stalled"


@dataclass
class LinkStats:
    """What went through one proxy since it started."""

    connections: int = 0  # accepted from the dialling side
    resets: int = 0  # connections the proxy reset (cut, refused target, errors)
    bytes_forwarded: int = 0  # both directions


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) as a (host, port) pair."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _Connection:
    """One accepted connection and, once dialled, its connection to the target."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.client = writer
        self.upstream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = asyncio.current_task()
        self.closed = False

    def reset(self) -> None:
        """Reset both sides and stop relaying."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                _abort(writer)
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    def close(self) -> None:
        """Close both sides in an orderly way (the relay ended)."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Linger 0: close() sends RST, so the far side sees a reset at once.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class LinkProxy:
    """A TCP proxy on 127.0.0.1 for one directed link, forwarding to ``target``.

    ``target`` (host:port) may be set after the proxy has started, so that a
    proxy's port can be chosen before the address it serves is known; until
    then connections are reset. Use as an async context manager, or call
    :meth:`start` and :meth:`close`.
    """

    def __init__(self, target: str | None = None, *, name: str = "") -> None:
        """A proxy to ``target``; ``name`` only labels it (e.g. ``"a->b"``)."""
        self.target = target
        self.name = name
        self.stats = LinkStats()
        self._state = LinkState.OPEN
        self._delay_s = 0.0
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._changed = asyncio.Event()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0: a free port)."""
        self._server = await asyncio.start_server(self._accept, host, port)

    async def __aenter__(self) -> LinkProxy:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def address(self) -> str:
        """Where the proxy listens, as host:port."""
        if self._server is None:
            raise RuntimeError("the proxy has not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    @property
    def state(self) -> LinkState:
        """What the link does now."""
        return self._state

    @property
    def delay_s(self) -> float:
        """Seconds each chunk is held before it is delivered."""
        return self._delay_s

    @property
    def open_connections(self) -> int:
        """Connections being relayed or held right now."""
        return len(self._connections)

    # -- faults -------------------------------------------------------------

    def cut(self, *, blackhole: bool = False) -> None:
        """Reset every connection; reset new ones too, or hold them silent (``blackhole``)."""
        self._set(LinkState.BLACKHOLE if blackhole else LinkState.CUT)
        self._reset_all()

    def stall(self) -> None:
        """Forward nothing, either way, on any connection, until healed."""
        self._set(LinkState.STALLED)

    def delay(self, seconds: float) -> None:
        """Deliver each chunk read from now on ``seconds`` later (the link stays up).

        Requires ``seconds >= 0``.
        """
        if seconds < 0:
            raise ValueError(f"a delay of {seconds} s")
        self._delay_s = seconds

    def heal(self) -> None:
        """Forward normally again: no cut, no stall, no delay.

        Connections held by a blackhole were never relayed: they are reset, so
        their clients dial again. Stalled bytes flow on.
        """
        held = self._state is LinkState.BLACKHOLE
        self._delay_s = 0.0
        self._set(LinkState.OPEN)
        if held:
            self._reset_all()

    async def close(self) -> None:
        """Stop listening and reset every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._reset_all()
        # Let the cancelled relays run their cleanup before the loop goes.
        await asyncio.sleep(0)

    # -- relaying -------------------------------------------------------------

    def _set(self, state: LinkState) -> None:
        self._state = state
        if state is LinkState.STALLED:
            self._flowing.clear()
        else:
            self._flowing.set()
        self._changed.set()
        self._changed = asyncio.Event()

    def _reset_all(self) -> None:
        for connection in list(self._connections):
            self.stats.resets += not connection.closed
            connection.reset()
        self._connections.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        connection = _Connection(writer)
        self._connections.add(connection)
        try:
            await self._serve(connection, reader)
        except asyncio.CancelledError:
            # Reset by a cut (or by close): the relay ends here, not the loop.
            connection.reset()
        except (OSError, asyncio.IncompleteReadError):
            self.stats.resets += not connection.closed
            connection.reset()
        finally:
            self._connections.discard(connection)

    async def _serve(self, connection: _Connection, reader: asyncio.StreamReader) -> None:
        while self._state is LinkState.BLACKHOLE:
            await self._changed.wait()
        if self._state is LinkState.CUT or self.target is None:
            self.stats.resets += 1
            connection.reset()
            return
        # A stalled link lets nothing through, not even the connection.
        await self._flowing.wait()
        host, port = split_address(self.target)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            self.stats.resets += 1
            connection.reset()
            return
        connection.upstream = up_writer
        if connection.closed:  # cut while connecting
            _abort(up_writer)
            return
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, connection.client)),
        ]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            failed = [t for t in done if t.exception() is not None]
            if failed:
                self.stats.resets += 1
                connection.reset()
            else:
                connection.close()
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Relay one direction, through a queue that a stall holds and a delay times.

        Raises the source's or the sink's error (the caller resets both sides).
        """
        loop = asyncio.get_running_loop()
        # (when due, chunk); b"" is the end of the stream, an exception the source's error.
        queue: asyncio.Queue[tuple[float, bytes | Exception]] = asyncio.Queue(QUEUE_CHUNKS)

        async def read() -> None:
            while True:
                try:
                    data: bytes | Exception = await source.read(CHUNK)
                except OSError as e:
                    data = e
                await queue.put((loop.time() + self._delay_s, data))
                if not isinstance(data, bytes) or not data:
                    return

        reading = asyncio.create_task(read())
        try:
            while True:
                due, data = await queue.get()
                await self._flowing.wait()
                await asyncio.sleep(max(0.0, due - loop.time()))
                # A stall that began during the delay holds this chunk too.
                await self._flowing.wait()
                if isinstance(data, Exception):
                    raise data
                if not data:
                    if sink.can_write_eof():
                        sink.write_eof()
                    return
                sink.write(data)
                await sink.drain()
                self.stats.bytes_forwarded += len(data)
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
