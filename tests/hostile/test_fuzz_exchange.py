"""Every RPC of ``kaifang.exchange.v1.ExchangeService`` under fuzzed requests.

One node for the module (:mod:`tests.hostile.harness`), holding a market.
Each RPC gets requests built from seeds that name what the node holds, then
mutated field by field or byte by byte, and plain random bytes, all sent
without a serializer. For every request: the answer is never a server fault
(UNKNOWN, INTERNAL, …) and every refusal says why (an ErrorInfo reason); a
refusal commits nothing to the database (SQLite's commit counter does not
move), and only a statement admitted for the first time may; the node still
answers health checks afterwards.

Submissions are also fuzzed one level down: the statement inside the
signed envelope is mutated field by field and signed again by the keys
that signed its seed, so that it gets past the signature check into the
structure and legal checks.

The examples that once found a server fault are kept below as regression
tests, each named after what it broke.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange import queries
from exchange.sample import generate
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.rpc import MAX_DETAIL_CHARS
from tests.exchange import story
from tests.hostile.corpus import StatementCorpus, signed_statements, statement_corpus
from tests.hostile.harness import (
    Answer,
    Target,
    probe,
    target,
)
from tests.hostile.mutations import payloads

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICE = "/kaifang.exchange.v1.ExchangeService"
UNARY = [
    "SubmitStatement",
    "SubmitStatements",
    "GetPatent",
    "GetOffer",
    "SearchOffers",
    "ListLicences",
    "GetCreditRecord",
    "GetHistory",
    "GetStatistics",
]
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    async with target(tmp_path_factory.mktemp("fuzz-exchange") / "net") as found:
        yield found


@dataclass(frozen=True)
class Corpus:
    """The seeds, made once: a strategy must draw the same way each time it replays."""

    statements: StatementCorpus
    queries: dict[str, list[Any]]


@pytest.fixture(scope="module")
def corpus(node: Target) -> Corpus:
    return Corpus(statement_corpus(node), _seeds(node))


# -- seeds ------------------------------------------------------------------------


@st.composite
def _crafted_token(draw: Any, request: Any) -> Any:
    """``request`` with a page token shaped like the node's, for its very parameters.

    The token's digest is of public fields, so anyone can make one that
    passes the binding check; only the key inside it is hostile.
    """
    key = draw(
        st.lists(
            st.one_of(
                st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
                st.floats(), st.text(max_size=8), st.lists(st.integers(), max_size=2),
            ),
            max_size=3,
        )
    )  # fmt: skip
    crafted = type(request)()
    crafted.CopyFrom(request)
    crafted.page_token = queries.make_page_token(request, key)
    return crafted


def _seeds(t: Target) -> dict[str, list[Any]]:
    m = t.market
    today = story.date(story.today())
    return {
        "GetPatent": [
            api.GetPatentRequest(application_number=p.application_number)
            for p in (m.offered, m.pledged, m.unrecorded)
        ],
        "GetOffer": [api.GetOfferRequest(offer_id=m.offer_id)],
        "SearchOffers": [
            api.SearchOffersRequest(),
            api.SearchOffersRequest(
                ipc_prefix=m.offered.ipc[0][:4],
                keyword=m.offered.title[:2],
                method=api.ROYALTY_METHOD_LUMP_SUM,
                region=m.offered.region,
                status=api.OFFER_STATUS_ACTIVE,
                page_size=1,
                max_upfront_fee=pb.Money(amount_minor=10**9, currency="CNY"),
            ),
        ],
        "ListLicences": [
            api.ListLicencesRequest(application_number=m.offered.application_number, page_size=1),
            api.ListLicencesRequest(licensee=m.licensee.party_id),
        ],
        "GetCreditRecord": [api.GetCreditRecordRequest(party_id=m.licensee.party_id)],
        "GetHistory": [
            api.GetHistoryRequest(application_number=m.offered.application_number),
            api.GetHistoryRequest(party_id=m.licensee.party_id, checkpoint_size=3),
            api.GetHistoryRequest(party_id=m.licensee.party_id, min_cosignatures=1),
        ],
        "GetStatistics": [
            api.GetStatisticsRequest(),
            api.GetStatisticsRequest(from_date=today, to_date=today),
        ],
        "WatchOffers": [
            api.WatchOffersRequest(),
            api.WatchOffersRequest(ipc_prefixes=[m.offered.ipc[0]], keywords=["装置"]),
            api.WatchOffersRequest(after_cursor=1),
        ],
    }


def _requests(c: Corpus, method: str) -> st.SearchStrategy[bytes]:
    if method == "SubmitStatement":
        signed = signed_statements(c.statements).map(lambda s: api.SubmitStatementRequest(signed=s))
        return st.one_of(
            signed.map(lambda r: r.SerializeToString()),
            payloads([api.SubmitStatementRequest(signed=s) for s in c.statements.statements]),
        )
    if method == "SubmitStatements":
        batches = st.lists(signed_statements(c.statements), max_size=6).map(
            lambda signed: api.SubmitStatementsRequest(signed=signed)
        )
        return st.one_of(
            batches.map(lambda r: r.SerializeToString()),
            payloads([api.SubmitStatementsRequest(signed=c.statements.statements[:3])]),
        )
    seeds = c.queries[method]
    strategy = payloads(seeds)
    if method in ("SearchOffers", "ListLicences"):
        tokens = st.sampled_from(seeds).flatmap(_crafted_token)
        strategy = strategy | tokens.map(lambda r: r.SerializeToString())
    return strategy


# -- checking an answer -----------------------------------------------------------


def _may_write(method: str, answer: Answer) -> bool:
    """Whether ``answer`` admitted a statement for the first time (the one allowed write)."""
    if answer.code != grpc.StatusCode.OK:
        return False
    if method == "SubmitStatement":
        return not api.SubmitStatementResponse.FromString(answer.responses[0]).duplicate
    if method == "SubmitStatements":
        response = api.SubmitStatementsResponse.FromString(answer.responses[0])
        return any(
            o.WhichOneof("result") == "submitted" and not o.submitted.duplicate
            for o in response.outcomes
        )
    return False


async def _check(node: Target, method: str, payload: bytes) -> Answer:
    return await probe(
        node, node.channel, f"{SERVICE}/{method}", payload,
        stream=method == "WatchOffers", may_write=functools.partial(_may_write, method),
    )  # fmt: skip


@pytest.mark.parametrize("method", UNARY)
@FUZZ
@given(data=st.data())
async def test_fuzzed_requests_get_a_client_error_and_refusals_write_nothing(
    node: Target, corpus: Corpus, method: str, data: st.DataObject
) -> None:
    await _check(node, method, data.draw(_requests(corpus, method)))


@settings(FUZZ, max_examples=100)
@given(data=st.data())
async def test_fuzzed_watch_requests_get_a_client_error_and_write_nothing(
    node: Target, corpus: Corpus, data: st.DataObject
) -> None:
    await _check(node, "WatchOffers", data.draw(_requests(corpus, "WatchOffers")))


async def test_the_fuzzed_reads_left_every_table_as_it_was(node: Target, corpus: Corpus) -> None:
    # Runs after the read fuzzing above (file order) and, on its own, still
    # proves a full round of reads writes nothing.
    before = await node.digest()
    for method in UNARY[2:]:
        for seed in corpus.queries[method]:
            await _check(node, method, seed.SerializeToString())
    assert await node.digest() == before


# -- regressions: requests that once got a server fault --------------------------------


def _token(request: Any, key: Any) -> str:
    """A page token for ``request``'s very parameters, holding ``key`` (anyone can make one)."""
    token: str = queries.make_page_token(request, key)
    return token


