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
import functools
import json
from collections.abc import Mapping

from google.protobuf.message import DecodeError
from sqlalchemy import Connection, delete

from exchange import parties, rules
from exchange.admission import LEGAL_TIME_ZONE, PARTY_KINDS, PATENT_KINDS, Admitted, subject_of
from exchange.errors import InvalidFieldError, ViewOrderError
from exchange.models import StatementRow
from exchange.projections import project
from exchange.statements import parse_statement, statement_id
from exchange.viewstore import VIEW_TABLES, SqlViewStore, ViewStore
from kaifang.exchange.v1 import statements_pb2 as pb


class DbWorld(SqlViewStore):
    """Admission's view of the world: the views on one connection, and the configured keys."""

    def __init__(
        self, conn: Connection, register_key: bytes, operator_keys: Mapping[str, bytes]
    ) -> None:
        """Read through ``conn``; the register and operator keys come from configuration."""
        super().__init__(conn)
        self._register_key = register_key
        self._operator_keys = operator_keys

    def register_key(self) -> bytes:
        """The register authority's public key."""
        return self._register_key

    def operator_key(self, origin: str) -> bytes | None:
        """The public key of exchange ``origin``'s operator."""
        return self._operator_keys.get(origin)

    def kind_of(self, statement_id: bytes) -> str | None:
        """The kind of a sequenced statement."""
        found = self.statement(statement_id)
        return None if found is None else found[0]

    def entry_known(self, origin: str, index: int) -> bool:
        """Whether entry ``index`` of ``origin``'s log is applied to these views."""
        applied = self.cursor(origin)
        return applied is not None and 0 <= index < applied


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


def apply_entry(
    store: ViewStore,
    origin: str,
    index: int,
    data: bytes,
    *,
    parsed: tuple[pb.Statement, bytes, dt.datetime] | None = None,
) -> bool:
    """Apply entry ``index`` of ``origin``'s log to the views; entries must come in order.

    ``parsed`` is (statement, statement id, sequencing instant) of ``data``
    when the caller has them (it just built the entry): not parsed again.
    The store may keep some writes (the cursor) until its ``flush``, which
    the caller runs before committing.

    Returns False, having only moved the cursor, for an entry that is not a
    ``LogEntry`` carrying a statement (e.g. appended with the general
    ``kaifang ledger append``): the views have nothing to take from it, and
    the node must still serve its log; and for a statement about a subject
    whose home is another origin. Raises :class:`ViewOrderError` if
    ``index`` is not the next one for ``origin``.
    """
    expected = store.cursor(origin)
    if (expected or 0) != index:
        raise ViewOrderError(
            f"{origin}: entry {index} applied, but the views expect {expected or 0}"
        )
    if parsed is None:
        try:
            entry = pb.LogEntry.FromString(data)
            statement = parse_statement(entry.statement)
        except (DecodeError, InvalidFieldError):
            store.set_cursor(origin, index + 1)
            return False
        at = entry.sequenced_at
        parsed = (statement, statement_id(entry.statement), _instant(at.seconds, at.nanos))
    statement, sid, sequenced_at = parsed
    kind = statement.WhichOneof("body")
    assert kind is not None
    today = _legal_day(sequenced_at)
    patent, party = subject_of(statement, store)
    home = store.home(patent, party)
    if home is not None and home != origin:
        # Only the home sequences statements about a subject; two exchanges
        # can still both record a new patent (or party) before either has
        # replicated the other's entry. The first applied here stays the
        # home, and the other log's statements about it are not applied.
        store.set_cursor(origin, index + 1)
        return False
    before = after = None
    if kind in PATENT_KINDS and patent is not None:
        before = store.patent(patent)
        after = rules.apply(before, statement, sid, today)
        if kind == "patent_recorded":
            r = statement.patent_recorded
            row = {
                "application_number": patent, "home": origin, "title": r.title,
                "ipc": r.ipc[0], "ipcs": json.dumps(list(r.ipc)), "region": r.region,
                "status": int(after.status), "last_index": index,
            }  # fmt: skip
            store.put_patent(row, after)
        else:
            store.set_patent(patent, after, index)
    elif kind in PARTY_KINDS and party is not None:
        subject = parties.apply(store.party(party), statement, sid)
        if kind == "party_registered":
            row = {
                "party_id": party, "home": origin, "name": subject.name,
                "region": statement.party_registered.region, "last_index": index,
            }  # fmt: skip
            store.put_party(row, subject)
        else:
            store.set_party(party, subject, index)
    elif patent is not None:  # disputes and mediation: on the patent's history only
        store.set_patent(patent, None, index)
    project(store, statement, sid, origin, index, sequenced_at, before, after)
    region, section = _dimensions(store, patent, party)
    store.insert(
        StatementRow,
        {
            "id": sid, "origin": origin, "idx": index, "kind": kind, "patent": patent,
            "party": party, "sequenced_at": sequenced_at, "day": today.isoformat(),
            "region": region, "ipc_section": section,
        },
    )  # fmt: skip
    store.set_cursor(origin, index + 1)
    return True


@functools.lru_cache(maxsize=1024)
def _instant(seconds: int, nanos: int) -> dt.datetime:
    """A sequencing instant as a datetime (a batch's entries share one: converted once)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC) + dt.timedelta(microseconds=nanos // 1000)


@functools.lru_cache(maxsize=1024)
def _legal_day(instant: dt.datetime) -> dt.date:
    """The day in China at ``instant``: the day the rules judge by."""
    return instant.astimezone(LEGAL_TIME_ZONE).date()


def _dimensions(
    store: ViewStore, patent: str | None, party: str | None
) -> tuple[str | None, str | None]:
    """The statistics dimensions of a statement: its subject's region and IPC section."""
    if patent is not None:
        info = store.patent_info(patent)
        return (None, None) if info is None else (info.region, info.main_ipc[:1])
    if party is not None:
        return store.party_region(party), None
    return None, None


def clear(conn: Connection) -> None:
    """Forget every view, so that they can be rebuilt from the logs."""
    for table in VIEW_TABLES:
        conn.execute(delete(table))
