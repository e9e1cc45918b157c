"""Bad input on a real node over gRPC, on both engines: the right status, its details, no write.

Each bad statement is built next to its good twin, the same statement with
the one defect removed: the bad one is refused with its status code and
details (``BadRequest`` naming the field for INVALID_ARGUMENT, the
``ErrorInfo`` reason for the others), and the database is unchanged, compared
as a digest of every row of every table (the ledger's logs, entries and
checkpoints, and every view); then the good twin is admitted, so the defect,
and nothing else, was what the node refused. The same bad statements in one
SubmitStatements batch get the same statuses, one outcome each. Then the
requests that never reach admission: undecodable request bytes, messages over
the server's receive limit, batches over the limit, and bad query arguments.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from exchange.config import NodeConfig
from exchange.identifiers import application_check_character, credit_code_check_character
from exchange.models import ViewBase
from exchange.node import MAX_SUBMIT_BATCH
from exchange.sample import SampleParty, generate
from exchange.server import MAX_MESSAGE_BYTES, RunningNode, start_node
from exchange.service import ERROR_DOMAIN
from exchange.statements import (
    MAX_AMOUNT_MINOR,
    MAX_STATEMENT_BYTES,
    key_fingerprint,
    sign,
    statement_id,
)
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.keys import load_key_file
from ledger.models import Base
from ledger.note import Signer
from tests.conftest import ORIGIN
from tests.exchange import story

SERVICE = "/kaifang.exchange.v1.ExchangeService"
# A length-delimited field 1 announcing 127 bytes and carrying 5: no message decodes from it.
GARBAGE = b"\x0a\x7fshort"


@dataclass
class Market:
    """A node holding a little of everything, and the parties and patents in it."""

    node: RunningNode
    channel: grpc.aio.Channel
    stub: exchange_pb2_grpc.ExchangeServiceAsyncStub
    register: Signer
    owner: SampleParty
    co_owner: SampleParty
    licensee: SampleParty
    bank: SampleParty
    newcomer: SampleParty  # not registered
    patents: list[pb.PatentRecorded]  # 0 offered, 1 pledged, 2 untouched, 3 unrecorded

    @property
    def spare(self) -> str:
        """A recorded patent of the owner's with no offer, licence or pledge."""
        return self.patents[2].application_number

    async def digest(self) -> dict[str, tuple[int, str]]:
        return await story.database_digest(self.node.exchange.db)

    async def size(self) -> int:
        return (await self.node.store.latest_checkpoint()).size


async def _submit_all(stub: exchange_pb2_grpc.ExchangeServiceAsyncStub, *signed: Any) -> None:
    response = await stub.SubmitStatements(api.SubmitStatementsRequest(signed=signed))
    assert all(o.WhichOneof("result") == "submitted" for o in response.outcomes), response


@pytest.fixture
async def market(db_url: str, tmp_path: Path) -> AsyncIterator[Market]:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )
    async with (
        start_node(config) as node,
        grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel,
    ):
        sample = generate(61, parties=5, patents=4)
        owner, co_owner, licensee, bank, newcomer = sample.parties
        register = load_key_file(tmp_path / "register.key")
        operator = load_key_file(tmp_path / "operator.key")
        patents = list(sample.patents)
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        await _submit_all(stub, *(story.registration(p) for p in (owner, co_owner, licensee, bank)))
        await _submit_all(
            stub,
            story.record(patents[0], [owner], register),
            story.record(patents[1], [owner, co_owner], register),
            story.record(patents[2], [owner], register),
        )
        offer = story.offer(patents[0].application_number, [owner])
        await _submit_all(
            stub,
            offer,
            story.acceptance(statement_id(offer.statement), licensee),
            story.pledge(patents[1].application_number, [owner, co_owner], bank),
            story.role(co_owner, pb.ROLE_SUPERVISOR, operator, ORIGIN),
        )
        await _submit_all(
            stub, story.credit_event(licensee, co_owner, pb.EntryReference(origin=ORIGIN))
        )
        yield Market(
            node, channel, stub, register, owner, co_owner, licensee, bank, newcomer, patents
        )


# -- checking a refusal ---------------------------------------------------------


