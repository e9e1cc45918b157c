"""Three exchanges in a full mesh, each a real process: publish once, reach every exchange.

An offer published at ``east`` is found by search and pushed to watchers at
``west`` and ``north``; a licensee at ``north`` accepts it there, the
acceptance is forwarded to ``east`` (the patent's home) and the licensee gets
east's receipt; the licence then shows on all three. Every node ends with
the same network digest, and a node that joins later with an empty database
catches up with all of it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients import audit
from clients.client import Client
from clients.commands import export_bundle
from clients.errors import BundleError
from clients.localnet import LocalNetwork
from exchange.network import NETWORK_FILE
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from ledger.note import Verifier
from ledger.receipt import verify_receipt
from tests.exchange import story
from tests.federation.net import eventually, network_dir, offer_visible, retried, seed, submit

MEMBERS = ("east", "west", "north", "late")


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    network = LocalNetwork.create(network_dir(tmp_path), MEMBERS)
    try:
        await network.start_all(MEMBERS[:3])
        yield network
    finally:
        await network.close()


async def _watch_one(net: LocalNetwork, at: str, ready: asyncio.Event) -> api.Offer:
    async with net.client_channel(at) as channel:
        call = exchange_pb2_grpc.ExchangeServiceStub(channel).WatchOffers(api.WatchOffersRequest())
        ready.set()
        response = await asyncio.wait_for(call.read(), 30)
        assert isinstance(response, api.WatchOffersResponse)
        call.cancel()
        return response.offer


async def test_an_offer_published_once_reaches_every_exchange_and_is_accepted_anywhere(
    net: LocalNetwork,
) -> None:
    sample = await seed(net, "east", 401)
    owner, licensee = sample.parties[0], sample.parties[1]
    number = sample.patents[0].application_number
    await net.wait_converged(MEMBERS[:3])

    ready = [asyncio.Event(), asyncio.Event()]
    watchers = [
        asyncio.create_task(_watch_one(net, at, flag))
        for at, flag in zip(("west", "north"), ready, strict=True)
    ]
    await asyncio.gather(*(flag.wait() for flag in ready))
    offer = story.offer(number, [owner])
    published = await submit(net, "east", offer)
    offer_id = statement_id(offer.statement)
    assert published.origin == "east"

    for watched in await asyncio.gather(*watchers):
        assert watched.offer_id == offer_id
        assert watched.application_number == number
    for at in ("west", "north"):
        await eventually(functools.partial(offer_visible, net, at, offer_id), what=f"offer at {at}")

    # Accepted at north; sequenced by east, the patent's home.
    accepted = await submit(net, "north", story.acceptance(offer_id, licensee))
    assert accepted.origin == "east"
    assert not accepted.duplicate
    verify_receipt(accepted.receipt, Verifier.from_vkey(net.network.member("east").vkey))

    async def licensed(at: str) -> bool:
        async with net.client_channel(at) as channel:
            stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
            found = await stub.ListLicences(api.ListLicencesRequest(application_number=number))
        return [lic.licensee for lic in found.licences] == [licensee.party_id]

    for at in ("east", "west", "north"):
        await eventually(functools.partial(licensed, at), what=f"licence at {at}")
    heads = await net.wait_converged(MEMBERS[:3])
    sizes = {h.origin: h.tree_size for h in heads.heads}
    assert sizes["east"] == published.index + 2  # the offer, then the acceptance

    # Cosigned by the two other running members as witnesses (asked at most
    # twice a second, so not necessarily yet).
    async def cosigned() -> bool:
        head = next(h for h in (await net.heads("east")).heads if h.origin == "east")
        lines = head.checkpoint.split("\n\n", 1)[1].splitlines()
        return head.tree_size == sizes["east"] and {line.split()[1] for line in lines} == {
            "east",
            "west",
            "north",
        }

    await eventually(cosigned, what="east's checkpoint cosigned by west and north")

    # A client of west, trusting the network file (witness policy: 2 of the
    # other members), asks for the patent's history: west replicates east's
    # log but not its cosignatures, so the client asks east, the home.
    network_file = net.directory / NETWORK_FILE
    async with Client.for_network(network_file, "west") as client:
        assert client.trust.min_cosignatures == 2
        history = await client.history(patent=number)
        assert history.origin == "east"
        assert set(history.witnessed.witnesses) == {"west", "north"}
        assert [e.index for e in history.entries][-2:] == [published.index, published.index + 1]
        # An audit bundle of it verifies under the same policy, and not without
        # its cosignatures.
        bundle = await export_bundle(client, ("patent", number))
    verified = audit.verify_bundle(bundle, min_cosignatures=2)
    assert set(verified.logs["east"].cosigned_by) == {"west", "north"}
    note = bundle["logs"]["east"]["checkpoint"]
    text, signatures = note.split("\n\n", 1)
    own = [line for line in signatures.splitlines() if line.split()[1] == "east"]
    stripped = {**bundle, "logs": {"east": {**bundle["logs"]["east"],
                                            "checkpoint": f"{text}\n\n{own[0]}\n"}}}  # fmt: skip
    with pytest.raises(BundleError, match="witness"):
        audit.verify_bundle(stripped, min_cosignatures=1)

    # A node joining with an empty database pulls and verifies everything.
    await net.start_all(["late"])
    await net.wait_converged(MEMBERS)
    assert await offer_visible(net, "late", offer_id)
    assert await licensed("late")


async def test_a_statement_for_an_unreachable_home_is_unavailable_with_retry_info(
    net: LocalNetwork,
) -> None:
    sample = await seed(net, "east", 402)
    owner = sample.parties[0]
    number = sample.patents[0].application_number
    await net.wait_converged(MEMBERS[:3])
    await net.stop("east")
    offer = story.offer(number, [owner])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await submit(net, "west", offer)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details)
    assert retry.retry_delay.ToMilliseconds() > 0
    # Nothing half-done: the statement is in no log, and once east is back
    # the retry is sequenced by east, once.
    heads = await net.heads("west")
    assert {h.origin: h.tree_size for h in heads.heads}["west"] == 0
    net.start("east")
    await net.wait_ready("east")
    done = await retried(lambda: submit(net, "west", offer))
    assert done.origin == "east"
    # north's link to east may still be in its reconnect backoff: a client retries.
    again = await retried(lambda: submit(net, "north", offer))
    assert again.duplicate
    assert again.index == done.index
    # north holds east's log: it answers with the receipt itself.
    verify_receipt(again.receipt, Verifier.from_vkey(net.network.member("east").vkey))
