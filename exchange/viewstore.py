"""Where :func:`exchange.views.apply_entry` reads and writes: the database, or memory.

Applying a log entry to the views is the same logic whether it runs one
entry at a time inside an admission transaction or over a whole log during
a rebuild; only the storage differs. :class:`ViewStore` is what that logic
needs:

- :class:`SqlViewStore` reads and writes the view tables on a connection,
  with statements built once per table (building SQLAlchemy statements per
  row costs more than SQLite's own work);
- :class:`MemoryViewStore` keeps every row in dictionaries and writes them
  all at the end with bulk inserts, which is what makes a rebuild fast.

Rows are dictionaries keyed by column name; patents and parties carry their
decoded state beside the row and are encoded when written.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)

from exchange.identifiers import PatentType
from exchange.models import (
    OfferRow,
    PartyRow,
    PatentRow,
    StatementRow,
    ViewBase,
    ViewCursor,
)
from exchange.parties import PartyState
from exchange.rules import Licence, Offer, PatentState, Pledge
from ledger.db import SQLITE_CACHE_KIB, Prepared

Row = dict[str, Any]
# SQLite page cache of the connection that writes a rebuild, in KiB.
REBUILD_CACHE_KIB = 512 * 1024
# Rows per bulk INSERT when a memory store is written out.
FLUSH_CHUNK = 5000
# The PostgreSQL advisory lock key that serialises offer numbering: any
# constant no other lock of the database uses ("kaifang" in ASCII).
OFFER_NUMBERING_LOCK = 0x6B616966616E67
# Every view table, in an order that deletes cleanly.
VIEW_TABLES: tuple[Table, ...] = tuple(reversed(ViewBase.metadata.sorted_tables))


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
            # A patent may hold many licences: each is a row of LICENCE_FIELDS.
            "licences": [
                [
                    x.license_id.hex(),
                    x.licensee,
                    int(x.type),
                    _date(x.start),
                    _date(x.end),
                    _date(x.recordal_due),
                    x.recorded,
                ]
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
        separators=(",", ":"),
    )


LICENCE_FIELDS = ("id", "licensee", "type", "start", "end", "recordal_due", "recorded")


def _licence(raw: list[Any] | dict[str, Any]) -> Licence:
    # Rows, or objects as views written before rows were used hold them.
    x = raw if isinstance(raw, dict) else dict(zip(LICENCE_FIELDS, raw, strict=True))
    return Licence(
        bytes.fromhex(x["id"]), x["licensee"], x["type"], _must(_day(x["start"])),
        _must(_day(x["end"])), _must(_day(x["recordal_due"])), x["recorded"],
    )  # fmt: skip


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
        licences=tuple(_licence(x) for x in raw["licences"]),
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


@dataclass(frozen=True)
class PatentInfo:
    """What the register recorded about a patent that the views query by."""

    title: str
    region: str
    ipcs: str  # JSON array, the main classification first
    main_ipc: str


class ViewStore(Protocol):
    """The reads and writes of applying log entries to the views."""

    def cursor(self, origin: str) -> int | None:
        """The index of the next entry of ``origin`` to apply, None if none was applied."""

    def set_cursor(self, origin: str, next_index: int) -> None:
        """Record that ``origin``'s entries below ``next_index`` are applied."""

    def flush(self) -> None:
        """Write whatever the store keeps until the end of the transaction."""

    def statement(self, sid: bytes) -> tuple[str, str | None, str | None] | None:
        """(kind, patent, party) of an applied statement, or None."""

    def patent(self, number: str) -> PatentState | None:
        """A patent's state, or None."""

    def patent_info(self, number: str) -> PatentInfo | None:
        """A patent's recorded title, region and IPC symbols, or None."""

    def party(self, party_id: str) -> PartyState | None:
        """A party's state, or None."""

    def party_region(self, party_id: str) -> str | None:
        """A party's region, or None if unregistered."""

    def home(self, patent: str | None, party: str | None) -> str | None:
        """The origin whose log is the home of a patent (or else a party), if known."""

    def put_patent(self, row: Row, state: PatentState) -> None:
        """Insert a patent (``row`` has every column but ``state``)."""

    def set_patent(self, number: str, state: PatentState | None, last_index: int) -> None:
        """Update a patent's state (unless None) and the index of its last entry."""

    def put_party(self, row: Row, state: PartyState) -> None:
        """Insert a party (``row`` has every column but ``state``)."""

    def set_party(self, party_id: str, state: PartyState, last_index: int) -> None:
        """Update a party's state and the index of its last entry."""

    def insert(self, table: type[ViewBase], row: Row) -> None:
        """Insert ``row`` into ``table``."""

    def insert_many(self, table: type[ViewBase], rows: list[Row]) -> None:
        """Insert ``rows`` into ``table``."""

    def update(self, table: type[ViewBase], key: object, values: Row) -> None:
        """Set ``values`` on the row of ``table`` whose (single-column) primary key is ``key``."""

    def increment(self, table: type[ViewBase], key: object, column: str) -> None:
        """Add one to ``column`` of the row of ``table`` whose primary key is ``key``."""

    def next_seq(self) -> int:
        """The next offer sequence number (the watch cursor)."""

    # Subjects, as admission's World names them.
    def patent_of(self, statement_id: bytes) -> str | None:
        """The patent a sequenced statement is about."""

    def party_of_event(self, event_id: bytes) -> str | None:
        """The party whose record holds credit event ``event_id``."""


