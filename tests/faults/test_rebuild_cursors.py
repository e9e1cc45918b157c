"""A watch of offers resumed across a rebuild of the views misses nothing and repeats nothing.

Found by the chaos run, since fixed: a node numbers offers (their watch
cursor, also the page token of a search) in the order it applies them,
which interleaves the logs as replication brings them, while ``kaifang
views rebuild`` applies the logs one after another. The rebuild used to
renumber the cursors, so a subscriber that resumed with the last cursor it
was given, as the API tells it to, was sent again an offer it had and never
sent one it had not.

Two nodes; ``b`` applies ``a``'s first offer, then its own, then ``a``'s
second; a subscriber at ``b`` has seen the first two when ``b`` is stopped
and its views rebuilt. A search by IPC class must find the same offers
after the rebuild as before: the IPC search keys are joined to the offers
by that same cursor.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clients.localnet import LocalNetwork
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from tests.exchange import story
from tests.faults.chaos import rebuild_views
from tests.federation.net import network_dir, seed, submit

QUIET_S = 3.0


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    network = LocalNetwork.create(network_dir(tmp_path), ["a", "b"])
    try:
        await network.start_all()
        yield network
    finally:
        await network.close()


async def _watched(net: LocalNetwork, at: str, after: int) -> list[api.Offer]:
    """The offers ``at`` streams after cursor ``after`` until it has been quiet for QUIET_S."""
    offers: list[api.Offer] = []
    async with net.client_channel(at) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        call = stub.WatchOffers(api.WatchOffersRequest(after_cursor=after))
        responses = aiter(call)
        try:
            while True:
                response = await asyncio.wait_for(anext(responses), QUIET_S)
                offers.append(response.offer)
        except (TimeoutError, StopAsyncIteration):
            pass
        finally:
            call.cancel()
    return offers


async def _three_offers(pair: LocalNetwork) -> list[bytes]:
    """``b`` applies ``a``'s first offer, then its own, then ``a``'s second; their ids."""
    at_a = await seed(pair, "a", 601)
    at_b = await seed(pair, "b", 602)
    await pair.wait_converged()
    first = story.offer(at_a.patents[0].application_number, [at_a.parties[0]])
    second = story.offer(at_b.patents[0].application_number, [at_b.parties[0]])
    third = story.offer(at_a.patents[1].application_number, [at_a.parties[0]])
    for home, offer in (("a", first), ("b", second), ("a", third)):
        await submit(pair, home, offer)
        await pair.wait_converged()
    return [statement_id(o.statement) for o in (first, second, third)]


async def _rebuild(pair: LocalNetwork, name: str) -> None:
    """Stop ``name``, rebuild its views, start it again."""
    assert await pair.stop(name) == 0
    assert await rebuild_views(pair.database_url(name)) == 0
    pair.start(name)
    await pair.wait_ready(name)


async def _found_by_ipc(net: LocalNetwork, at: str, prefix: str) -> list[bytes]:
    """The offers ``at`` finds under IPC ``prefix``, in the order it lists them."""
    async with net.client_channel(at) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        page = await stub.SearchOffers(
            api.SearchOffersRequest(ipc_prefix=prefix, page_size=100), timeout=30
        )
    return [o.offer_id for o in page.offers]


async def test_a_watch_resumed_after_a_rebuild_gets_exactly_the_offers_it_had_not_seen(
    pair: LocalNetwork,
) -> None:
    order = await _three_offers(pair)
    seen = await _watched(pair, "b", 0)
    assert [o.offer_id for o in seen] == order

    await _rebuild(pair, "b")

    resumed = await _watched(pair, "b", seen[1].cursor)
    assert [o.offer_id for o in resumed] == order[2:]


async def test_an_ipc_search_after_a_rebuild_finds_the_same_offers(pair: LocalNetwork) -> None:
    await _three_offers(pair)
    offers = await _watched(pair, "b", 0)
    # Each offer's main IPC symbol, and its class (three characters): a search
    # by either joins the IPC keys to the offers by their cursor.
    prefixes = sorted({p for o in offers for p in (o.ipc[0], o.ipc[0][:3])})
    before = {p: await _found_by_ipc(pair, "b", p) for p in prefixes}
    assert all(before.values())

    await _rebuild(pair, "b")

    after = {p: await _found_by_ipc(pair, "b", p) for p in prefixes}
    assert after == before