def check_status(
    status: status_pb2.Status, code: grpc.StatusCode, reason: str, field: str | None
) -> None:
    """``status`` has ``code``, an ErrorInfo with ``reason`` and, if given, names ``field``.

    For INVALID_ARGUMENT the field is named twice: in a ``BadRequest`` field
    violation (what generic clients read) and in the ErrorInfo's metadata.
    """
    assert status.code == code.value[0], status
    assert status.message
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info), status
    assert (info.domain, info.reason) == (ERROR_DOMAIN, reason), status
    if field is None:
        return
    bad = error_details_pb2.BadRequest()
    assert len(status.details) == 2, status
    assert status.details[1].Unpack(bad), status
    assert [v.field for v in bad.field_violations] == [field]
    assert bad.field_violations[0].description
    assert info.metadata["field"] == field


async def refused(
    market: Market,
    call: Callable[[], Any],
    code: grpc.StatusCode,
    reason: str,
    field: str | None = None,
) -> None:
    """``call()`` fails with ``code`` and these details, and writes nothing anywhere."""
    size, before = await market.size(), await market.digest()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call()
    assert error.value.code() == code, error.value.details()
    status = rpc_status.from_call(error.value)  # type: ignore[arg-type]
    assert status is not None, "the refusal carries no google.rpc.Status"
    check_status(status, code, reason, field)
    assert await market.size() == size
    assert await market.digest() == before


# -- bad statements and their good twins ---------------------------------------------


def _offer(number: str, terms: pb.RoyaltyTerms = story.CNY_20K) -> pb.Statement:
    return pb.Statement(
        offer_published=pb.OfferPublished(
            application_number=number, terms=terms, licence_term_months=12,
            evaluation_report="EVAL-2026-002",
        )
    )  # fmt: skip


def _by_owner(m: Market, statement: pb.Statement) -> pb.SignedStatement:
    return story.signed(statement, (m.owner.party_id, m.owner))


def forged(m: Market, bad: bool) -> pb.SignedStatement:
    signed = _by_owner(m, _offer(m.spare))
    if bad:
        flipped = bytearray(signed.signatures[0].signature)
        flipped[0] ^= 1
        signed.signatures[0].signature = bytes(flipped)
    return signed


def wrong_key(m: Market, bad: bool) -> pb.SignedStatement:
    """A valid Ed25519 signature, by a key that is not the one the owner registered."""
    if not bad:
        return _by_owner(m, _offer(m.spare))
    signed = story.signed(_offer(m.spare))
    signed.signatures.append(sign(signed.statement, m.owner.party_id, Ed25519PrivateKey.generate()))
    return signed


def wrong_key_named_right(m: Market, bad: bool) -> pb.SignedStatement:
    """As :func:`wrong_key`, the signature claiming the owner's key fingerprint as well."""
    signed = wrong_key(m, bad)
    signed.signatures[0].key_fingerprint = key_fingerprint(m.owner.registration.public_key)
    return signed


def _aged(m: Market, bad: bool, age: dt.timedelta) -> pb.SignedStatement:
    when = dt.datetime.now(dt.UTC) - (age if bad else dt.timedelta(0))
    return story.signed_at(_offer(m.spare), when, (m.owner.party_id, m.owner))


def replayed(m: Market, bad: bool) -> pb.SignedStatement:
    return _aged(m, bad, dt.timedelta(hours=25))


def from_the_future(m: Market, bad: bool) -> pb.SignedStatement:
    return _aged(m, bad, -dt.timedelta(hours=1))


def malformed(m: Market, bad: bool) -> pb.SignedStatement:
    good = story.registration(m.newcomer)
    if not bad:
        return good
    return story.sign_bytes(b"\xff\xffnot a statement", (m.newcomer.party_id, m.newcomer))


def bodiless(m: Market, bad: bool) -> pb.SignedStatement:
    statement = pb.Statement() if bad else pb.Statement(party_registered=m.newcomer.registration)
    return story.signed(statement, (m.newcomer.party_id, m.newcomer))


def oversized_statement(m: Market, bad: bool) -> pb.SignedStatement:
    """A registration padded past the statement size limit, properly signed."""
    registration = pb.PartyRegistered()
    registration.CopyFrom(m.newcomer.registration)
    if bad:
        registration.name += "有" * (MAX_STATEMENT_BYTES // 3 + 1)  # three bytes each in UTF-8
    signed = story.signed(
        pb.Statement(party_registered=registration), (m.newcomer.party_id, m.newcomer)
    )
    assert (len(signed.statement) > MAX_STATEMENT_BYTES) == bad
    return signed


def bad_application_number(m: Market, bad: bool) -> pb.SignedStatement:
    number = m.spare
    if bad:
        digits = number[:12]
        wrong = next(c for c in "0123456789X" if c != application_check_character(digits))
        number = f"{digits}.{wrong}"
    return _by_owner(m, _offer(number))


def bad_credit_code(m: Market, bad: bool) -> pb.SignedStatement:
    registration = pb.PartyRegistered()
    registration.CopyFrom(m.newcomer.registration)
    if bad:
        body = registration.identity_code[:17]
        right = credit_code_check_character(body)
        registration.identity_code = body + ("0" if right != "0" else "1")
    return story.signed(
        pb.Statement(party_registered=registration), (m.newcomer.party_id, m.newcomer)
    )


def bad_ipc(m: Market, bad: bool) -> pb.SignedStatement:
    patent = pb.PatentRecorded()
    patent.CopyFrom(m.patents[3])
    if bad:
        patent.ipc[0] = "Z99Z 1/00"  # there is no section Z
    return story.record(patent, [m.owner], m.register)


def _money_offer(m: Market, amount: int, currency: str) -> pb.SignedStatement:
    terms = pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=amount, currency=currency))
    return _by_owner(m, _offer(m.spare, terms))