def table_of(model: type[ViewBase]) -> Table:
    """The Core table of a view model."""
    return cast(Table, model.__table__)


@functools.cache
def _key_columns(model: type[ViewBase]) -> tuple[str, ...]:
    return tuple(str(c.name) for c in table_of(model).primary_key.columns)


def _key_column(model: type[ViewBase]) -> str:
    (column,) = _key_columns(model)
    return column


class _Subjects:
    """``patent_of`` and ``party_of_event`` from :meth:`ViewStore.statement`."""

    def statement(self, sid: bytes) -> tuple[str, str | None, str | None] | None:
        raise NotImplementedError

    def patent_of(self, statement_id: bytes) -> str | None:
        """The patent a sequenced statement is about."""
        found = self.statement(statement_id)
        return None if found is None else found[1]

    def party_of_event(self, event_id: bytes) -> str | None:
        """The party whose record holds credit event ``event_id``."""
        found = self.statement(event_id)
        return found[2] if found is not None and found[0] == "credit_event_recorded" else None


def _key(name: str = "k") -> Any:
    return bindparam(name)


_CURSOR = Prepared(select(ViewCursor.next_index).where(ViewCursor.origin == _key()))
_STATEMENT = Prepared(
    select(
        StatementRow.kind, StatementRow.patent, StatementRow.party, StatementRow.origin,
        StatementRow.idx,
    ).where(StatementRow.id == _key())
)  # fmt: skip
_PATENT = Prepared(
    select(
        PatentRow.state, PatentRow.title, PatentRow.region, PatentRow.ipcs, PatentRow.ipc,
        PatentRow.home, PatentRow.last_index,
    ).where(PatentRow.application_number == _key())
)  # fmt: skip
_PARTY = Prepared(
    select(PartyRow.state, PartyRow.region, PartyRow.home, PartyRow.last_index).where(
        PartyRow.party_id == _key()
    )
)
_MAX_SEQ = Prepared(select(func.max(OfferRow.seq)))
_INSERTS: dict[str, Prepared] = {t.name: Prepared(insert(t)) for t in VIEW_TABLES}
_UPDATES: dict[tuple[str, tuple[str, ...]], Prepared] = {}
_INCREMENTS: dict[tuple[str, str], Prepared] = {}


@dataclass
class _Subject:
    """What a transaction has read or written of one patent or party."""

    state: Any  # PatentState | PartyState
    info: PatentInfo | None
    region: str
    home: str
    last_index: int


