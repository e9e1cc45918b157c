"""Resource limits on a real node: message size, batch sizes, open streams per caller, stalls.

One node for the module, a member of a network, whose own log is grown to
a few MiB (parties registered under 4,000-character names), so that a
reader that stops reading really does stall the stream it holds: gRPC's
flow control then holds the node's next message back, and the handler waits
in its write.

- A message over :data:`~exchange.limits.MAX_MESSAGE_BYTES` is refused
  RESOURCE_EXHAUSTED by gRPC itself, at every RPC of the three services,
  with nothing written and the node still serving.
- Batches over the caps are refused, at the cap accepted.
- The (N+1)th concurrent stream of one caller is refused RESOURCE_EXHAUSTED
  (``TOO_MANY_STREAMS``, a ``QuotaFailure`` and a ``RetryInfo``), for
  ``WatchOffers`` and ``GetEntries`` per client address and for
  ``StreamEntries`` per calling member; once one closes, a new one is
  accepted.
- With every such slot held by a stalled stream, other callers' unary
  calls (reads and admissions) still complete promptly.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from exchange import limits, node
from exchange.network import TlsIdentity, channel_credentials, channel_options
from exchange.sample import generate
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from kaifang.federation.v1 import federation_pb2 as fed
from kaifang.federation.v1 import federation_pb2_grpc as fed_grpc
from kaifang.ledger.v1 import ledger_pb2 as lg
from kaifang.ledger.v1 import ledger_pb2_grpc as lg_grpc
from ledger.rpc import StreamLimiter, TooManyStreamsError, caller_host
from ledger.service import MAX_BATCH, MAX_ENTRY_STREAMS_PER_CLIENT
from tests.exchange import story
from tests.hostile.harness import (
    DEADLINE_S,
    ORIGIN,
    PEER,
    Target,
    call_stream,
    call_unary,
    target,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Parties registered under long names to grow the log: ~12 KiB an entry.
BIG_PARTIES = 300
# How long a freed slot may take to be seen free (the node notices the
# client's cancellation asynchronously).
RELEASE_S = 10.0


async def _grow(t: Target) -> None:
    """Register :data:`BIG_PARTIES` parties with 4,000-character names (a few MiB of log)."""
    sample = generate(89, parties=BIG_PARTIES, patents=0)
    signed = []
    for party in sample.parties:
        registration = pb.PartyRegistered()
        registration.CopyFrom(party.registration)
        registration.name = "长" * 4000
        signed.append(
            story.signed(pb.Statement(party_registered=registration), (party.party_id, party))
        )
    for i in range(0, len(signed), 100):
        response = await t.stub.SubmitStatements(
            api.SubmitStatementsRequest(signed=signed[i : i + 100]), timeout=60
        )
        assert all(o.WhichOneof("result") == "submitted" for o in response.outcomes)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def big(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    async with target(tmp_path_factory.mktemp("limits") / "net") as found:
        await _grow(found)
        yield found


# A channel of its own (its own connection, not one shared with other
# channels to the same address), whose reader stalls cheaply: no
# bandwidth-delay probing, which would grow its receive window to megabytes,
# and 64 KiB of lookahead per stream.
STALLING: list[tuple[str, Any]] = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 65_536),
]


def _peer_channel(t: Target, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A mutual-TLS channel to the node's federation port, as member ``b``.

    ``options`` are added to (and, by name, replace) those members dial with.
    """
    member = t.network.member(ORIGIN)
    identity = TlsIdentity.load(t.directory / PEER / "tls.key", t.directory / PEER / "tls.pem")
    replaced = {name for name, _ in options}
    kept = [(name, value) for name, value in channel_options(member) if name not in replaced]
    return grpc.aio.secure_channel(
        member.address, channel_credentials(t.network, identity), options=[*kept, *options]
    )


