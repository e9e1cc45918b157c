"""The views: the current state of patents and parties, materialised from the logs.

Everything here is a unit of work (a function of a SQLAlchemy
:class:`~sqlalchemy.Connection`), run by :class:`ledger.db.Database`:

- :class:`DbWorld` is admission's :class:`~exchange.admission.World` read
  from the views;
- :func:`build_entry` makes the ``LogEntry`` (the ledger leaf) of an
  admitted statement, with the ``previous`` link of each subject;
- :func:`apply_entry` applies one log entry to the views, strictly in log
  order per origin (a cursor per origin says where each log is up to);
- :func:`clear` forgets the views, so that they can be rebuilt from the logs.

States are stored as JSON; a few columns are kept beside them to query by.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from exchange import parties, rules
from exchange.admission import LEGAL_TIME_ZONE, PARTY_KINDS, PATENT_KINDS, Admitted, subject_of
from exchange.errors import ViewOrderError
from exchange.identifiers import PatentType
from exchange.models import PartyRow, PatentRow, StatementRow, ViewBase, ViewCursor
from exchange.parties import PartyState
from exchange.projections import project
from exchange.rules import Licence, Offer, PatentState, Pledge
from exchange.statements import parse_statement, statement_id
from kaifang.exchange.v1 import statements_pb2 as pb

# Every view table, in an order that deletes cleanly.
VIEW_TABLES = tuple(reversed(ViewBase.metadata.sorted_tables))


def _date(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _day(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def _must(value: dt.date | None) -> dt.date:
    assert value is not None
    return value


def encode_patent(state: PatentState) -> str:
    """Serialise a patent's state as JSON."""
    return json.dumps(
        {
            "application_number": state.application_number,
            "type": int(state.type),
            "owners": list(state.owners),
            "status": int(state.status),
            "expiry": _date(state.expiry),
            "fees_paid_until": _date(state.fees_paid_until),
            "suspended": sorted(int(c) for c in state.suspended),
            "offer": None
            if state.offer is None
            else {
                "id": state.offer.offer_id.hex(),
                "terms": state.offer.terms.hex(),
                "months": state.offer.licence_term_months,
            },
            "licences": [
                {
                    "id": x.license_id.hex(),
                    "licensee": x.licensee,
                    "type": int(x.type),
                    "start": _date(x.start),
                    "end": _date(x.end),
                    "recordal_due": _date(x.recordal_due),
                    "recorded": x.recorded,
                }
                for x in state.licences
            ],
            "pledge": None
            if state.pledge is None
            else {
                "id": state.pledge.pledge_id.hex(),
                "pledgee": state.pledge.pledgee,
                "debt_end": _date(state.pledge.debt_end),
            },
        },
        sort_keys=True,
    )


def decode_patent(text: str) -> PatentState:
    """Parse what :func:`encode_patent` wrote."""
    raw: dict[str, Any] = json.loads(text)
    offer, pledge = raw["offer"], raw["pledge"]
    return PatentState(
        application_number=raw["application_number"],
        type=PatentType(raw["type"]),
        owners=tuple(raw["owners"]),
        status=raw["status"],
        expiry=_must(_day(raw["expiry"])),
        fees_paid_until=_day(raw["fees_paid_until"]),
        suspended=frozenset(raw["suspended"]),
        offer=None
        if offer is None
        else Offer(bytes.fromhex(offer["id"]), bytes.fromhex(offer["terms"]), offer["months"]),
        licences=tuple(
            Licence(
                bytes.fromhex(x["id"]),
                x["licensee"],
                x["type"],
                _must(_day(x["start"])),
                _must(_day(x["end"])),
                _must(_day(x["recordal_due"])),
                x["recorded"],
            )
            for x in raw["licences"]
        ),
        pledge=None
        if pledge is None
        else Pledge(
            bytes.fromhex(pledge["id"]), pledge["pledgee"], _must(_day(pledge["debt_end"]))
        ),
    )