class SqlViewStore(_Subjects):
    """The view tables on one connection, inside one transaction of the caller.

    What it reads is remembered until the transaction ends (the store is
    made per transaction), and what it writes updates that memory: a batch
    of statements about the same patent reads the patent once.
    """

    def __init__(self, conn: Connection) -> None:
        """Read and write through ``conn``."""
        self.conn = conn
        self._patents: dict[str, _Subject | None] = {}
        self._parties: dict[str, _Subject | None] = {}
        self._statements: dict[bytes, tuple[str, str | None, str | None, str, int] | None] = {}
        self._cursors: dict[str, int | None] = {}
        self._stored_cursors: dict[str, int | None] = {}  # as stored, for those moved
        self._seq: int | None = None

    def _insert(self, table: Table, row: Row) -> None:
        _INSERTS[table.name].run(self.conn, row)

    def _update(self, table: Table, key_column: str, key: object, values: Row) -> None:
        names = tuple(sorted(values))
        prepared = _UPDATES.get((table.name, names))
        if prepared is None:
            statement = update(table).where(table.c[key_column] == bindparam("_key"))
            statement = statement.values({n: bindparam(n) for n in names})
            prepared = _UPDATES[(table.name, names)] = Prepared(statement)
        prepared.run(self.conn, {"_key": key, **values})

    # -- reads --------------------------------------------------------------

    def _patent(self, number: str) -> _Subject | None:
        if number not in self._patents:
            row = _PATENT.first(self.conn, {"k": number})
            self._patents[number] = (
                None
                if row is None
                else _Subject(
                    decode_patent(row[0]),
                    PatentInfo(row[1], row[2], row[3], row[4]),
                    row[2],
                    row[5],
                    int(row[6]),
                )
            )
        return self._patents[number]

    def _party(self, party_id: str) -> _Subject | None:
        if party_id not in self._parties:
            row = _PARTY.first(self.conn, {"k": party_id})
            self._parties[party_id] = (
                None
                if row is None
                else _Subject(decode_party(row[0]), None, row[1], row[2], int(row[3]))
            )
        return self._parties[party_id]

    def placed(self, sid: bytes) -> tuple[str, int] | None:
        """(origin, index) of an applied statement, or None."""
        if sid not in self._statements:
            row = _STATEMENT.first(self.conn, {"k": sid})
            self._statements[sid] = None if row is None else (*row[:4], int(row[4]))
        found = self._statements[sid]
        return None if found is None else (found[3], found[4])

    def cursor(self, origin: str) -> int | None:
        """The index of the next entry of ``origin`` to apply, None if none was applied."""
        if origin not in self._cursors:
            row = _CURSOR.first(self.conn, {"k": origin})
            self._cursors[origin] = None if row is None else int(row[0])
        return self._cursors[origin]

    def statement(self, sid: bytes) -> tuple[str, str | None, str | None] | None:
        """(kind, patent, party) of an applied statement, or None."""
        self.placed(sid)
        found = self._statements[sid]
        return None if found is None else found[:3]

    def patent(self, number: str) -> PatentState | None:
        """A patent's state, or None."""
        subject = self._patent(number)
        return None if subject is None else subject.state

    def patent_info(self, number: str) -> PatentInfo | None:
        """A patent's recorded title, region and IPC symbols, or None."""
        subject = self._patent(number)
        return None if subject is None else subject.info

    def party(self, party_id: str) -> PartyState | None:
        """A party's state, or None."""
        subject = self._party(party_id)
        return None if subject is None else subject.state

    def party_region(self, party_id: str) -> str | None:
        """A party's region, or None if unregistered."""
        subject = self._party(party_id)
        return None if subject is None else subject.region

    def home(self, patent: str | None, party: str | None) -> str | None:
        """The home exchange of a patent or party, if the views know it."""
        subject = (
            self._patent(patent)
            if patent is not None
            else self._party(party)
            if party is not None
            else None
        )
        return None if subject is None else subject.home

    def last_index(self, patent: str | None, party: str | None) -> int | None:
        """Index, in its home log, of the last entry about the subject."""
        subject = self._patent(patent) if patent is not None else self._party(party or "")
        return None if subject is None else subject.last_index

    # -- writes -------------------------------------------------------------

    def set_cursor(self, origin: str, next_index: int) -> None:
        """Record that ``origin``'s entries below ``next_index`` are applied (at :meth:`flush`)."""
        if origin not in self._stored_cursors:
            self._stored_cursors[origin] = self.cursor(origin)
        self._cursors[origin] = next_index

    def flush(self) -> None:
        """Write what is kept until the end of the transaction: the cursors.

        A batch moves a cursor once, not once per entry. Call before commit.
        """
        table = table_of(ViewCursor)
        for origin, stored in self._stored_cursors.items():
            value = self._cursors[origin]
            if stored is None:
                self._insert(table, {"origin": origin, "next_index": value})
            elif value != stored:
                self._update(table, "origin", origin, {"next_index": value})
        self._stored_cursors.clear()

    def put_patent(self, row: Row, state: PatentState) -> None:
        """Insert a patent."""
        self._insert(table_of(PatentRow), {**row, "state": encode_patent(state)})
        info = PatentInfo(row["title"], row["region"], row["ipcs"], row["ipc"])
        self._patents[row["application_number"]] = _Subject(
            state, info, row["region"], row["home"], row["last_index"]
        )

    def set_patent(self, number: str, state: PatentState | None, last_index: int) -> None:
        """Update a patent's state (unless None) and the index of its last entry."""
        values: Row = {"last_index": last_index}
        if state is not None:
            values.update(state=encode_patent(state), status=int(state.status))
        self._update(table_of(PatentRow), "application_number", number, values)
        subject = self._patent(number)
        if subject is not None:
            subject.last_index = last_index
            if state is not None:
                subject.state = state

    def put_party(self, row: Row, state: PartyState) -> None:
        """Insert a party."""
        self._insert(table_of(PartyRow), {**row, "state": encode_party(state)})
        self._parties[row["party_id"]] = _Subject(
            state, None, row["region"], row["home"], row["last_index"]
        )

    def set_party(self, party_id: str, state: PartyState, last_index: int) -> None:
        """Update a party's state and the index of its last entry."""
        values = {"state": encode_party(state), "last_index": last_index}
        self._update(table_of(PartyRow), "party_id", party_id, values)
        subject = self._party(party_id)
        if subject is not None:
            subject.state, subject.last_index = state, last_index

    def insert(self, table: type[ViewBase], row: Row) -> None:
        """Insert ``row`` into ``table``."""
        self._insert(table_of(table), row)
        if table is StatementRow:
            self._statements[row["id"]] = (
                row["kind"], row["patent"], row["party"], row["origin"], row["idx"]
            )  # fmt: skip

    def insert_many(self, table: type[ViewBase], rows: list[Row]) -> None:
        """Insert ``rows`` into ``table`` (one executemany)."""
        _INSERTS[table.__tablename__].run_many(self.conn, rows)

    def update(self, table: type[ViewBase], key: object, values: Row) -> None:
        """Set ``values`` on the row whose primary key is ``key``."""
        self._update(table_of(table), _key_column(table), key, values)

    def increment(self, table: type[ViewBase], key: object, column: str) -> None:
        """Add one to ``column`` of the row whose primary key is ``key``."""
        prepared = _INCREMENTS.get((table.__tablename__, column))
        if prepared is None:
            t = table_of(table)
            statement = (
                update(t)
                .where(t.c[_key_column(table)] == bindparam("_key"))
                .values({column: t.c[column] + literal_column("1")})
            )
            prepared = _INCREMENTS[(table.__tablename__, column)] = Prepared(statement)
        prepared.run(self.conn, {"_key": key})

    def next_seq(self) -> int:
        """The next offer sequence number."""
        if self._seq is None:
            if self.conn.dialect.name == "postgresql":
                # Watchers resume after the highest cursor they saw: offers
                # must become visible in cursor order, so their numbering is
                # serialised until this transaction ends. By an advisory lock,
                # not by locking the offers table: a transaction that has
                # already changed an offer holds that table in ROW EXCLUSIVE
                # mode, and two such asking for EXCLUSIVE wait for each other.
                self.conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": OFFER_NUMBERING_LOCK}
                )
            last = _MAX_SEQ.first(self.conn, {})[0]
            self._seq = 0 if last is None else int(last)
        self._seq += 1
        return self._seq


