"""Read the views: the questions licensees, patentees, banks, mediators and supervisors ask.

Each public function here is a unit of work (a function of a SQLAlchemy
:class:`~sqlalchemy.Connection`) that validates its request and returns
the response message; :mod:`exchange.service` runs them. Validation raises
:class:`~exchange.errors.InvalidFieldError` naming the field.

Lists are paginated as in AIP-158: ``page_size`` 0 means the default, larger
than the maximum means the maximum, negative is refused; ``page_token`` is
opaque and bound to the request's other fields, so a token reused with a
different filter is refused rather than silently answering a different
question.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import ColumnElement, Connection, and_, func, or_, select

from exchange.errors import InvalidFieldError, NotFoundError
from exchange.identifiers import (
    parse_application_number,
    parse_currency,
    parse_ipc,
    parse_ipc_prefix,
)
from exchange.models import (
    CreditEventRow,
    LicenceRow,
    OfferIpcRow,
    OfferRow,
    PartyRow,
    PatentRow,
    PledgeRow,
    StatementRow,
)
from exchange.projections import INDEXED_IPC_LEVEL
from exchange.statements import to_date
from exchange.viewstore import decode_patent
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.models import Cosignature

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_KEYWORD = 100
MAX_WATCH_TERMS = 50
# Offers read per round trip by a watch.
WATCH_BATCH = 200

M = TypeVar("M", bound=Message)


# -- pagination ---------------------------------------------------------------


def page_size(value: int) -> int:
    """AIP-158 page size: 0 means the default, too large means the maximum."""
    if value < 0:
        raise InvalidFieldError("page_size", f"{value} is negative")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _request_digest(request: Message) -> str:
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("page_token")
    copy.ClearField("page_size")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]


def make_page_token(request: Message, key: Sequence[Any]) -> str:
    """The token that continues ``request`` after the row whose sort key is ``key``."""
    raw = json.dumps([_request_digest(request), list(key)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def read_page_token(request: Message, token: str) -> list[Any] | None:
    """The sort key a page token continues after; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        digest, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as e:
        raise InvalidFieldError("page_token", "is not a token this service issued") from e
    if digest != _request_digest(request) or not isinstance(key, list):
        raise InvalidFieldError("page_token", "was issued for a request with other parameters")
    return key


# -- conversions --------------------------------------------------------------


def _date(text: str | None) -> pb.Date | None:
    if text is None:
        return None
    return _pb_date(dt.date.fromisoformat(text))


