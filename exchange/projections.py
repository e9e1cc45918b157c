"""Query views of transactions: offers, licences, transfers, pledges, disputes, credit events.

:func:`project` is called by :func:`exchange.views.apply_entry` for every
applied entry, through the same :class:`~exchange.viewstore.ViewStore`,
after the subject's state was updated: it inserts a row for each new
transaction and updates the status of the ones the statement touches.
Rows are keyed by the statement id of the statement that created them,
which is also how later statements refer to them (``offer_id``,
``license_id``, ``pledge_id``, …).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable

from exchange.identifiers import ipc_search_keys
from exchange.models import (
    CreditEventRow,
    DisputeRow,
    LicenceRow,
    OfferIpcRow,
    OfferRow,
    PledgeRow,
    TransferRow,
)
from exchange.rules import PatentState, up_front
from exchange.statements import to_date
from exchange.viewstore import ViewStore
from kaifang.exchange.v1 import exchange_pb2
from kaifang.exchange.v1 import statements_pb2 as pb

# The shortest IPC prefix kept in offer_ipcs: a class ("H04"). A section
# matches so many offers that a scan of the newest finds a page at once.
INDEXED_IPC_LEVEL = 3
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


def _ids(values: Iterable[str]) -> str:
    """Party ids as a JSON array."""
    return _ids_of(tuple(values))


@functools.lru_cache(maxsize=4096)
def _ids_of(values: tuple[str, ...]) -> str:
    # Licences of one patent repeat its owners: encode each list once.
    return json.dumps(list(values))


def project(
    store: ViewStore,
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
        store.update(OfferRow, ended.offer_id, {"status": status})
    if kind == "offer_published":
        _offer(store, statement.offer_published, sid, place, sequenced_at, before)
    elif kind == "license_accepted":
        a = statement.license_accepted
        assert after is not None
        assert before is not None
        licence = after.licences[-1]
        store.insert(
            LicenceRow, dict(
                license_id=sid, application_number=after.application_number,
                licensee=a.licensee, licensors=_ids(before.owners), type=licence.type,
                start_date=licence.start.isoformat(), end_date=licence.end.isoformat(),
                terms=a.terms.SerializeToString(deterministic=True), offer_id=a.offer_id,
                recordal_due=licence.recordal_due.isoformat(), recordal_number=None, **place,
            )
        )  # fmt: skip
        store.increment(OfferRow, a.offer_id, "acceptances")
    elif kind == "license_granted":
        g = statement.license_granted
        assert after is not None
        licence = after.licences[-1]
        store.insert(
            LicenceRow, dict(
                license_id=sid, application_number=after.application_number,
                licensee=g.licensee, licensors=_ids(g.licensors), type=g.type,
                start_date=licence.start.isoformat(), end_date=licence.end.isoformat(),
                terms=g.terms.SerializeToString(deterministic=True), offer_id=None,
                recordal_due=licence.recordal_due.isoformat(), recordal_number=None, **place,
            )
        )  # fmt: skip
    elif kind == "license_recorded":
        r = statement.license_recorded
        store.update(LicenceRow, r.license_id, {"recordal_number": r.recordal_number})
    elif kind == "transfer_registered":
        t = statement.transfer_registered
        price = t.price if t.HasField("price") else None
        store.insert(
            TransferRow, dict(
                transfer_id=sid, application_number=t.application_number,
                assignors=_ids(t.assignors), assignees=_ids(t.assignees),
                price_minor=price.amount_minor if price else None,
                currency=price.currency if price else None, **place,
            )
        )  # fmt: skip
    elif kind == "pledge_registered":
        p = statement.pledge_registered
        store.insert(
            PledgeRow, dict(
                pledge_id=sid, application_number=p.application_number,
                pledgors=_ids(p.pledgors), pledgee=p.pledgee,
                amount_minor=p.secured_amount.amount_minor, currency=p.secured_amount.currency,
                debt_start=iso(p.debt_start, "debt_start"), debt_end=iso(p.debt_end, "debt_end"),
                released=False, **place,
            )
        )  # fmt: skip
    elif kind == "pledge_released":
        store.update(PledgeRow, statement.pledge_released.pledge_id, {"released": True})
    elif kind == "dispute_filed":
        d = statement.dispute_filed
        store.insert(
            DisputeRow, dict(
                dispute_id=sid, application_number=d.application_number,
                subject_id=d.subject_id, kind=d.kind, claimant=d.claimant,
                respondents=_ids(d.respondents), summary=d.summary,
                outcome=pb.MEDIATION_OUTCOME_UNSPECIFIED, mediator=None, **place,
            )
        )  # fmt: skip
    elif kind == "mediation_recorded":
        m = statement.mediation_recorded
        store.update(DisputeRow, m.dispute_id, {"outcome": m.outcome, "mediator": m.mediator})
    elif kind == "credit_event_recorded":
        c = statement.credit_event_recorded
        store.insert(
            CreditEventRow, dict(
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
        store.update(CreditEventRow, r2.event_id, {"repaired_by": r2.supervisor})


def _offer(
    store: ViewStore,
    o: pb.OfferPublished,
    sid: bytes,
    place: dict[str, object],
    sequenced_at: dt.datetime,
    before: PatentState | None,
) -> None:
    assert before is not None
    patent = store.patent_info(o.application_number)
    assert patent is not None
    ipcs: list[str] = json.loads(patent.ipcs)
    fee = up_front(o.terms)
    method = o.terms.WhichOneof("method")
    assert method is not None
    seq = store.next_seq()
    store.insert(
        OfferRow, dict(
            offer_id=sid, seq=seq, application_number=o.application_number,
            published_at=sequenced_at, title=patent.title, ipcs=patent.ipcs,
            region=patent.region, province=patent.region[:2], city=patent.region[:4],
            method=METHOD_OF[method],
            upfront_minor=fee[0] if fee else None, upfront_currency=fee[1] if fee else None,
            months=o.licence_term_months, terms=o.terms.SerializeToString(deterministic=True),
            patentees=_ids(before.owners), status=exchange_pb2.OFFER_STATUS_ACTIVE,
            acceptances=0, **place,
        )
    )  # fmt: skip
    keys = dict.fromkeys(
        key for ipc in ipcs for key in ipc_search_keys(ipc) if len(key) >= INDEXED_IPC_LEVEL
    )
    store.insert_many(OfferIpcRow, [{"ipc": key, "seq": seq, "offer_id": sid} for key in keys])