def _client_channel(t: Target, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{t.node.port}", options=list(options))


# -- message size -------------------------------------------------------------


CLIENT_RPCS = [
    *(f"/kaifang.exchange.v1.ExchangeService/{m}" for m in (
        "SubmitStatement", "SubmitStatements", "GetPatent", "GetOffer", "SearchOffers",
        "WatchOffers", "ListLicences", "GetCreditRecord", "GetHistory", "GetStatistics",
    )),
    *(f"/kaifang.ledger.v1.LedgerService/{m}" for m in (
        "GetCheckpoint", "GetEntries", "GetInclusionProof", "GetConsistencyProof", "GetReceipt",
    )),
]  # fmt: skip
PEER_RPCS = [
    f"/kaifang.federation.v1.FederationService/{m}"
    for m in (
        "GetHeads", "StreamEntries", "GetInclusionProof", "GetConsistencyProof",
        "ForwardStatement", "AddCheckpoint", "ListForkEvidence",
    )
]  # fmt: skip
STREAMING = {"WatchOffers", "GetEntries", "StreamEntries"}


@pytest.mark.parametrize("method", CLIENT_RPCS + PEER_RPCS, ids=lambda m: m.rsplit(".", 1)[1])
async def test_a_message_over_the_size_limit_is_refused_at_every_rpc_and_writes_nothing(
    big: Target, method: str
) -> None:
    # A length-delimited field announcing the whole body: gRPC counts bytes
    # before anything decodes them.
    payload = b"\x0a" + b"\xff\xff\xff\x01" + b"\x00" * limits.MAX_MESSAGE_BYTES
    # The sending side must not refuse first: no send limit on this client.
    unlimited = [("grpc.max_send_message_length", -1)]
    peer = method.startswith("/kaifang.federation")
    mark, size = big.mark(), await big.size()
    async with _peer_channel(big, unlimited) if peer else _client_channel(big) as channel:
        if method.rsplit("/", 1)[1] in STREAMING:
            answer = await call_stream(channel, method, payload, idle_s=DEADLINE_S)
        else:
            answer = await call_unary(channel, method, payload)
    assert answer.code == grpc.StatusCode.RESOURCE_EXHAUSTED, answer
    # Refused by the node's gRPC on receipt, before any of the node's code ran.
    assert "Received message larger than max" in answer.details, answer.details
    assert str(limits.MAX_MESSAGE_BYTES) in answer.details
    assert not big.writes(mark)
    assert await big.size() == size
    await big.healthy()


async def test_the_message_size_limit_is_the_one_peers_and_clients_dial_with() -> None:
    from exchange import network

    assert network.MAX_MESSAGE_BYTES == limits.MAX_MESSAGE_BYTES
    assert ("grpc.max_receive_message_length", limits.MAX_MESSAGE_BYTES) in limits.SERVER_OPTIONS


# -- batch sizes --------------------------------------------------------------


async def test_the_batch_cap_is_the_one_the_exchange_admits_by() -> None:
    assert node.MAX_SUBMIT_BATCH == limits.MAX_SUBMIT_BATCH


async def test_a_submission_batch_over_the_cap_is_refused_whole_and_at_the_cap_admitted(
    big: Target,
) -> None:
    # Copies of a statement the node holds: each is a duplicate, so a batch
    # at the cap is answered in full without writing.
    held = big.market.admitted[0]
    over = api.SubmitStatementsRequest(signed=[held] * (limits.MAX_SUBMIT_BATCH + 1))
    mark = big.mark()
    refused = await call_unary(
        big.channel, "/kaifang.exchange.v1.ExchangeService/SubmitStatements",
        over.SerializeToString(),
    )  # fmt: skip
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT, refused
    assert refused.metadata()["field"] == "signed"
    assert not big.writes(mark)
    at_cap = api.SubmitStatementsRequest(signed=[held] * limits.MAX_SUBMIT_BATCH)
    response = await big.stub.SubmitStatements(at_cap, timeout=DEADLINE_S)
    assert len(response.outcomes) == limits.MAX_SUBMIT_BATCH
    assert all(o.submitted.duplicate for o in response.outcomes)
    assert not big.writes(mark)


async def test_a_streamed_batch_over_the_cap_is_refused_and_at_the_cap_served(big: Target) -> None:
    stub = fed_grpc.FederationServiceStub(big.peer)
    over = fed.StreamEntriesRequest(origin=ORIGIN, max_batch=limits.MAX_STREAM_BATCH + 1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in stub.StreamEntries(over, timeout=DEADLINE_S):
            pass
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    at_cap = fed.StreamEntriesRequest(origin=ORIGIN, max_batch=limits.MAX_STREAM_BATCH)
    served = [b async for b in stub.StreamEntries(at_cap, timeout=DEADLINE_S)]
    assert sum(len(b.entries) for b in served) == await big.size()


async def test_an_entries_batch_over_the_cap_is_refused(big: Target) -> None:
    stub = lg_grpc.LedgerServiceStub(big.channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in stub.GetEntries(lg.GetEntriesRequest(batch_size=MAX_BATCH + 1)):
            pass
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- open streams per caller ---------------------------------------------------


Start = Callable[[], Any]


async def _first(call: Any) -> Any:
    """The stream's first response: it was accepted (a refusal raises AioRpcError)."""
    response = await asyncio.wait_for(call.read(), DEADLINE_S)
    assert response is not grpc.aio.EOF, "the stream ended at once"  # type: ignore[attr-defined]
    return response


async def _accepted(start: Start) -> Any:
    """Open a stream with ``start``; while refused TOO_MANY_STREAMS (a slot given back
    late by a stream just closed), try again, for at most :data:`RELEASE_S`."""
    deadline = time.monotonic() + RELEASE_S
    while True:
        call = start()
        try:
            await _first(call)
            return call
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


def _check_too_many(error: grpc.aio.AioRpcError, limit: int) -> None:
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info, quota, retry = (
        error_details_pb2.ErrorInfo(), error_details_pb2.QuotaFailure(),
        error_details_pb2.RetryInfo(),
    )  # fmt: skip
    assert status.details[0].Unpack(info)
    assert info.reason == "TOO_MANY_STREAMS"
    assert info.metadata["limit"] == str(limit)
    assert any(d.Unpack(quota) for d in status.details)
    assert f"at most {limit}" in quota.violations[0].description
    assert any(d.Unpack(retry) for d in status.details)
    assert retry.retry_delay.seconds > 0


async def _cap_holds(t: Target, start: Start, limit: int) -> None:
    """``limit`` streams are accepted, one more is refused, and one closed frees its slot."""
    calls = [await _accepted(start) for _ in range(limit)]
    try:
        mark = t.mark()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _first(start())
        _check_too_many(refused.value, limit)
        assert not t.writes(mark)
        calls.pop(0).cancel()
        calls.append(await _accepted(start))
    finally:
        for call in calls:
            call.cancel()


async def test_a_client_may_hold_so_many_watches_and_one_more_once_one_closes(big: Target) -> None:
    stub = exchange_pb2_grpc.ExchangeServiceStub(big.channel)
    # From the first cursor: the market's offers are sent at once.
    await _cap_holds(
        big, lambda: stub.WatchOffers(api.WatchOffersRequest()), limits.MAX_WATCHES_PER_CLIENT
    )


async def test_a_client_may_hold_so_many_entry_streams_and_one_more_once_one_closes(
    big: Target,
) -> None:
    async with _client_channel(big, STALLING) as channel:
        stub = lg_grpc.LedgerServiceStub(channel)
        await _cap_holds(
            big, lambda: stub.GetEntries(lg.GetEntriesRequest()), MAX_ENTRY_STREAMS_PER_CLIENT
        )


async def test_a_member_may_hold_so_many_entry_streams_and_one_more_once_one_closes(
    big: Target,
) -> None:
    limit = limits.max_streams_per_member(len(big.network.members))
    async with _peer_channel(big, STALLING) as channel:
        stub = fed_grpc.FederationServiceStub(channel)
        request = fed.StreamEntriesRequest(origin=ORIGIN, follow=True)
        await _cap_holds(big, lambda: stub.StreamEntries(request), limit)


async def test_stream_caps_leave_room_for_every_member_to_follow_every_origin() -> None:
    for members in (2, 3, 10, 40):
        # One follow per other origin, with a reconnect overlapping each.
        assert limits.max_streams_per_member(members) >= 2 * (members - 1)


# -- stalled callers do not starve the others ----------------------------------


async def test_stalled_streams_in_every_slot_do_not_slow_other_callers(big: Target) -> None:
    calls: list[Any] = []
    channels: list[grpc.aio.Channel] = []

    def stalling(make: Callable[..., grpc.aio.Channel]) -> grpc.aio.Channel:
        channel = make(big, STALLING)
        channels.append(channel)
        return channel

    try:
        # Every slot a stalled reader can take, each on a connection of its own:
        # watches and entry streams of this address, follow streams of member b.
        for _ in range(limits.MAX_WATCHES_PER_CLIENT):
            watch = exchange_pb2_grpc.ExchangeServiceStub(stalling(_client_channel)).WatchOffers
            calls.append(await _accepted(functools.partial(watch, api.WatchOffersRequest())))
        for _ in range(MAX_ENTRY_STREAMS_PER_CLIENT):
            read = lg_grpc.LedgerServiceStub(stalling(_client_channel)).GetEntries
            calls.append(await _accepted(functools.partial(read, lg.GetEntriesRequest())))
        follow = fed.StreamEntriesRequest(origin=ORIGIN, follow=True)
        for _ in range(limits.max_streams_per_member(len(big.network.members))):
            stream = fed_grpc.FederationServiceStub(stalling(_peer_channel)).StreamEntries
            calls.append(await _accepted(functools.partial(stream, follow)))
        # None of them is read again from here on.

        latencies: list[float] = []

        async def timed(call: Awaitable[Any]) -> None:
            began = time.monotonic()
            await call
            latencies.append(time.monotonic() - began)

        m = big.market
        newcomers = generate(91, parties=10, patents=0).parties
        async with _client_channel(big) as other:
            stub = exchange_pb2_grpc.ExchangeServiceStub(other)
            ledger = lg_grpc.LedgerServiceStub(other)
            for i in range(30):
                number = m.offered.application_number
                await timed(stub.GetPatent(api.GetPatentRequest(application_number=number),
                                           timeout=5))  # fmt: skip
                await timed(ledger.GetCheckpoint(lg.GetCheckpointRequest(), timeout=5))
                if i < len(newcomers):
                    request = api.SubmitStatementRequest(signed=story.registration(newcomers[i]))
                    await timed(stub.SubmitStatement(request, timeout=5))
        # Every call finished within its 5 s deadline (else it raised); a
        # starved node would have timed them out. Typically each takes a few
        # milliseconds: the median bounds the lot with room for a loaded machine.
        assert statistics.median(latencies) < 0.5, sorted(latencies)[-5:]
        # And the stalled streams are still open: the node did not end them to cope.
        assert not any(call.done() for call in calls)
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close(None)


# -- the counting itself ---------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:203.0.113.7:51234", "203.0.113.7"),
        ("ipv6:[2001:db8::1]:51234", "2001:db8::1"),
        ("ipv6:[::1]:9", "::1"),
        ("unix:/run/kaifang.sock", "unix:/run/kaifang.sock"),
        ("", ""),
    ],
)
async def test_a_caller_is_known_by_its_address_without_the_port(peer: str, host: str) -> None:
    assert caller_host(peer) == host


async def test_a_limiter_caps_each_caller_and_all_of_them_and_forgets_a_caller_gone() -> None:
    limiter = StreamLimiter("test streams", per_caller=2, total=3)
    limiter.acquire("x")
    limiter.acquire("x")
    with pytest.raises(TooManyStreamsError) as own:
        limiter.acquire("x")
    assert (own.value.limit, own.value.in_all) == (2, False)
    limiter.acquire("y")
    with pytest.raises(TooManyStreamsError) as everyone:
        limiter.acquire("z")  # z holds none, but all three slots are taken
    assert (everyone.value.limit, everyone.value.in_all) == (3, True)
    for caller in ("x", "x", "y"):
        limiter.release(caller)
    assert limiter.open() == 0
    assert limiter._open == {}  # no entry kept per caller ever seen


async def test_a_held_slot_is_given_back_when_the_stream_fails() -> None:
    limiter = StreamLimiter("test streams", per_caller=1)
    with pytest.raises(RuntimeError), limiter.hold("x"):
        raise RuntimeError("the stream broke")
    with limiter.hold("x"):
        assert limiter.open("x") == 1
    assert limiter.open("x") == 0