def encode_party(state: PartyState) -> str:
    """Serialise a party's state as JSON."""
    return json.dumps(
        {
            "party_id": state.party_id,
            "name": state.name,
            "kind": int(state.kind),
            "public_key": state.public_key.hex(),
            "roles": sorted(int(r) for r in state.roles),
            "credit_events": sorted(e.hex() for e in state.credit_events),
        },
        sort_keys=True,
    )


def decode_party(text: str) -> PartyState:
    """Parse what :func:`encode_party` wrote."""
    raw: dict[str, Any] = json.loads(text)
    return PartyState(
        party_id=raw["party_id"],
        name=raw["name"],
        kind=raw["kind"],
        public_key=bytes.fromhex(raw["public_key"]),
        roles=frozenset(raw["roles"]),
        credit_events=frozenset(bytes.fromhex(e) for e in raw["credit_events"]),
    )


class DbWorld:
    """Admission's view of the world, read from the views on one connection."""

    def __init__(
        self, conn: Connection, register_key: bytes, operator_keys: Mapping[str, bytes]
    ) -> None:
        """Read through ``conn``; the register and operator keys come from configuration."""
        self.conn = conn
        self._register_key = register_key
        self._operator_keys = operator_keys

    def register_key(self) -> bytes:
        """The register authority's public key."""
        return self._register_key

    def operator_key(self, origin: str) -> bytes | None:
        """The public key of exchange ``origin``'s operator."""
        return self._operator_keys.get(origin)

    def party(self, party_id: str) -> PartyState | None:
        """The party's state, or None."""
        text = self.conn.execute(
            select(PartyRow.state).where(PartyRow.party_id == party_id)
        ).scalar_one_or_none()
        return None if text is None else decode_party(text)

    def patent(self, application_number: str) -> PatentState | None:
        """The patent's state, or None."""
        text = self.conn.execute(
            select(PatentRow.state).where(PatentRow.application_number == application_number)
        ).scalar_one_or_none()
        return None if text is None else decode_patent(text)

    def _statement(self, sid: bytes) -> Row[tuple[str, str | None, str | None]] | None:
        query = select(StatementRow.kind, StatementRow.patent, StatementRow.party).where(
            StatementRow.id == sid
        )
        return self.conn.execute(query).first()

    def patent_of(self, statement_id: bytes) -> str | None:
        """The patent a sequenced statement is about."""
        row = self._statement(statement_id)
        return None if row is None else row.patent

    def kind_of(self, statement_id: bytes) -> str | None:
        """The kind of a sequenced statement."""
        row = self._statement(statement_id)
        return None if row is None else row.kind

    def party_of_event(self, event_id: bytes) -> str | None:
        """The party whose record holds credit event ``event_id``."""
        row = self._statement(event_id)
        return row.party if row is not None and row.kind == "credit_event_recorded" else None

    def last_index(self, patent: str | None, party: str | None) -> int | None:
        """Index, in its home log, of the last entry about the subject."""
        if patent is not None:
            query = select(PatentRow.last_index).where(PatentRow.application_number == patent)
        else:
            query = select(PartyRow.last_index).where(PartyRow.party_id == party)
        value = self.conn.execute(query).scalar_one_or_none()
        return None if value is None else int(value)


def build_entry(
    origin: str,
    sequenced_at: dt.datetime,
    signed: pb.SignedStatement,
    admitted: Admitted,
    world: DbWorld,
) -> bytes:
    """Return the ledger leaf of an admitted statement, with its subject's ``previous`` link.

    The statement bytes and signatures are carried verbatim.
    """
    link = pb.SubjectLink()
    if admitted.patent is not None:
        link.patent = admitted.patent
    elif admitted.party is not None:
        link.party = admitted.party
    previous = world.last_index(admitted.patent, admitted.party)
    if previous is not None:
        link.previous_index = previous
    entry = pb.LogEntry(
        origin=origin, statement=signed.statement, signatures=signed.signatures, previous=[link]
    )
    entry.sequenced_at.FromDatetime(sequenced_at)
    return entry.SerializeToString()


