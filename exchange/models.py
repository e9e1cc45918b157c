"""SQLAlchemy models of the exchange's views: what the logs say, materialised.

Views are derived from the logs, in log order, per origin, and can be thrown
away and rebuilt at any time; they are never the source of truth (so, unlike
the ledger's tables, they may be updated). They live in the same database as
the ledger and are created by the same alembic migrations.

- ``view_cursors``: per origin, the index of the next entry to apply.
- ``statements``: every applied statement by id: where it is in which log,
  its kind, and the patent or party it is about (dedup, subject lookups).
- ``patents`` and ``parties``: the current state of each subject (as JSON),
  a few columns to query by, and the index of its last entry in its home log
  (the ``previous`` link of the next entry about it).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ledger.models import NAMING_CONVENTION


class ViewBase(DeclarativeBase):
    """Declarative base of the views (a metadata of their own: the ledger knows nothing of them)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ViewCursor(ViewBase):
    """How far the views have applied one origin's log."""

    __tablename__ = "view_cursors"

    origin: Mapped[str] = mapped_column(String(255), primary_key=True)
    next_index: Mapped[int] = mapped_column(BigInteger)


class StatementRow(ViewBase):
    """A statement that has been sequenced, by id."""

    __tablename__ = "statements"

    id: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    origin: Mapped[str] = mapped_column(String(255))
    idx: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(40))
    patent: Mapped[str | None] = mapped_column(String(20), index=True)
    party: Mapped[str | None] = mapped_column(String(32), index=True)
    sequenced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PatentRow(ViewBase):
    """A patent's current state."""

    __tablename__ = "patents"

    application_number: Mapped[str] = mapped_column(String(20), primary_key=True)
    home: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(Text)
    ipc: Mapped[str] = mapped_column(String(40), index=True)
    region: Mapped[str] = mapped_column(String(6))
    status: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(Text)
    last_index: Mapped[int] = mapped_column(BigInteger)


class PartyRow(ViewBase):
    """A party's current state."""

    __tablename__ = "parties"

    party_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    home: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)
    last_index: Mapped[int] = mapped_column(BigInteger)
