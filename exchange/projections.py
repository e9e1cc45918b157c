"""Query views of transactions: offers, licences, transfers, pledges, disputes, credit events.

:func:`project` is called by :func:`exchange.views.apply_entry` for every
applied entry, on the same connection, after the subject's state was
updated: it inserts a row for each new transaction and updates the status
of the ones the statement touches. Rows are keyed by the statement id of
the statement that created them, which is also how later statements refer
to them (``offer_id``, ``license_id``, ``pledge_id``, …).
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import Connection, func, insert, select, text, update

from exchange.models import (
    CreditEventRow,
    DisputeRow,
    LicenceRow,
    OfferIpcRow,
    OfferRow,
    PatentRow,
    PledgeRow,
    TransferRow,
)
from exchange.rules import PatentState, up_front
from exchange.statements import to_date
from kaifang.exchange.v1 import exchange_pb2
from kaifang.exchange.v1 import statements_pb2 as pb

# RoyaltyTerms variant -> RoyaltyMethod.
METHOD_OF = {
    "lump_sum": exchange_pb2.ROYALTY_METHOD_LUMP_SUM,
    "instalments": exchange_pb2.ROYALTY_METHOD_INSTALMENTS,
    "running": exchange_pb2.ROYALTY_METHOD_RUNNING,
    "entry_fee_and_royalty": exchange_pb2.ROYALTY_METHOD_ENTRY_FEE_AND_ROYALTY,
    "free": exchange_pb2.ROYALTY_METHOD_FREE,
}


def iso(day: pb.Date, field: str) -> str:
    """A proto Date as ``YYYY-MM-DD``."""
    return to_date(day, field).isoformat()


def _ids(values: object) -> str:
    return json.dumps(list(values))  # type: ignore[call-overload]


def _next_seq(conn: Connection) -> int:
    if conn.dialect.name == "postgresql":
        # Watchers resume after the highest cursor they saw: offers must become
        # visible in cursor order, so their numbering is serialised.
        conn.execute(text("LOCK TABLE offers IN EXCLUSIVE MODE"))
    last = conn.execute(select(func.max(OfferRow.seq))).scalar_one_or_none()
    return 1 if last is None else int(last) + 1


def project(
    conn: Connection,
    statement: pb.Statement,
    sid: bytes,
    origin: str,
    index: int,
    sequenced_at: dt.datetime,
    before: PatentState | None,
    after: PatentState | None,
) -> None:
    """Update the transaction views for one applied statement."""
    kind = statement.WhichOneof("body")
    place = {"origin": origin, "idx": index}
    ended = before.offer if before is not None else None
    if ended is not None and (after is None or after.offer != ended):
        status = (
            exchange_pb2.OFFER_STATUS_WITHDRAWN
            if kind == "offer_withdrawn"
            else exchange_pb2.OFFER_STATUS_ENDED
        )
        conn.execute(
            update(OfferRow).where(OfferRow.offer_id == ended.offer_id).values(status=status)
        )
    if kind == "offer_published":
        _offer(conn, statement.offer_published, sid, place, sequenced_at, before)
    elif kind == "license_accepted":
        a = statement.license_accepted
        assert after is not None
        assert before is not None
        licence = after.licences[-1]
        conn.execute(
            insert(LicenceRow).values(
                license_id=sid, application_number=after.application_number,
                licensee=a.licensee, licensors=_ids(before.owners), type=licence.type,
                start_date=licence.start.isoformat(), end_date=licence.end.isoformat(),
                terms=a.terms.SerializeToString(deterministic=True), offer_id=a.offer_id,
                recordal_due=licence.recordal_due.isoformat(), recordal_number=None, **place,
            )
        )  # fmt: skip
        conn.execute(
            update(OfferRow)
            .where(OfferRow.offer_id == a.offer_id)
            .values(acceptances=OfferRow.acceptances + 1)
        )
    elif kind == "license_granted":
        g = statement.license_granted
        assert after is not None
        licence = after.licences[-1]
        conn.execute(
            insert(LicenceRow).values(
                license_id=sid, application_number=after.application_number,
                licensee=g.licensee, licensors=_ids(g.licensors), type=g.type,
                start_date=licence.start.isoformat(), end_date=licence.end.isoformat(),
                terms=g.terms.SerializeToString(deterministic=True), offer_id=None,
                recordal_due=licence.recordal_due.isoformat(), recordal_number=None, **place,
            )
        )  # fmt: skip
    elif kind == "license_recorded":
        r = statement.license_recorded
        conn.execute(
            update(LicenceRow)
            .where(LicenceRow.license_id == r.license_id)
            .values(recordal_number=r.recordal_number)
        )
    elif kind == "transfer_registered":
        t = statement.transfer_registered
        price = t.price if t.HasField("price") else None
        conn.execute(
            insert(TransferRow).values(
                transfer_id=sid, application_number=t.application_number,
                assignors=_ids(t.assignors), assignees=_ids(t.assignees),
                price_minor=price.amount_minor if price else None,
                currency=price.currency if price else None, **place,
            )
        )  # fmt: skip
    elif kind == "pledge_registered":
        p = statement.pledge_registered
        conn.execute(
            insert(PledgeRow).values(
                pledge_id=sid, application_number=p.application_number,
                pledgors=_ids(p.pledgors), pledgee=p.pledgee,
                amount_minor=p.secured_amount.amount_minor, currency=p.secured_amount.currency,
                debt_start=iso(p.debt_start, "debt_start"), debt_end=iso(p.debt_end, "debt_end"),
                released=False, **place,
            )
        )  # fmt: skip
    elif kind == "pledge_released":
        conn.execute(
            update(PledgeRow)
            .where(PledgeRow.pledge_id == statement.pledge_released.pledge_id)
            .values(released=True)
        )
    elif kind == "dispute_filed":
        d = statement.dispute_filed
        conn.execute(
            insert(DisputeRow).values(
                dispute_id=sid, application_number=d.application_number,
                subject_id=d.subject_id, kind=d.kind, claimant=d.claimant,
                respondents=_ids(d.respondents), summary=d.summary,
                outcome=pb.MEDIATION_OUTCOME_UNSPECIFIED, mediator=None, **place,
            )
        )  # fmt: skip
    elif kind == "mediation_recorded":
        m = statement.mediation_recorded
        conn.execute(
            update(DisputeRow)
            .where(DisputeRow.dispute_id == m.dispute_id)
            .values(outcome=m.outcome, mediator=m.mediator)
        )
    elif kind == "credit_event_recorded":
        c = statement.credit_event_recorded
        conn.execute(
            insert(CreditEventRow).values(
                event_id=sid, party_id=c.party_id, kind=c.kind, supervisor=c.supervisor,
                summary=c.summary,
                occurred_on=iso(c.occurred_on, "occurred_on")
                if c.HasField("occurred_on") else None,
                evidence=json.dumps([[e.origin, e.index] for e in c.evidence]),
                repaired_by=None, **place,
            )
        )  # fmt: skip
    elif kind == "credit_event_repaired":
        r2 = statement.credit_event_repaired
        conn.execute(
            update(CreditEventRow)
            .where(CreditEventRow.event_id == r2.event_id)
            .values(repaired_by=r2.supervisor)
        )


def _offer(
    conn: Connection,
    o: pb.OfferPublished,
    sid: bytes,
    place: dict[str, object],
    sequenced_at: dt.datetime,
    before: PatentState | None,
) -> None:
    assert before is not None
    patent = conn.execute(
        select(PatentRow.title, PatentRow.region, PatentRow.ipcs).where(
            PatentRow.application_number == o.application_number
        )
    ).one()
    ipcs: list[str] = json.loads(patent.ipcs)
    fee = up_front(o.terms)
    method = o.terms.WhichOneof("method")
    assert method is not None
    conn.execute(
        insert(OfferRow).values(
            offer_id=sid, seq=_next_seq(conn), application_number=o.application_number,
            published_at=sequenced_at, title=patent.title, ipcs=patent.ipcs,
            region=patent.region, method=METHOD_OF[method],
            upfront_minor=fee[0] if fee else None, upfront_currency=fee[1] if fee else None,
            months=o.licence_term_months, terms=o.terms.SerializeToString(deterministic=True),
            patentees=_ids(before.owners), status=exchange_pb2.OFFER_STATUS_ACTIVE,
            acceptances=0, **place,
        )
    )  # fmt: skip
    conn.execute(
        insert(OfferIpcRow), [{"offer_id": sid, "ipc": ipc} for ipc in dict.fromkeys(ipcs)]
    )