def apply_entry(conn: Connection, world: DbWorld, origin: str, index: int, data: bytes) -> None:
    """Apply entry ``index`` of ``origin``'s log to the views; entries must come in order.

    Raises :class:`ViewOrderError` if ``index`` is not the next one for ``origin``.
    """
    expected = conn.execute(
        select(ViewCursor.next_index).where(ViewCursor.origin == origin)
    ).scalar_one_or_none()
    if (expected or 0) != index:
        raise ViewOrderError(
            f"{origin}: entry {index} applied, but the views expect {expected or 0}"
        )
    entry = pb.LogEntry.FromString(data)
    statement = parse_statement(entry.statement)
    sid = statement_id(entry.statement)
    kind = statement.WhichOneof("body")
    assert kind is not None
    sequenced_at = entry.sequenced_at.ToDatetime(tzinfo=dt.UTC)
    today = sequenced_at.astimezone(LEGAL_TIME_ZONE).date()
    patent, party = subject_of(statement, world)
    before = after = None
    if kind in PATENT_KINDS and patent is not None:
        before = world.patent(patent)
        after = rules.apply(before, statement, sid, today)
        r = statement.patent_recorded if kind == "patent_recorded" else None
        values = {"state": encode_patent(after), "status": int(after.status), "last_index": index}
        if r is not None:
            conn.execute(
                insert(PatentRow).values(
                    application_number=patent, home=origin, title=r.title, ipc=r.ipc[0],
                    ipcs=json.dumps(list(r.ipc)), region=r.region, **values,
                )
            )  # fmt: skip
        else:
            conn.execute(
                update(PatentRow).where(PatentRow.application_number == patent).values(values)
            )
    elif kind in PARTY_KINDS and party is not None:
        subject = parties.apply(world.party(party), statement, sid)
        if kind == "party_registered":
            conn.execute(
                insert(PartyRow).values(
                    party_id=party, home=origin, name=subject.name,
                    region=statement.party_registered.region,
                    state=encode_party(subject), last_index=index,
                )
            )  # fmt: skip
        else:
            conn.execute(
                update(PartyRow)
                .where(PartyRow.party_id == party)
                .values(state=encode_party(subject), last_index=index)
            )
    elif patent is not None:  # disputes and mediation: on the patent's history only
        conn.execute(
            update(PatentRow).where(PatentRow.application_number == patent).values(last_index=index)
        )
    project(conn, statement, sid, origin, index, sequenced_at, before, after)
    region, section = _dimensions(conn, patent, party)
    conn.execute(
        insert(StatementRow).values(
            id=sid, origin=origin, idx=index, kind=kind, patent=patent, party=party,
            sequenced_at=sequenced_at, day=today.isoformat(), region=region,
            ipc_section=section,
        )
    )  # fmt: skip
    if expected is None:
        conn.execute(insert(ViewCursor).values(origin=origin, next_index=index + 1))
    else:
        conn.execute(
            update(ViewCursor).where(ViewCursor.origin == origin).values(next_index=index + 1)
        )


def _dimensions(
    conn: Connection, patent: str | None, party: str | None
) -> tuple[str | None, str | None]:
    """The statistics dimensions of a statement: its subject's region and IPC section."""
    if patent is not None:
        row = conn.execute(
            select(PatentRow.region, PatentRow.ipc).where(PatentRow.application_number == patent)
        ).first()
        return (None, None) if row is None else (row.region, row.ipc[:1])
    if party is not None:
        region = conn.execute(
            select(PartyRow.region).where(PartyRow.party_id == party)
        ).scalar_one_or_none()
        return region, None
    return None, None


def clear(conn: Connection) -> None:
    """Forget every view, so that they can be rebuilt from the logs."""
    for table in VIEW_TABLES:
        conn.execute(delete(table))
