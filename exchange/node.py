"""The exchange's I/O shell: admit a signed statement, sequence it, update the views.

:class:`Exchange` ties the pure admission (:mod:`exchange.admission`) to the
ledger (:class:`ledger.store.Sequencer`) and the views (:mod:`exchange.views`):

1. dedup: statement bytes already sequenced get their first receipt back;
2. admission reads the views, then the entry is built with its ``previous``
   link, appended, and applied to the views;
3. a statement about a patent or party whose home is another exchange is
   refused with :class:`NotHomeError` naming the home (the federation issue
   replaces that with forwarding).

Admission, append and view update run one statement at a time under a lock,
so that each statement is checked against the state its predecessors left.
This is correct and simple; batching appends across concurrent submissions
while keeping that order is the next step. After a crash between append and
view update, :meth:`Exchange.catch_up` applies what the views missed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, select

from exchange.admission import admit
from exchange.errors import NotHomeError
from exchange.models import PartyRow, PatentRow, StatementRow, ViewCursor
from exchange.statements import statement_id
from exchange.views import DbWorld, apply_entry, build_entry
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.db import Database
from ledger.store import LogStore, Sequencer


@dataclass(frozen=True)
class Submitted:
    """Where a statement was sequenced, and its receipt."""

    statement_id: bytes
    origin: str
    index: int
    receipt: str
    duplicate: bool


class Exchange:
    """One exchange node's admission path."""

    def __init__(
        self,
        db: Database,
        store: LogStore,
        sequencer: Sequencer,
        register_key: bytes,
        operator_keys: Mapping[str, bytes],
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        """Admit into ``store`` (the node's own log) through ``sequencer``."""
        self.db = db
        self.store = store
        self.sequencer = sequencer
        self.origin = store.origin
        self._register_key = register_key
        self._operator_keys = dict(operator_keys)
        self._clock = clock
        self._lock = asyncio.Lock()

    def world(self, conn: Connection) -> DbWorld:
        """Admission's view of the world on ``conn``."""
        return DbWorld(conn, self._register_key, self._operator_keys)

    async def _sequenced(self, sid: bytes) -> tuple[str, int] | None:
        query = select(StatementRow.origin, StatementRow.idx).where(StatementRow.id == sid)
        row = await self.db.read(lambda c: c.execute(query).first())
        return None if row is None else (str(row[0]), int(row[1]))

    async def submit(self, signed: pb.SignedStatement) -> Submitted:
        """Admit and sequence ``signed``; raise an :class:`ExchangeError` if it is refused."""
        sid = statement_id(signed.statement)
        async with self._lock:
            found = await self._sequenced(sid)
            if found is None:
                await self._admit_and_sequence(signed)
                found = await self._sequenced(sid)
                assert found is not None
                duplicate = False
            else:
                duplicate = True
        origin, index = found
        receipt = await self.store.receipt(index) if origin == self.origin else None
        return Submitted(sid, origin, index, receipt.format() if receipt else "", duplicate)

    async def _admit_and_sequence(self, signed: pb.SignedStatement) -> None:
        now = self._clock()
        admitted = await self.db.read(lambda c: admit(signed, self.world(c), now))
        home = await self.db.read(lambda c: home_of(c, admitted.patent, admitted.party))
        if home is not None and home != self.origin:
            raise NotHomeError(home, admitted.patent or admitted.party or "?")
        entry = await self.db.read(
            lambda c: build_entry(self.origin, now, signed, admitted, self.world(c))
        )
        appended = await self.sequencer.append(entry)
        await self.db.write(
            lambda c: apply_entry(c, self.world(c), self.origin, appended.index, entry)
        )

    def _apply(self, index: int, data: bytes, conn: Connection) -> None:
        apply_entry(conn, self.world(conn), self.origin, index, data)

    async def catch_up(self) -> int:
        """Apply the entries of the node's own log that the views have not seen; count them."""
        size = (await self.store.latest_checkpoint()).size
        query = select(ViewCursor.next_index).where(ViewCursor.origin == self.origin)
        start = await self.db.read(lambda c: c.execute(query).scalar_one_or_none()) or 0
        applied = 0
        async for rows in self.store.entries(start, size):
            for index, data in rows:
                await self.db.write(functools.partial(self._apply, index, data))
                applied += 1
        return applied


def home_of(conn: Connection, patent: str | None, party: str | None) -> str | None:
    """The home exchange of the statement's subject, if the views know it."""
    if patent is not None:
        query = select(PatentRow.home).where(PatentRow.application_number == patent)
    elif party is not None:
        query = select(PartyRow.home).where(PartyRow.party_id == party)
    else:
        return None
    home = conn.execute(query).scalar_one_or_none()
    return None if home is None else str(home)
