"""The exchange's queries over real gRPC, on both engines.

A small market is built through the real admission path (parties, patents
in different fields and regions, offers on different terms, acceptances, a
withdrawal, a pledge, a supervisor's credit event), then every query is
asked and its answer checked against what was submitted: patents with
their encumbrances, offers, search with each filter and AIP-158 pagination,
the watch stream resumed after a disconnect, licences, credit records,
histories verified against a signed checkpoint, and statistics.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from exchange.config import NodeConfig
from exchange.sample import SampleParty, generate
from exchange.server import RunningNode, start_node
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.checkpoint import open_checkpoint
from ledger.keys import load_key_file
from ledger.merkle import leaf_hash, verify_inclusion
from tests.conftest import ORIGIN
from tests.exchange import story


@dataclass
class Market:
    node: RunningNode
    stub: exchange_pb2_grpc.ExchangeServiceAsyncStub
    parties: list[SampleParty]
    patents: list[pb.PatentRecorded]
    offers: list[bytes]  # offer ids, patent i's offer at i

    async def submit(self, *signed: pb.SignedStatement) -> list[api.SubmitStatementResponse]:
        response = await self.stub.SubmitStatements(api.SubmitStatementsRequest(signed=signed))
        for outcome in response.outcomes:
            assert outcome.WhichOneof("result") == "submitted", outcome
        return [o.submitted for o in response.outcomes]


TERMS = [
    story.CNY_20K,
    pb.RoyaltyTerms(running=pb.RunningRoyalty(basis=pb.ROYALTY_BASIS_SALES, rate_basis_points=300)),
    pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=90_000_000, currency="CNY")),
    pb.RoyaltyTerms(free=pb.Free()),
]


@pytest.fixture
async def market(db_url: str, tmp_path: Path) -> AsyncIterator[Market]:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )
    async with (
        start_node(config) as node,
        grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel,
    ):
        sample = generate(41, parties=6, patents=4)
        register = load_key_file(tmp_path / "register.key")
        operator = load_key_file(tmp_path / "operator.key")
        owner = sample.parties[0]
        patents = list(sample.patents)
        m = Market(node, exchange_pb2_grpc.ExchangeServiceStub(channel), list(sample.parties),
                       patents, [])  # fmt: skip
        await m.submit(*(story.registration(p) for p in sample.parties))
        await m.submit(*(story.record(p, [owner], register) for p in patents))
        offers = [
            story.offer(p.application_number, [owner], terms)
            for p, terms in zip(patents, TERMS, strict=True)
        ]
        await m.submit(*offers)
        m.offers = [statement_id(o.statement) for o in offers]
        licensee, other, bank, supervisor, debtor = sample.parties[1:]
        await m.submit(
            story.acceptance(m.offers[0], licensee),
            story.acceptance(m.offers[0], other),
            story.acceptance(m.offers[1], licensee, TERMS[1]),
            story.withdrawal(m.offers[3], [owner]),
            story.pledge(patents[2].application_number, [owner], bank),
            story.role(supervisor, pb.ROLE_SUPERVISOR, operator, ORIGIN),
        )
        evidence = pb.EntryReference(origin=ORIGIN, index=0)
        await m.submit(story.credit_event(debtor, supervisor, evidence))
        yield m


async def test_a_patent_shows_its_encumbrances(market: Market) -> None:
    licensee, other, bank = market.parties[1:4]
    first = await market.stub.GetPatent(
        api.GetPatentRequest(application_number=market.patents[0].application_number)
    )
    assert first.title == market.patents[0].title
    assert list(first.ipc) == list(market.patents[0].ipc)
    assert first.active_offer.offer_id == market.offers[0]
    assert first.active_offer.acceptances == 2
    assert sorted(x.licensee for x in first.licences) == sorted([licensee.party_id, other.party_id])
    # Recordal is due three months after the acceptance was sequenced (today,
    # China time); a day past the month's end clamps to its last day.
    today = story.today()
    month = today.month + 2
    year, month = today.year + month // 12, month % 12 + 1
    day = min(today.day, calendar.monthrange(year, month)[1])
    due = story.date(dt.date(year, month, day))
    for licence in first.licences:
        assert (licence.recordal_due, licence.recorded) == (due, False)
        assert licence.start_date == story.date(today)
    pledged = await market.stub.GetPatent(
        api.GetPatentRequest(application_number=market.patents[2].application_number)
    )
    assert pledged.pledgee == bank.party_id
    assert pledged.pledge.secured_amount.amount_minor == 50_000_000
    assert not pledged.pledge.released
    withdrawn = await market.stub.GetPatent(
        api.GetPatentRequest(application_number=market.patents[3].application_number)
    )
    assert not withdrawn.HasField("active_offer")


async def test_an_offer_and_its_status(market: Market) -> None:
    offer = (await market.stub.GetOffer(api.GetOfferRequest(offer_id=market.offers[3]))).offer
    assert offer.status == api.OFFER_STATUS_WITHDRAWN
    assert offer.method == api.ROYALTY_METHOD_FREE
    assert not offer.HasField("upfront_fee")
    active = (await market.stub.GetOffer(api.GetOfferRequest(offer_id=market.offers[0]))).offer
    assert active.status == api.OFFER_STATUS_ACTIVE
    assert active.upfront_fee == pb.Money(amount_minor=2_000_000, currency="CNY")
    assert active.origin == ORIGIN
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await market.stub.GetOffer(api.GetOfferRequest(offer_id=bytes(32)))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await market.stub.GetOffer(api.GetOfferRequest(offer_id=b"short"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _search(market: Market, **fields: object) -> list[bytes]:
    response = await market.stub.SearchOffers(api.SearchOffersRequest(**fields))  # type: ignore[arg-type]
    return [o.offer_id for o in response.offers]


async def test_search_by_each_filter(market: Market) -> None:
    everything = await _search(market)
    assert everything == market.offers[::-1]  # newest first
    patent = market.patents[1]
    section = patent.ipc[0][:1]
    expected = [
        o for o, p in zip(market.offers, market.patents, strict=True)
        if any(ipc.startswith(section) for ipc in p.ipc)
    ][::-1]  # fmt: skip
    assert await _search(market, ipc_prefix=section.lower()) == expected
    symbol = patent.ipc[0]
    group = symbol.split("/")[0]
    for prefix in (symbol, group, group + "/", symbol[:4], symbol[:-1]):
        found = await _search(market, ipc_prefix=prefix)
        assert market.offers[1] in found, prefix
        for offer_id, other in zip(market.offers, market.patents, strict=True):
            matches = any(
                s == prefix or s.startswith(prefix if "/" in prefix else prefix.rstrip("/") + "/")
                or (len(prefix) <= 4 and s.startswith(prefix))
                for s in other.ipc
            )  # fmt: skip
            assert (offer_id in found) == matches, (prefix, other.ipc)
    word = patent.title[1:3]
    found = await _search(market, keyword=word)
    assert market.offers[1] in found
    titles = {o: p.title for o, p in zip(market.offers, market.patents, strict=True)}
    assert all(word in titles[o] for o in found)
    assert await _search(market, method=api.ROYALTY_METHOD_RUNNING) == [market.offers[1]]
    ceiling = pb.Money(amount_minor=5_000_000, currency="CNY")
    cheap = await _search(market, max_upfront_fee=ceiling)
    assert set(cheap) == {market.offers[0], market.offers[1], market.offers[3]}
    assert market.offers[2] not in cheap
    assert await _search(market, status=api.OFFER_STATUS_WITHDRAWN) == [market.offers[3]]
    region = market.patents[0].region
    in_region = await _search(market, region=region[:2])
    assert in_region == [
        o for o, p in zip(market.offers, market.patents, strict=True)
        if p.region.startswith(region[:2])
    ][::-1]  # fmt: skip


async def test_search_pages_through_everything_once(market: Market) -> None:
    seen: list[bytes] = []
    token = ""
    while True:
        page = await market.stub.SearchOffers(
            api.SearchOffersRequest(page_size=1, page_token=token)
        )
        seen.extend(o.offer_id for o in page.offers)
        token = page.next_page_token
        if not token:
            break
    assert seen == market.offers[::-1]
    first = await market.stub.SearchOffers(api.SearchOffersRequest(page_size=1))
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await market.stub.SearchOffers(
            api.SearchOffersRequest(page_size=1, page_token=first.next_page_token, keyword="x")
        )
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for bad in (
        api.SearchOffersRequest(page_size=-1),
        api.SearchOffersRequest(page_token="garbage!"),
        api.SearchOffersRequest(ipc_prefix="not an ipc"),
        api.SearchOffersRequest(region="1"),
        api.SearchOffersRequest(max_upfront_fee=pb.Money(amount_minor=1, currency="XXX")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await market.stub.SearchOffers(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _next(call: Any) -> api.Offer:
    response = await asyncio.wait_for(call.read(), 10)
    assert isinstance(response, api.WatchOffersResponse)
    return response.offer


async def test_watch_resumes_after_a_disconnect_missing_nothing_repeating_nothing(
    market: Market, tmp_path: Path
) -> None:
    owner = market.parties[0]
    register = load_key_file(tmp_path / "register.key")
    fresh = generate(42, parties=1, patents=6).patents
    await market.submit(*(story.record(p, [owner], register) for p in fresh))
    prefix = fresh[0].ipc[0][:4]
    matching = [p for p in fresh if any(i.startswith(prefix) for i in p.ipc)]
    request = api.WatchOffersRequest(ipc_prefixes=[prefix])
    # The existing matching offers come first, from cursor 0.
    before = [
        o for o, p in zip(market.offers, market.patents, strict=True)
        if any(i.startswith(prefix) for i in p.ipc)
    ]  # fmt: skip
    call = market.stub.WatchOffers(request)
    received: list[api.Offer] = []
    for _ in before:
        received.append(await _next(call))
    published = [story.offer(p.application_number, [owner]) for p in fresh]
    await market.submit(*published[:3])
    ids = [statement_id(s.statement) for s in published]
    expected_first = [i for i, p in zip(ids[:3], fresh[:3], strict=True) if p in matching]
    for _ in expected_first:
        received.append(await _next(call))
    call.cancel()
    await market.submit(*published[3:])  # while disconnected
    resumed = market.stub.WatchOffers(
        api.WatchOffersRequest(ipc_prefixes=[prefix], after_cursor=received[-1].cursor)
    )
    expected_rest = [i for i, p in zip(ids[3:], fresh[3:], strict=True) if p in matching]
    for _ in expected_rest:
        received.append(await _next(resumed))
    resumed.cancel()
    assert [o.offer_id for o in received] == before + expected_first + expected_rest
    cursors = [o.cursor for o in received]
    assert cursors == sorted(set(cursors))  # increasing: nothing repeated


async def test_licences_by_patent_and_by_licensee(market: Market) -> None:
    licensee = market.parties[1]
    by_licensee = await market.stub.ListLicences(
        api.ListLicencesRequest(licensee=licensee.party_id, page_size=1)
    )
    assert len(by_licensee.licences) == 1
    rest = await market.stub.ListLicences(
        api.ListLicencesRequest(
            licensee=licensee.party_id, page_size=1, page_token=by_licensee.next_page_token
        )
    )
    assert {x.offer_id for x in [*by_licensee.licences, *rest.licences]} == set(market.offers[:2])
    assert not rest.next_page_token
    by_patent = await market.stub.ListLicences(
        api.ListLicencesRequest(application_number=market.patents[0].application_number)
    )
    assert len(by_patent.licences) == 2
    with pytest.raises(grpc.aio.AioRpcError) as both:
        await market.stub.ListLicences(api.ListLicencesRequest())
    assert both.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_credit_record(market: Market) -> None:
    supervisor, debtor = market.parties[4:]
    record = await market.stub.GetCreditRecord(api.GetCreditRecordRequest(party_id=debtor.party_id))
    assert record.outstanding == 1
    (event,) = record.events
    assert event.kind == pb.CREDIT_EVENT_KIND_PAYMENT_DEFAULT
    assert event.supervisor == supervisor.party_id
    clean = await market.stub.GetCreditRecord(
        api.GetCreditRecordRequest(party_id=supervisor.party_id)
    )
    assert not clean.events
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await market.stub.GetCreditRecord(api.GetCreditRecordRequest(party_id="0" * 32))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_history_verifies_against_one_signed_checkpoint(market: Market) -> None:
    number = market.patents[0].application_number
    history = await market.stub.GetHistory(api.GetHistoryRequest(application_number=number))
    checkpoint = open_checkpoint(history.checkpoint, market.node.signer.verifier())
    kinds = []
    previous = None
    for item in history.entries:
        verify_inclusion(
            leaf_hash(item.entry), item.index, checkpoint.size, list(item.proof),
            checkpoint.root_hash,
        )  # fmt: skip
        entry = pb.LogEntry.FromString(item.entry)
        (link,) = entry.previous
        assert link.patent == number
        assert (link.previous_index if link.HasField("previous_index") else None) == previous
        previous = item.index
        kinds.append(pb.Statement.FromString(entry.statement).WhichOneof("body"))
    assert kinds == ["patent_recorded", "offer_published", "license_accepted", "license_accepted"]
    party = await market.stub.GetHistory(api.GetHistoryRequest(party_id=market.parties[5].party_id))
    assert len(party.entries) == 2  # registration, credit event


async def test_statistics_count_what_was_sequenced(market: Market) -> None:
    stats = await market.stub.GetStatistics(api.GetStatisticsRequest())
    by_kind: dict[str, int] = {}
    for row in stats.rows:
        by_kind[row.kind] = by_kind.get(row.kind, 0) + row.count
    assert by_kind == {
        "party_registered": 6, "patent_recorded": 4, "offer_published": 4,
        "license_accepted": 3, "offer_withdrawn": 1, "pledge_registered": 1,
        "role_granted": 1, "credit_event_recorded": 1,
    }  # fmt: skip
    (pledge_row,) = [r for r in stats.rows if r.kind == "pledge_registered"]
    assert list(pledge_row.pledged) == [pb.Money(amount_minor=50_000_000, currency="CNY")]
    assert pledge_row.region == market.patents[2].region
    assert pledge_row.ipc_section == market.patents[2].ipc[0][:1]
    assert json.dumps(sorted({r.month for r in stats.rows}))  # one or two months, never empty
    future = await market.stub.GetStatistics(
        api.GetStatisticsRequest(from_date=pb.Date(year=2999, month=1, day=1))
    )
    assert not future.rows


async def test_a_watch_ends_unavailable_when_the_node_stops_without_holding_it_up(
    db_url: str, tmp_path: Path
) -> None:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key",
        shutdown_grace_seconds=30.0,
    )  # fmt: skip
    started = asyncio.get_running_loop().time()
    async with start_node(config) as node:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{node.port}")
        call = exchange_pb2_grpc.ExchangeServiceStub(channel).WatchOffers(api.WatchOffersRequest())
        reading = asyncio.ensure_future(call.read())
        await asyncio.sleep(0.2)  # the watch is waiting for offers
        started = asyncio.get_running_loop().time()
    # Leaving the context stopped the node: well inside the 30 s grace.
    assert asyncio.get_running_loop().time() - started < 10
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await reading
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    await channel.close(None)