@pytest.mark.parametrize(
    "key",
    [[], ["seq"], [None], [True], [1e308], [float("inf")], [float("nan")], [2**70], [-1], [[1]]],
    ids=["empty", "text", "null", "boolean", "huge_float", "infinity", "nan", "beyond_int64",
         "negative", "list"],
)  # fmt: skip
async def test_a_forged_search_page_token_is_an_invalid_argument_not_internal(
    node: Target, key: Any
) -> None:
    request = api.SearchOffersRequest()
    request.page_token = _token(request, key)
    answer = await _check(node, "SearchOffers", request.SerializeToString())
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, answer
    assert answer.metadata()["field"] == "page_token"


@pytest.mark.parametrize(
    "key",
    [[], ["a"], ["a", "x"], ["a", None], ["a", 2**70], [None, 1], ["x" * 300, 1], ["a", 1.5]],
    ids=["empty", "short", "text_index", "null_index", "beyond_int64", "null_origin",
         "long_origin", "fraction"],
)  # fmt: skip
async def test_a_forged_licence_page_token_is_an_invalid_argument_not_internal(
    node: Target, key: Any
) -> None:
    request = api.ListLicencesRequest(licensee=node.market.licensee.party_id)
    request.page_token = _token(request, key)
    answer = await _check(node, "ListLicences", request.SerializeToString())
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, answer
    assert answer.metadata()["field"] == "page_token"