def unknown_currency(m: Market, bad: bool) -> pb.SignedStatement:
    return _money_offer(m, 2_000_000, "XQZ" if bad else "CNY")


def negative_lump_sum(m: Market, bad: bool) -> pb.SignedStatement:
    return _money_offer(m, -2_000_000 if bad else 2_000_000, "CNY")


def negative_secured_amount(m: Market, bad: bool) -> pb.SignedStatement:
    return story.pledge(m.spare, [m.owner], m.bank, -50_000_000 if bad else 50_000_000)


def negative_price(m: Market, bad: bool) -> pb.SignedStatement:
    body = pb.TransferRegistered(
        application_number=m.spare, assignors=[m.owner.party_id],
        assignees=[m.licensee.party_id],
        price=pb.Money(amount_minor=-1 if bad else 100, currency="CNY"),
    )  # fmt: skip
    return story.signed(
        pb.Statement(transfer_registered=body),
        (m.owner.party_id, m.owner), (m.licensee.party_id, m.licensee),
    )  # fmt: skip


INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


@dataclass(frozen=True)
class Case:
    """A bad statement (and its twin), the status it gets, and the field named if malformed."""

    build: Callable[[Market, bool], pb.SignedStatement]
    field: str | None = None
    code: grpc.StatusCode = INVALID
    reason: str = "INVALID_ARGUMENT"

    def __str__(self) -> str:
        return self.build.__name__