class MemoryViewStore(_Subjects):
    """Every view row in memory, written out at once by :meth:`write`.

    It keeps the row dictionaries it is given (and may change them), without
    copying: a rebuild hands it millions, each built afresh.
    """

    def __init__(self) -> None:
        """Start from empty views."""
        self.rows: dict[str, dict[object, Row]] = {t.name: {} for t in VIEW_TABLES}
        self.patents: dict[str, PatentState] = {}
        self.parties: dict[str, PartyState] = {}
        self._seq = 0

    def _table(self, table: type[ViewBase]) -> dict[object, Row]:
        return self.rows[table.__tablename__]

    def cursor(self, origin: str) -> int | None:
        """The index of the next entry of ``origin`` to apply, None if none was applied."""
        row = self.rows["view_cursors"].get(origin)
        return None if row is None else int(row["next_index"])

    def set_cursor(self, origin: str, next_index: int) -> None:
        """Record that ``origin``'s entries below ``next_index`` are applied."""
        self.rows["view_cursors"][origin] = {"origin": origin, "next_index": next_index}

    def statement(self, sid: bytes) -> tuple[str, str | None, str | None] | None:
        """(kind, patent, party) of an applied statement, or None."""
        row = self.rows["statements"].get(sid)
        return None if row is None else (row["kind"], row["patent"], row["party"])

    def patent(self, number: str) -> PatentState | None:
        """A patent's state, or None."""
        return self.patents.get(number)

    def patent_info(self, number: str) -> PatentInfo | None:
        """A patent's recorded title, region and IPC symbols, or None."""
        row = self.rows["patents"].get(number)
        if row is None:
            return None
        return PatentInfo(row["title"], row["region"], row["ipcs"], row["ipc"])

    def party(self, party_id: str) -> PartyState | None:
        """A party's state, or None."""
        return self.parties.get(party_id)

    def party_region(self, party_id: str) -> str | None:
        """A party's region, or None if unregistered."""
        row = self.rows["parties"].get(party_id)
        return None if row is None else str(row["region"])

    def home(self, patent: str | None, party: str | None) -> str | None:
        """The origin whose log is the home of a patent (or else a party), if known."""
        if patent is not None:
            row = self.rows["patents"].get(patent)
        elif party is not None:
            row = self.rows["parties"].get(party)
        else:
            return None
        return None if row is None else str(row["home"])

    def put_patent(self, row: Row, state: PatentState) -> None:
        """Insert a patent."""
        self.rows["patents"][row["application_number"]] = row
        self.patents[row["application_number"]] = state

    def set_patent(self, number: str, state: PatentState | None, last_index: int) -> None:
        """Update a patent's state (unless None) and the index of its last entry."""
        row = self.rows["patents"][number]
        row["last_index"] = last_index
        if state is not None:
            row["status"] = int(state.status)
            self.patents[number] = state

    def put_party(self, row: Row, state: PartyState) -> None:
        """Insert a party."""
        self.rows["parties"][row["party_id"]] = row
        self.parties[row["party_id"]] = state

    def set_party(self, party_id: str, state: PartyState, last_index: int) -> None:
        """Update a party's state and the index of its last entry."""
        self.rows["parties"][party_id]["last_index"] = last_index
        self.parties[party_id] = state

    def insert(self, table: type[ViewBase], row: Row) -> None:
        """Insert ``row`` into ``table``."""
        keys = _key_columns(table)
        key = row[keys[0]] if len(keys) == 1 else tuple(row[k] for k in keys)
        rows = self._table(table)
        if key in rows:  # as the database's primary key would
            raise KeyError(f"{table.__tablename__}: duplicate key {key!r}")
        rows[key] = row  # the store takes the row: its callers build each afresh

    def insert_many(self, table: type[ViewBase], rows: list[Row]) -> None:
        """Insert ``rows`` into ``table``."""
        for row in rows:
            self.insert(table, row)

    def update(self, table: type[ViewBase], key: object, values: Row) -> None:
        """Set ``values`` on the row whose primary key is ``key`` (if there is one)."""
        row = self._table(table).get(key)
        if row is not None:
            row.update(values)

    def increment(self, table: type[ViewBase], key: object, column: str) -> None:
        """Add one to ``column`` of the row whose primary key is ``key`` (if there is one)."""
        row = self._table(table).get(key)
        if row is not None:
            row[column] += 1

    def next_seq(self) -> int:
        """The next offer sequence number."""
        self._seq += 1
        return self._seq

    def flush(self) -> None:
        """Nothing to do: :meth:`write` writes everything."""

    def keep_numbers(self, numbers: Mapping[bytes, int]) -> None:
        """Give offers the watch cursors ``numbers`` gave them; number the others after those.

        Cursors are this node's order of applying offers, which interleaves
        the logs as they arrived; a rebuild applies the logs one after the
        other. Keeping the numbers the views had lets a subscriber resume
        with the cursor it was given, across a rebuild, missing nothing and
        receiving nothing twice. Offers new to the views follow, in the
        order the rebuild applied them.
        """
        offers = self.rows["offers"]
        last = max(numbers.values(), default=0)
        for row in sorted(offers.values(), key=lambda r: int(r["seq"])):
            kept = numbers.get(bytes(row["offer_id"]))
            if kept is None:
                last += 1
                kept = last
            row["seq"] = kept
        self._seq = last
        # The IPC search keys carry their offer's cursor in their primary key.
        keys = self.rows["offer_ipcs"]
        renumbered = [
            {**row, "seq": offers[bytes(row["offer_id"])]["seq"]} for row in keys.values()
        ]
        keys.clear()
        for row in renumbered:
            keys[(row["ipc"], row["seq"])] = row

    def write(self, conn: Connection) -> int:
        """Replace the views on ``conn`` with these rows; return how many rows were written."""
        if conn.dialect.name == "sqlite":
            # The whole of the views passes through this transaction: a page
            # cache that holds the indexes being built saves rewriting their
            # pages as they fill. For this connection, until it is closed.
            conn.exec_driver_sql(f"PRAGMA cache_size = -{REBUILD_CACHE_KIB}")
        for table in VIEW_TABLES:
            conn.execute(delete(table))
        # Secondary indexes are built once at the end, sorted, rather than
        # split page by page as a million random keys arrive.
        indexes = [index for table in VIEW_TABLES for index in table.indexes]
        for index in indexes:
            index.drop(conn)
        for number, state in self.patents.items():
            self.rows["patents"][number]["state"] = encode_patent(state)
        for party_id, party in self.parties.items():
            self.rows["parties"][party_id]["state"] = encode_party(party)
        written = 0
        for table in reversed(VIEW_TABLES):
            # In key order, the primary key index is appended to, not split
            # at random (statement ids are hashes): far fewer pages written.
            rows = self.rows[table.name]
            ordered = (rows[key] for key in sorted(rows))  # type: ignore[type-var]
            written += _INSERTS[table.name].run_many(conn, ordered, chunk=FLUSH_CHUNK)
        for index in indexes:
            index.create(conn)
        analyze_views(conn)
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        return written


def analyze_views(conn: Connection) -> None:
    """Refresh the planner's statistics of the view tables.

    Search plans depend on them: without statistics SQLite takes any
    indexed equality for selective, e.g. walking every active offer to find
    the few under one IPC class. Sampled, so it stays cheap on a large log.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA analysis_limit = 1000")
    for table in VIEW_TABLES:
        conn.exec_driver_sql(f'ANALYZE "{table.name}"')