def _pb_date(day: dt.date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


def _terms(data: bytes) -> pb.RoyaltyTerms:
    return pb.RoyaltyTerms.FromString(data)


def offer_message(row: Any) -> api.Offer:
    """An ``offers`` row as an Offer."""
    offer = api.Offer(
        offer_id=row.offer_id, application_number=row.application_number, title=row.title,
        ipc=json.loads(row.ipcs), region=row.region, terms=_terms(row.terms),
        method=row.method, licence_term_months=row.months, status=row.status,
        patentees=json.loads(row.patentees), acceptances=row.acceptances, origin=row.origin,
        index=row.idx, cursor=row.seq,
    )  # fmt: skip
    if row.upfront_minor is not None:
        offer.upfront_fee.CopyFrom(
            pb.Money(amount_minor=row.upfront_minor, currency=row.upfront_currency)
        )
    published = row.published_at
    if published.tzinfo is None:  # SQLite hands back naive UTC
        published = published.replace(tzinfo=dt.UTC)
    offer.published_at.FromDatetime(published)
    return offer


def licence_message(row: Any) -> api.Licence:
    """A ``licences`` row as a Licence."""
    return api.Licence(
        license_id=row.license_id, application_number=row.application_number,
        licensee=row.licensee, licensors=json.loads(row.licensors), type=row.type,
        start_date=_date(row.start_date), end_date=_date(row.end_date),
        terms=_terms(row.terms), offer_id=row.offer_id or b"",
        recordal_due=_date(row.recordal_due), recorded=row.recordal_number is not None,
        recordal_number=row.recordal_number or "", origin=row.origin, index=row.idx,
    )  # fmt: skip


def pledge_message(row: Any) -> api.Pledge:
    """A ``pledges`` row as a Pledge."""
    return api.Pledge(
        pledge_id=row.pledge_id, pledgors=json.loads(row.pledgors), pledgee=row.pledgee,
        secured_amount=pb.Money(amount_minor=row.amount_minor, currency=row.currency),
        debt_start=_date(row.debt_start), debt_end=_date(row.debt_end),
        released=row.released, index=row.idx,
    )  # fmt: skip


def _id32(value: bytes, field: str) -> bytes:
    if len(value) != 32:
        raise InvalidFieldError(field, f"is {len(value)} bytes; a statement id is 32")
    return value


def _party_id(value: str, field: str) -> str:
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidFieldError(
            field, f"{value[:40]!r} is not a party id (32 lowercase hex digits)"
        )
    return value


# -- patents and offers -------------------------------------------------------


def get_patent(conn: Connection, request: api.GetPatentRequest) -> api.GetPatentResponse:
    """A patent with its encumbrances."""
    number = str(parse_application_number(request.application_number))
    row = conn.execute(select(PatentRow).where(PatentRow.application_number == number)).first()
    if row is None:
        raise NotFoundError("application_number", f"no patent {number} is recorded")
    state = decode_patent(row.state)
    response = api.GetPatentResponse(
        application_number=number, owners=state.owners, status=state.status,
        home=row.home, title=row.title, ipc=json.loads(row.ipcs), region=row.region,
        expiry_date=_pb_date(state.expiry),
        suspensions=sorted(state.suspended), licence_count=len(state.licences),
    )  # fmt: skip
    if state.fees_paid_until is not None:
        response.fees_paid_until.CopyFrom(_pb_date(state.fees_paid_until))
    licences = conn.execute(
        select(LicenceRow).where(LicenceRow.application_number == number).order_by(LicenceRow.idx)
    ).all()
    response.licences.extend(licence_message(x) for x in licences)
    if state.pledge is not None:
        response.pledgee = state.pledge.pledgee
        pledge = conn.execute(
            select(PledgeRow).where(PledgeRow.pledge_id == state.pledge.pledge_id)
        ).one()
        response.pledge.CopyFrom(pledge_message(pledge))
    if state.offer is not None:
        response.active_offer_id = state.offer.offer_id
        offer = conn.execute(
            select(OfferRow).where(OfferRow.offer_id == state.offer.offer_id)
        ).one()
        response.active_offer.CopyFrom(offer_message(offer))
    return response


def get_offer(conn: Connection, request: api.GetOfferRequest) -> api.GetOfferResponse:
    """One offer."""
    offer_id = _id32(request.offer_id, "offer_id")
    row = conn.execute(select(OfferRow).where(OfferRow.offer_id == offer_id)).first()
    if row is None:
        raise NotFoundError("offer_id", f"no offer {offer_id.hex()} is known here")
    return api.GetOfferResponse(offer=offer_message(row))


def _ipc_match(prefix: str, field: str) -> tuple[ColumnElement[bool], bool]:
    """The condition for one prefix, and whether it is on ``offer_ipcs`` (else on ``offers``)."""
    canonical = parse_ipc_prefix(prefix, field).removesuffix("/")
    if len(canonical) < INDEXED_IPC_LEVEL:  # a section or class: any symbol starting so
        return OfferRow.ipcs.like(f'%"{canonical}%'), False
    if "/" not in canonical:  # subclass or main group: a stored key
        return OfferIpcRow.ipc == canonical, True
    try:
        return OfferIpcRow.ipc == str(parse_ipc(canonical, field)), True  # a whole symbol
    except InvalidFieldError:  # part of a subgroup ("H04L 9/3"): rare, scanned
        return OfferIpcRow.ipc.like(canonical + "%"), True


def _ipc_condition(prefixes: Sequence[str], field: str) -> ColumnElement[bool]:
    matches = [_ipc_match(p, f"{field}[{i}]") for i, p in enumerate(prefixes)]
    conditions = [condition for condition, keyed in matches if not keyed]
    keyed = [condition for condition, keyed in matches if keyed]
    if keyed:
        conditions.append(OfferRow.seq.in_(select(OfferIpcRow.seq).where(or_(*keyed))))
    return or_(*conditions)


def _keyword_condition(keywords: Sequence[str], field: str) -> ColumnElement[bool]:
    for i, word in enumerate(keywords):
        if not word.strip() or len(word) > MAX_KEYWORD:
            raise InvalidFieldError(f"{field}[{i}]", f"must be 1 to {MAX_KEYWORD} characters")
    return or_(*(OfferRow.title.icontains(w.strip(), autoescape=True) for w in keywords))


def _region_condition(region: str) -> ColumnElement[bool]:
    if len(region) not in (2, 4, 6) or not region.isdigit():
        raise InvalidFieldError("region", f"{region!r} is not a 2, 4 or 6 digit code")
    # An equality on the code's own level, so that its (level, seq) index
    # yields the newest matches first.
    column = {2: OfferRow.province, 4: OfferRow.city, 6: OfferRow.region}[len(region)]
    return column == region


@dataclass(frozen=True)
class SearchPlan:
    """A search request as SQL: conditions on ``offers``, and an IPC key to drive it, if any."""

    conditions: list[ColumnElement[bool]]
    ipc_key: ColumnElement[bool] | None


def search_plan(request: api.SearchOffersRequest) -> SearchPlan:
    """The SQL of a search request (validating each field)."""
    conditions: list[ColumnElement[bool]] = []
    ipc_key = None
    if request.ipc_prefix:
        condition, keyed = _ipc_match(request.ipc_prefix, "ipc_prefix")
        if keyed:
            ipc_key = condition
        else:
            conditions.append(condition)
    if request.keyword:
        if len(request.keyword) > MAX_KEYWORD:
            raise InvalidFieldError("keyword", f"is longer than {MAX_KEYWORD} characters")
        conditions.append(OfferRow.title.icontains(request.keyword.strip(), autoescape=True))
    if request.method:
        if request.method not in api.RoyaltyMethod.values():
            raise InvalidFieldError("method", f"{request.method} is not a RoyaltyMethod")
        conditions.append(OfferRow.method == request.method)
    if request.HasField("max_upfront_fee"):
        fee = request.max_upfront_fee
        currency = parse_currency(fee.currency, "max_upfront_fee.currency").code
        if fee.amount_minor < 0:
            raise InvalidFieldError("max_upfront_fee.amount_minor", "is negative")
        conditions.append(
            or_(
                OfferRow.upfront_minor.is_(None),
                and_(
                    OfferRow.upfront_currency == currency,
                    OfferRow.upfront_minor <= fee.amount_minor,
                ),
            )
        )
    if request.region:
        conditions.append(_region_condition(request.region))
    if request.status:
        if request.status not in api.OfferStatus.values():
            raise InvalidFieldError("status", f"{request.status} is not an OfferStatus")
        conditions.append(OfferRow.status == request.status)
    return SearchPlan(conditions, ipc_key)


def search_offers(conn: Connection, request: api.SearchOffersRequest) -> api.SearchOffersResponse:
    """A page of matching offers, newest first."""
    size = page_size(request.page_size)
    plan = search_plan(request)
    key = read_page_token(request, request.page_token)
    conditions = list(plan.conditions)
    if plan.ipc_key is not None:
        # Driven by the IPC key's rows, newest first; offers joined by seq.
        order = OfferIpcRow.seq
        query = select(OfferRow).join(OfferIpcRow, OfferIpcRow.seq == OfferRow.seq)
        conditions.append(plan.ipc_key)
    else:
        order = OfferRow.seq
        query = select(OfferRow)
    if key is not None:
        conditions.append(order < int(key[0]))
    rows = conn.execute(query.where(*conditions).order_by(order.desc()).limit(size + 1)).all()
    response = api.SearchOffersResponse(offers=[offer_message(r) for r in rows[:size]])
    if len(rows) > size:
        response.next_page_token = make_page_token(request, [rows[size - 1].seq])
    return response


def watch_filter(request: api.WatchOffersRequest) -> list[ColumnElement[bool]]:
    """The SQL conditions of a watch request (validating each field)."""
    for field in ("ipc_prefixes", "keywords"):
        if len(getattr(request, field)) > MAX_WATCH_TERMS:
            raise InvalidFieldError(field, f"at most {MAX_WATCH_TERMS} terms")
    conditions: list[ColumnElement[bool]] = []
    if request.ipc_prefixes:
        conditions.append(_ipc_condition(request.ipc_prefixes, "ipc_prefixes"))
    if request.keywords:
        conditions.append(_keyword_condition(request.keywords, "keywords"))
    return conditions


def watched_offers(
    conn: Connection, conditions: Sequence[ColumnElement[bool]], after: int
) -> list[api.Offer]:
    """The next matching offers after cursor ``after``, oldest first."""
    query = (
        select(OfferRow)
        .where(OfferRow.seq > after, *conditions)
        .order_by(OfferRow.seq)
        .limit(WATCH_BATCH)
    )
    return [offer_message(r) for r in conn.execute(query).all()]


# -- licences and credit ------------------------------------------------------


def list_licences(conn: Connection, request: api.ListLicencesRequest) -> api.ListLicencesResponse:
    """A page of a patent's or a licensee's licences, oldest first."""
    size = page_size(request.page_size)
    if bool(request.application_number) == bool(request.licensee):
        raise InvalidFieldError(
            "application_number", "set exactly one of application_number and licensee"
        )
    if request.application_number:
        number = str(parse_application_number(request.application_number))
        conditions = [LicenceRow.application_number == number]
    else:
        conditions = [LicenceRow.licensee == _party_id(request.licensee, "licensee")]
    key = read_page_token(request, request.page_token)
    if key is not None:
        origin, index = str(key[0]), int(key[1])
        conditions.append(
            or_(
                LicenceRow.origin > origin,
                and_(LicenceRow.origin == origin, LicenceRow.idx > index),
            )
        )
    query = (
        select(LicenceRow)
        .where(*conditions)
        .order_by(LicenceRow.origin, LicenceRow.idx)
        .limit(size + 1)
    )
    rows = conn.execute(query).all()
    response = api.ListLicencesResponse(licences=[licence_message(r) for r in rows[:size]])
    if len(rows) > size:
        last = rows[size - 1]
        response.next_page_token = make_page_token(request, [last.origin, last.idx])
    return response


def get_credit_record(
    conn: Connection, request: api.GetCreditRecordRequest
) -> api.GetCreditRecordResponse:
    """A party's credit record, oldest event first."""
    party_id = _party_id(request.party_id, "party_id")
    name = conn.execute(
        select(PartyRow.name).where(PartyRow.party_id == party_id)
    ).scalar_one_or_none()
    if name is None:
        raise NotFoundError("party_id", f"no party {party_id} is registered")
    rows = conn.execute(
        select(CreditEventRow)
        .where(CreditEventRow.party_id == party_id)
        .order_by(CreditEventRow.origin, CreditEventRow.idx)
    ).all()
    events = [
        api.CreditEvent(
            event_id=r.event_id,
            kind=r.kind,
            supervisor=r.supervisor,
            summary=r.summary,
            occurred_on=_date(r.occurred_on),
            repaired=r.repaired_by is not None,
            repaired_by=r.repaired_by or "",
            index=r.idx,
            evidence=[pb.EntryReference(origin=o, index=i) for o, i in json.loads(r.evidence)],
        )
        for r in rows
    ]
    return api.GetCreditRecordResponse(
        party_id=party_id, name=name, events=events,
        outstanding=sum(not e.repaired for e in events),
    )  # fmt: skip


# -- history ------------------------------------------------------------------


def history_indices(conn: Connection, request: api.GetHistoryRequest) -> tuple[str, list[int]]:
    """The subject's home origin and the indices of its entries there, in log order."""
    if bool(request.application_number) == bool(request.party_id):
        raise InvalidFieldError(
            "application_number", "set exactly one of application_number and party_id"
        )
    if request.application_number:
        number = str(parse_application_number(request.application_number))
        home = conn.execute(
            select(PatentRow.home).where(PatentRow.application_number == number)
        ).scalar_one_or_none()
        if home is None:
            raise NotFoundError("application_number", f"no patent {number} is recorded")
        subject = StatementRow.patent == number
    else:
        party_id = _party_id(request.party_id, "party_id")
        home = conn.execute(
            select(PartyRow.home).where(PartyRow.party_id == party_id)
        ).scalar_one_or_none()
        if home is None:
            raise NotFoundError("party_id", f"no party {party_id} is registered")
        subject = StatementRow.party == party_id
    query = (
        select(StatementRow.idx)
        .where(subject, StatementRow.origin == home)
        .order_by(StatementRow.idx)
    )
    return str(home), [int(i) for i in conn.execute(query).scalars()]


def cosignature_lines(conn: Connection, log_id: int, size: int) -> list[str]:
    """The witnesses' cosignature lines of this node's checkpoint at ``size``, by witness."""
    query = (
        select(Cosignature.line)
        .where(Cosignature.log_id == log_id, Cosignature.size == size)
        .order_by(Cosignature.witness)
    )
    return list(conn.execute(query).scalars())


def latest_cosigned_size(conn: Connection, log_id: int, witnesses: int) -> int | None:
    """The largest size of this node's log that at least ``witnesses`` witnesses cosigned."""
    query = (
        select(Cosignature.size)
        .where(Cosignature.log_id == log_id)
        .group_by(Cosignature.size)
        .having(func.count() >= witnesses)
        .order_by(Cosignature.size.desc())
        .limit(1)
    )
    size = conn.execute(query).scalar_one_or_none()
    return None if size is None else int(size)


# -- statistics ---------------------------------------------------------------


def _day_bound(request: api.GetStatisticsRequest, field: str) -> str | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    return to_date(getattr(request, field), field).isoformat()


def get_statistics(
    conn: Connection, request: api.GetStatisticsRequest
) -> api.GetStatisticsResponse:
    """Counts by month, region, IPC section and kind, and pledged amounts."""
    low, high = _day_bound(request, "from_date"), _day_bound(request, "to_date")
    if low is not None and high is not None and low > high:
        raise InvalidFieldError("to_date", f"{high} is before from_date {low}")
    month = func.substr(StatementRow.day, 1, 7)
    conditions: list[ColumnElement[bool]] = []
    if low is not None:
        conditions.append(StatementRow.day >= low)
    if high is not None:
        conditions.append(StatementRow.day <= high)
    dims = (
        month.label("month"),
        func.coalesce(StatementRow.region, "").label("region"),
        func.coalesce(StatementRow.ipc_section, "").label("section"),
        StatementRow.kind,
    )
    counts = conn.execute(
        select(*dims, func.count().label("n")).where(*conditions).group_by(*dims)
    ).all()
    pledged = conn.execute(
        select(*dims, PledgeRow.currency, func.sum(PledgeRow.amount_minor))
        .join(PledgeRow, PledgeRow.pledge_id == StatementRow.id)
        .where(*conditions)
        .group_by(*dims, PledgeRow.currency)
    ).all()
    amounts: dict[tuple[str, str, str, str], list[pb.Money]] = {}
    for m, region, section, kind, currency, total in pledged:
        amounts.setdefault((m, region, section, kind), []).append(
            pb.Money(amount_minor=int(total), currency=currency)
        )
    rows = [
        api.StatisticsRow(
            month=m,
            region=region,
            ipc_section=section,
            kind=kind,
            count=int(n),
            pledged=sorted(amounts.get((m, region, section, kind), []), key=lambda x: x.currency),
        )
        for m, region, section, kind, n in counts
    ]
    rows.sort(key=lambda r: (r.month, r.region, r.ipc_section, r.kind))
    return api.GetStatisticsResponse(rows=rows)