OFFER = "offer_published"
CASES = [
    Case(forged, code=DENIED, reason="SIGNATURE_INVALID"),
    Case(wrong_key, code=DENIED, reason="SIGNATURE_INVALID"),
    Case(wrong_key_named_right, code=DENIED, reason="SIGNATURE_INVALID"),
    Case(replayed, "created_at"),
    Case(from_the_future, "created_at"),
    Case(malformed, "statement"),
    Case(bodiless, "statement.body"),
    Case(oversized_statement, "statement"),
    Case(bad_application_number, f"{OFFER}.application_number"),
    Case(bad_credit_code, "party_registered.identity_code"),
    Case(bad_ipc, "patent_recorded.ipc[0]"),
    Case(unknown_currency, f"{OFFER}.terms.lump_sum.currency"),
    Case(negative_lump_sum, f"{OFFER}.terms.lump_sum.amount_minor"),
    Case(negative_secured_amount, "pledge_registered.secured_amount.amount_minor"),
    Case(negative_price, "transfer_registered.price.amount_minor"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_bad_statement_is_refused_with_details_and_writes_nothing(
    market: Market, case: Case
) -> None:
    bad = case.build(market, True)
    request = api.SubmitStatementRequest(signed=bad)
    await refused(
        market, lambda: market.stub.SubmitStatement(request), case.code, case.reason, case.field
    )
    # Its twin without the defect is admitted, and that does change the database.
    before = await market.digest()
    response = await market.stub.SubmitStatement(
        api.SubmitStatementRequest(signed=case.build(market, False))
    )
    assert not response.duplicate
    assert await market.digest() != before


async def test_bad_statements_in_a_batch_get_the_same_statuses_and_write_nothing(
    market: Market,
) -> None:
    size, before = await market.size(), await market.digest()
    batch = [case.build(market, True) for case in CASES]
    response = await market.stub.SubmitStatements(api.SubmitStatementsRequest(signed=batch))
    assert len(response.outcomes) == len(CASES)
    for case, outcome in zip(CASES, response.outcomes, strict=True):
        assert outcome.WhichOneof("result") == "status", case
        check_status(
            status_pb2.Status.FromString(outcome.status), case.code, case.reason, case.field
        )
    assert await market.size() == size
    assert await market.digest() == before


async def test_a_request_without_a_statement_is_refused(market: Market) -> None:
    await refused(
        market,
        lambda: market.stub.SubmitStatement(api.SubmitStatementRequest()),
        INVALID, "INVALID_ARGUMENT", "signed",
    )  # fmt: skip


# -- requests that never reach admission -----------------------------------------------


@pytest.mark.parametrize(
    "method", ["SubmitStatement", "SubmitStatements", "GetPatent", "GetCreditRecord"]
)
async def test_undecodable_request_bytes_are_an_invalid_argument(
    market: Market, method: str
) -> None:
    # No serializer: the bytes go on the wire as they are.
    call = market.channel.unary_unary(
        f"{SERVICE}/{method}", request_serializer=None, response_deserializer=None
    )
    await refused(market, lambda: call(GARBAGE), INVALID, "INVALID_ARGUMENT", "request")


async def test_undecodable_watch_request_is_an_invalid_argument(market: Market) -> None:
    call = market.channel.unary_stream(
        f"{SERVICE}/WatchOffers", request_serializer=None, response_deserializer=None
    )

    async def first() -> object:
        async for response in call(GARBAGE):
            return response
        return None

    await refused(market, first, INVALID, "INVALID_ARGUMENT", "request")


async def test_a_message_over_the_receive_limit_is_resource_exhausted(market: Market) -> None:
    signed = story.sign_bytes(b"\x00" * MAX_MESSAGE_BYTES, (market.owner.party_id, market.owner))
    request = api.SubmitStatementRequest(signed=signed)
    size, before = await market.size(), await market.digest()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await market.stub.SubmitStatement(request)
    # gRPC itself refuses it before any of the node's code runs, so it carries
    # gRPC's own message and no google.rpc.Status details.
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(MAX_MESSAGE_BYTES) in (error.value.details() or "")
    assert await market.size() == size
    assert await market.digest() == before
    # The node still serves, on the same channel.
    patent = await market.stub.GetPatent(api.GetPatentRequest(application_number=market.spare))
    assert patent.application_number == market.spare


async def test_a_batch_over_the_limit_is_refused_whole(market: Market) -> None:
    # Every statement admissible on its own: the batch's size alone is refused.
    parties = generate(62, parties=MAX_SUBMIT_BATCH + 1, patents=1).parties
    batch = [story.registration(p) for p in parties]
    request = api.SubmitStatementsRequest(signed=batch)
    assert request.ByteSize() < MAX_MESSAGE_BYTES  # refused for its count, not its bytes
    await refused(
        market, lambda: market.stub.SubmitStatements(request), INVALID, "INVALID_ARGUMENT",
        "signed",
    )  # fmt: skip
    # One fewer is within the limit.
    request = api.SubmitStatementsRequest(signed=batch[:MAX_SUBMIT_BATCH])
    response = await market.stub.SubmitStatements(request)
    assert all(o.WhichOneof("result") == "submitted" for o in response.outcomes)


@dataclass(frozen=True)
class Query:
    """A query with one bad argument, and the field the refusal must name."""

    method: str
    request: Any
    field: str


NOBODY = "0" * 32  # a well-formed party id
# base64url of '["x", [1]]': shaped like a page token, but not issued for any request.
UNISSUED = "WyJ4IiwgWzFdXQ"
QUERIES = {
    "negative_search_page": Query(
        "SearchOffers", api.SearchOffersRequest(page_size=-1), "page_size"
    ),
    "negative_licence_page": Query(
        "ListLicences", api.ListLicencesRequest(licensee=NOBODY, page_size=-1), "page_size"
    ),
    "garbage_page_token": Query(
        "SearchOffers", api.SearchOffersRequest(page_token="garbage!"), "page_token"
    ),
    "unissued_page_token": Query(
        "ListLicences", api.ListLicencesRequest(licensee=NOBODY, page_token=UNISSUED), "page_token"
    ),
    "short_party_id": Query(
        "GetCreditRecord", api.GetCreditRecordRequest(party_id="abc123"), "party_id"
    ),
    "upper_case_party_id": Query(
        "GetCreditRecord", api.GetCreditRecordRequest(party_id="AB" * 16), "party_id"
    ),
    "bad_licensee": Query("ListLicences", api.ListLicencesRequest(licensee="z" * 32), "licensee"),
    "bad_history_party": Query(
        "GetHistory", api.GetHistoryRequest(party_id="not a party"), "party_id"
    ),
}


@pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
async def test_bad_query_arguments_are_invalid_arguments_naming_the_field(
    market: Market, query: Query
) -> None:
    rpc = getattr(market.stub, query.method)
    await refused(market, lambda: rpc(query.request), INVALID, "INVALID_ARGUMENT", query.field)


async def test_a_page_token_issued_for_another_query_is_refused(market: Market) -> None:
    await market.stub.SubmitStatement(
        api.SubmitStatementRequest(signed=story.offer(market.spare, [market.owner]))
    )
    search = await market.stub.SearchOffers(api.SearchOffersRequest(page_size=1))
    assert search.next_page_token  # two offers, one a page
    request = api.ListLicencesRequest(
        licensee=market.licensee.party_id, page_token=search.next_page_token
    )
    await refused(
        market, lambda: market.stub.ListLicences(request), INVALID, "INVALID_ARGUMENT",
        "page_token",
    )  # fmt: skip


async def test_the_digest_covers_every_table_and_sees_one_admitted_statement(
    market: Market,
) -> None:
    before = await market.digest()
    expected = set(Base.metadata.tables) | set(ViewBase.metadata.tables)
    assert expected <= set(before), expected - set(before)
    assert {"logs", "entries", "checkpoints", "statements", "offers", "pledges"} <= {
        name for name, (rows, _) in before.items() if rows
    }
    await market.stub.SubmitStatement(
        api.SubmitStatementRequest(signed=story.registration(market.newcomer))
    )
    after = await market.digest()
    changed = {name for name in before if before[name] != after[name]}
    assert {"entries", "checkpoints", "statements", "parties"} <= changed


UNKNOWN = b"\x05" * 32  # the id of no statement


def _about_unknown(m: Market, kind: str) -> pb.SignedStatement:
    today = story.date(story.today())
    if kind == "offer_withdrawn":
        return story.withdrawal(UNKNOWN, [m.owner])
    if kind == "license_accepted":
        return story.acceptance(UNKNOWN, m.licensee)
    if kind == "pledge_released":
        body = pb.Statement(pledge_released=pb.PledgeReleased(pledge_id=UNKNOWN, reason="repaid"))
        return story.signed(body, (m.bank.party_id, m.bank))
    if kind == "license_recorded":
        recorded = pb.LicenseRecorded(
            license_id=UNKNOWN, recordal_number="2026990000123", recorded_on=today
        )
        return story.signed(pb.Statement(license_recorded=recorded), (m.owner.party_id, m.owner))
    repaired = pb.CreditEventRepaired(
        event_id=UNKNOWN, supervisor=m.co_owner.party_id, summary="paid"
    )
    return story.signed(
        pb.Statement(credit_event_repaired=repaired), (m.co_owner.party_id, m.co_owner)
    )


@pytest.mark.parametrize(
    ("kind", "reason", "field"),
    [
        ("offer_withdrawn", "OFFER_NOT_ACTIVE", "offer_withdrawn.offer_id"),
        ("license_accepted", "OFFER_NOT_ACTIVE", "license_accepted.offer_id"),
        ("pledge_released", "PLEDGE_NOT_ACTIVE", "pledge_released.pledge_id"),
        ("license_recorded", "LICENSE_UNKNOWN", "license_recorded.license_id"),
        ("credit_event_repaired", "CREDIT_EVENT_UNKNOWN", "credit_event_repaired.event_id"),
    ],
)
async def test_a_statement_about_an_unknown_id_is_refused_at_that_id(
    market: Market, kind: str, reason: str, field: str
) -> None:
    size, before = await market.size(), await market.digest()
    request = api.SubmitStatementRequest(signed=_about_unknown(market, kind))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await market.stub.SubmitStatement(request)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.metadata["field"]) == (reason, field)
    assert await market.size() == size
    assert await market.digest() == before


async def test_an_amount_above_the_limit_is_refused_and_statistics_stay_whole(
    market: Market,
) -> None:
    size, before = await market.size(), await market.digest()
    too_much = story.pledge(market.spare, [market.owner], market.bank, MAX_AMOUNT_MINOR + 1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await market.stub.SubmitStatement(api.SubmitStatementRequest(signed=too_much))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await market.size(), await market.digest()) == (size, before)
    most = story.pledge(market.spare, [market.owner], market.bank, MAX_AMOUNT_MINOR)
    await market.stub.SubmitStatement(api.SubmitStatementRequest(signed=most))
    stats = await market.stub.GetStatistics(api.GetStatisticsRequest())
    pledged = [m.amount_minor for r in stats.rows for m in r.pledged]
    assert sum(pledged) >= MAX_AMOUNT_MINOR
