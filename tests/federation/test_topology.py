"""Partial meshes, partitions and crashes, with every node a real process.

- A line a–b–c–d: each node replicates only from its neighbours, yet an
  offer published at ``a`` is visible at ``d``: every log is relayed, and
  verified at each hop against its origin's signature.
- A partition: ``b`` stops while ``a`` and ``c`` publish; restarted, it
  converges to the same digest as everyone, with nothing applied twice.
- A crash: ``b`` is killed (SIGKILL) in the middle of catching up a large
  log; restarted, it resumes from its durable cursor and converges, its
  replica and views exactly as long as the origin's log.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clients.localnet import LocalNetwork
from exchange.sample import generate
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from tests.exchange import story
from tests.federation.net import eventually, network_dir, offer_visible, seed, submit, submit_all
from tests.pg import PostgresServer, create_database

_counter = itertools.count()


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    peers = {"a": ["b"], "b": ["a", "c"], "c": ["b", "d"], "d": ["c"]}
    network = LocalNetwork.create(network_dir(tmp_path), list(peers), peers=peers)
    try:
        await network.start_all()
        yield network
    finally:
        await network.close()


async def test_an_offer_published_at_one_end_of_a_line_is_visible_at_the_other(
    line: LocalNetwork,
) -> None:
    sample = await seed(line, "a", 501)
    offer = story.offer(sample.patents[0].application_number, [sample.parties[0]])
    await submit(line, "a", offer)
    await eventually(
        functools.partial(offer_visible, line, "d", statement_id(offer.statement)),
        what="the offer at d",
    )
    heads = await line.wait_converged()
    assert {h.origin: h.tree_size for h in heads.heads}["a"] == 6  # 3 parties, 2 patents, 1 offer


@pytest.fixture(params=["sqlite", "postgresql"])
async def trio(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    """Three nodes; ``b``, the one stopped and killed, on each engine in turn."""
    databases = {}
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("pg_server")
        databases["b"] = await create_database(server, f"fed{os.getpid()}_{next(_counter)}")
    network = LocalNetwork.create(network_dir(tmp_path), ["a", "b", "c"], databases=databases)
    try:
        await network.start_all()
        yield network
    finally:
        await network.close()


async def _offer_ids(net: LocalNetwork, at: str) -> list[bytes]:
    """Every offer ``at`` lists, through every page."""
    ids: list[bytes] = []
    token = ""
    async with net.client_channel(at) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        while True:
            page = await stub.SearchOffers(
                api.SearchOffersRequest(page_size=500, page_token=token), timeout=30
            )
            ids += [o.offer_id for o in page.offers]
            token = page.next_page_token
            if not token:
                return ids


async def test_a_node_back_from_a_partition_converges_without_duplicates(
    trio: LocalNetwork,
) -> None:
    at_a = await seed(trio, "a", 511)
    at_c = await seed(trio, "c", 512)
    await trio.wait_converged()
    assert await trio.stop("b") == 0
    offers = [story.offer(at_a.patents[i].application_number, [at_a.parties[0]]) for i in (0, 1)]
    offers += [story.offer(at_c.patents[i].application_number, [at_c.parties[0]]) for i in (0, 1)]
    for signed, home in zip(offers, ("a", "a", "c", "c"), strict=True):
        await submit(trio, home, signed)
    trio.start("b")
    await trio.wait_ready("b")
    heads = await trio.wait_converged()
    assert {h.origin: h.tree_size for h in heads.heads} == {"a": 7, "b": 0, "c": 7}
    expected = sorted(statement_id(o.statement) for o in offers)
    for node in ("a", "b", "c"):
        assert sorted(await _offer_ids(trio, node)) == expected


async def test_a_node_killed_while_catching_up_resumes_from_its_cursor(trio: LocalNetwork) -> None:
    await trio.wait_converged()
    assert await trio.stop("b") == 0
    # A log long enough that catching it up takes a while: party registrations.
    sample = generate(521, parties=12000, patents=0)
    statements = [story.registration(p) for p in sample.parties]
    for start in range(0, len(statements), 1000):
        await submit_all(trio, "a", statements[start : start + 1000])
    total = len(statements)

    trio.start("b")
    held = 0

    async def partly_caught_up() -> bool:
        nonlocal held
        try:
            heads = await trio.heads("b")
        except Exception:  # still starting
            return False
        held = next((h.entries_held for h in heads.heads if h.origin == "a"), 0)
        return held > 0

    await eventually(partly_caught_up, within_s=60, what="b replicating a")
    await trio.kill("b")
    assert 0 < held < total, f"b held {held} of {total} entries when killed"

    trio.start("b")
    await trio.wait_ready("b")
    heads = await trio.wait_converged()
    a_head = next(h for h in heads.heads if h.origin == "a")
    assert a_head.tree_size == a_head.entries_held == total
    # The views applied every entry exactly once: every party is known at b.
    async with trio.client_channel("b") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        stats = await stub.GetStatistics(api.GetStatisticsRequest(), timeout=30)
    assert sum(row.count for row in stats.rows if row.kind == "party_registered") == total
