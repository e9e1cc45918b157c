"""A watch of offers resumed across a rebuild of the views misses nothing and repeats nothing.

Found by the chaos run: a node numbers offers (their watch cursor, also the
page token of a search) in the order it applies them, which interleaves the
logs as replication brings them, while ``kaifang views rebuild`` applies
the logs one after another. Every other column of every view comes out of a
rebuild unchanged; the cursors are renumbered, so a subscriber that resumes
with the last cursor it was given, as the API tells it to, is sent again an
offer it had and never sent one it had not.

Two nodes; ``b`` applies ``a``'s first offer, then its own, then ``a``'s
second; a subscriber at ``b`` has seen the first two when ``b`` is stopped
and its views rebuilt.
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


async def test_a_watch_resumed_after_a_rebuild_gets_exactly_the_offers_it_had_not_seen(
    pair: LocalNetwork,
) -> None:
    at_a = await seed(pair, "a", 601)
    at_b = await seed(pair, "b", 602)
    await pair.wait_converged()
    first = story.offer(at_a.patents[0].application_number, [at_a.parties[0]])
    second = story.offer(at_b.patents[0].application_number, [at_b.parties[0]])
    third = story.offer(at_a.patents[1].application_number, [at_a.parties[0]])
    for home, offer in (("a", first), ("b", second), ("a", third)):
        await submit(pair, home, offer)
        await pair.wait_converged()
    order = [statement_id(o.statement) for o in (first, second, third)]
    seen = await _watched(pair, "b", 0)
    assert [o.offer_id for o in seen] == order

    assert await pair.stop("b") == 0
    url = pair.database_url("b")
    assert await rebuild_views(url) == 0
    pair.start("b")
    await pair.wait_ready("b")

    resumed = await _watched(pair, "b", seen[1].cursor)
    assert [o.offer_id for o in resumed] == order[2:]