async def test_a_page_token_the_node_issued_still_turns_the_page(node: Target) -> None:
    request = api.SearchOffersRequest(page_size=1)
    first = api.SearchOffersResponse.FromString(
        (await _check(node, "SearchOffers", request.SerializeToString())).responses[0]
    )
    request.page_token = first.next_page_token
    assert first.next_page_token, "the market holds more than one offer"
    answer = await _check(node, "SearchOffers", request.SerializeToString())
    assert answer.code == grpc.StatusCode.OK


@pytest.mark.parametrize("cursor", [2**63, 2**64 - 1])
async def test_a_watch_cursor_beyond_any_log_is_an_invalid_argument_not_internal(
    node: Target, cursor: int
) -> None:
    request = api.WatchOffersRequest(after_cursor=cursor)
    answer = await _check(node, "WatchOffers", request.SerializeToString())
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, answer
    assert answer.metadata()["field"] == "after_cursor"


@pytest.mark.parametrize(
    "day",
    [pb.Date(year=2**31, month=1, day=1), pb.Date(year=2024, month=2**31, day=1),
     pb.Date(year=2024, month=1, day=2**32 - 1), pb.Date(year=10_000, month=1, day=1)],
    ids=["year", "month", "day", "year_10000"],
)  # fmt: skip
async def test_a_statistics_date_past_any_calendar_is_an_invalid_argument_not_internal(
    node: Target, day: pb.Date
) -> None:
    request = api.GetStatisticsRequest(to_date=day)
    answer = await _check(node, "GetStatistics", request.SerializeToString())
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, answer
    assert answer.metadata()["field"] == "to_date"


def _accepting_in_year(node: Target, year: int) -> pb.SignedStatement:
    """The bank's acceptance of the market's offer, starting in ``year`` (properly signed)."""
    m = node.market
    body = pb.LicenseAccepted(
        offer_id=m.offer_id, licensee=m.bank.party_id, terms=story.CNY_20K,
        start_date=pb.Date(year=year, month=1, day=1),
    )  # fmt: skip
    return story.signed(pb.Statement(license_accepted=body), (m.bank.party_id, m.bank))


async def test_a_statement_dated_past_any_calendar_is_an_invalid_argument_not_internal(
    node: Target,
) -> None:
    request = api.SubmitStatementRequest(signed=_accepting_in_year(node, 2**31))
    answer = await _check(node, "SubmitStatement", request.SerializeToString())
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, answer
    assert answer.metadata()["field"] == "license_accepted.start_date"


async def test_a_statement_dated_past_any_calendar_fails_alone_in_its_batch(
    node: Target,
) -> None:
    # Before, the whole call failed INTERNAL although its neighbours had been
    # admitted: the client could not tell which.
    # A party no seed names, so that the fuzzing before cannot have registered it.
    newcomer = story.registration(generate(97, parties=1, patents=0).parties[0])
    batch = [_accepting_in_year(node, 2**32 - 1), newcomer, _accepting_in_year(node, 2**31)]
    request = api.SubmitStatementsRequest(signed=batch)
    answer = await _check(node, "SubmitStatements", request.SerializeToString())
    assert answer.code == grpc.StatusCode.OK, answer
    outcomes = api.SubmitStatementsResponse.FromString(answer.responses[0]).outcomes
    assert [o.WhichOneof("result") for o in outcomes] == ["status", "submitted", "status"]
    assert outcomes[1].submitted.statement_id == statement_id(newcomer.statement)
    for outcome in (outcomes[0], outcomes[2]):
        status = status_pb2.Status.FromString(outcome.status)
        assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "license_accepted.start_date" in status.message


async def test_a_refusal_quoting_a_huge_value_still_reaches_the_client(node: Target) -> None:
    # The refusal used to quote the whole value: its trailers outgrew what a
    # client accepts, which then saw RESOURCE_EXHAUSTED instead of the reason.
    for number in ("x" * 5000, "有" * 4000):
        request = api.GetPatentRequest(application_number=number)
        answer = await _check(node, "GetPatent", request.SerializeToString())
        assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, answer
        assert answer.metadata()["field"] == "application_number"
        assert len(answer.details) <= MAX_DETAIL_CHARS
