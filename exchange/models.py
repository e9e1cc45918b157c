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
- ``offers`` (with ``offer_ipcs`` to search by IPC prefix), ``licences``,
  ``transfers``, ``pledges``, ``disputes`` and ``credit_events``: one row
  per transaction, its current status, and the columns queries filter on.
  ``offers.seq`` numbers offers in the order this node applied them: the
  cursor of the offer watch and the key of search pagination.

Lists of party ids are stored as JSON arrays; dates as ISO ``YYYY-MM-DD``
strings (legal dates are days, not instants); money as minor units and an
ISO 4217 code.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
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
    # Day of sequencing in China time (YYYY-MM-DD), and the subject's region
    # and main IPC section: the dimensions of the statistics.
    day: Mapped[str] = mapped_column(String(10), index=True)
    region: Mapped[str | None] = mapped_column(String(6))
    ipc_section: Mapped[str | None] = mapped_column(String(1))


class PatentRow(ViewBase):
    """A patent's current state."""

    __tablename__ = "patents"

    application_number: Mapped[str] = mapped_column(String(20), primary_key=True)
    home: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(Text)
    ipc: Mapped[str] = mapped_column(String(40), index=True)
    region: Mapped[str] = mapped_column(String(6))
    # Every IPC symbol, the main one first (JSON array).
    ipcs: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(Text)
    last_index: Mapped[int] = mapped_column(BigInteger)


class PartyRow(ViewBase):
    """A party's current state."""

    __tablename__ = "parties"

    party_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    home: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    region: Mapped[str] = mapped_column(String(6))
    state: Mapped[str] = mapped_column(Text)
    last_index: Mapped[int] = mapped_column(BigInteger)


class OfferRow(ViewBase):
    """An open-licence offer (declaration) and its status."""

    __tablename__ = "offers"
    # Searches read the newest offers first: each filter that can narrow a
    # search has an index that yields its matches in that order.
    __table_args__ = (
        Index("ix_offers_method_seq", "method", "seq"),
        Index("ix_offers_status_seq", "status", "seq"),
        Index("ix_offers_region_seq", "region", "seq"),
        Index("ix_offers_province_seq", "province", "seq"),
        Index("ix_offers_city_seq", "city", "seq"),
    )

    offer_id: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    application_number: Mapped[str] = mapped_column(String(20), index=True)
    origin: Mapped[str] = mapped_column(String(255))
    idx: Mapped[int] = mapped_column(BigInteger)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    title: Mapped[str] = mapped_column(Text)
    ipcs: Mapped[str] = mapped_column(Text)
    region: Mapped[str] = mapped_column(String(6))
    # The region's first two and four digits (GB/T 2260 province and city):
    # a search by either is an index equality.
    province: Mapped[str] = mapped_column(String(2))
    city: Mapped[str] = mapped_column(String(4))
    method: Mapped[int] = mapped_column(Integer)
    upfront_minor: Mapped[int | None] = mapped_column(BigInteger)
    upfront_currency: Mapped[str | None] = mapped_column(String(3))
    months: Mapped[int] = mapped_column(Integer)
    terms: Mapped[bytes] = mapped_column(LargeBinary)
    patentees: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    acceptances: Mapped[int] = mapped_column(Integer)


class OfferIpcRow(ViewBase):
    """An IPC search key of an offered patent: a class, subclass, main group or symbol.

    Keyed by (key, offer seq), so that the offers under a prefix are read
    newest first straight from the primary key.
    """

    __tablename__ = "offer_ipcs"

    ipc: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    offer_id: Mapped[bytes] = mapped_column(LargeBinary(32))


class LicenceRow(ViewBase):
    """A licence: an open-licence acceptance or a negotiated grant."""

    __tablename__ = "licences"

    license_id: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    application_number: Mapped[str] = mapped_column(String(20), index=True)
    licensee: Mapped[str] = mapped_column(String(32), index=True)
    licensors: Mapped[str] = mapped_column(Text)
    type: Mapped[int] = mapped_column(Integer)
    start_date: Mapped[str] = mapped_column(String(10))
    end_date: Mapped[str] = mapped_column(String(10))
    terms: Mapped[bytes] = mapped_column(LargeBinary)
    offer_id: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    recordal_due: Mapped[str] = mapped_column(String(10))
    recordal_number: Mapped[str | None] = mapped_column(String(100))
    origin: Mapped[str] = mapped_column(String(255))
    idx: Mapped[int] = mapped_column(BigInteger)


class TransferRow(ViewBase):
    """A registered transfer of a patent right."""

    __tablename__ = "transfers"

    transfer_id: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    application_number: Mapped[str] = mapped_column(String(20), index=True)
    assignors: Mapped[str] = mapped_column(Text)
    assignees: Mapped[str] = mapped_column(Text)
    price_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    origin: Mapped[str] = mapped_column(String(255))
    idx: Mapped[int] = mapped_column(BigInteger)


class PledgeRow(ViewBase):
    """A pledge of a patent right and whether it was released."""

    __tablename__ = "pledges"

    pledge_id: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    application_number: Mapped[str] = mapped_column(String(20), index=True)
    pledgors: Mapped[str] = mapped_column(Text)
    pledgee: Mapped[str] = mapped_column(String(32), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    debt_start: Mapped[str] = mapped_column(String(10))
    debt_end: Mapped[str] = mapped_column(String(10))
    released: Mapped[bool] = mapped_column(Boolean)
    origin: Mapped[str] = mapped_column(String(255))
    idx: Mapped[int] = mapped_column(BigInteger)


class DisputeRow(ViewBase):
    """A dispute filed about a patent's transaction, and its mediation."""

    __tablename__ = "disputes"

    dispute_id: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    application_number: Mapped[str] = mapped_column(String(20), index=True)
    subject_id: Mapped[bytes] = mapped_column(LargeBinary(32))
    kind: Mapped[int] = mapped_column(Integer)
    claimant: Mapped[str] = mapped_column(String(32))
    respondents: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    outcome: Mapped[int] = mapped_column(Integer)
    mediator: Mapped[str | None] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(255))
    idx: Mapped[int] = mapped_column(BigInteger)


class CreditEventRow(ViewBase):
    """An event on a party's credit record and whether it was repaired."""

    __tablename__ = "credit_events"

    event_id: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    party_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[int] = mapped_column(Integer)
    supervisor: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(Text)
    occurred_on: Mapped[str | None] = mapped_column(String(10))
    evidence: Mapped[str] = mapped_column(Text)
    repaired_by: Mapped[str | None] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(255))
    idx: Mapped[int] = mapped_column(BigInteger)
