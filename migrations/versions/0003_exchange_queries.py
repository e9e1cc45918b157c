"""The query views: offers, licences, transfers, pledges, disputes, credit events.

Adds the statistics dimensions to ``statements``, every IPC symbol to
``patents`` and the region to ``parties``. Views are derived from the logs,
so instead of back-filling the new columns this revision empties the views
and resets their cursors: the node re-applies its logs at its next start.

Revision ID: 0003_exchange_queries
Revises: 0002_exchange_views
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_exchange_queries"
down_revision: str | None = "0002_exchange_views"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_VIEWS = ("statements", "patents", "parties", "view_cursors")


def _bytes32(name: str, nullable: bool = False) -> sa.Column[bytes]:
    return sa.Column(name, sa.LargeBinary(length=32), nullable=nullable)


def _text(name: str, length: int | None = None, nullable: bool = False) -> sa.Column[str]:
    kind = sa.Text() if length is None else sa.String(length=length)
    return sa.Column(name, kind, nullable=nullable)


def _place() -> list[sa.Column[object]]:
    """Where the row's statement is: its log and index."""
    return [
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    for table in _OLD_VIEWS:
        op.execute(sa.table(table).delete())
    with op.batch_alter_table("statements") as batch:
        batch.add_column(_text("day", 10, nullable=False))
        batch.add_column(_text("region", 6, nullable=True))
        batch.add_column(_text("ipc_section", 1, nullable=True))
        batch.create_index(op.f("ix_statements_day"), ["day"])
    with op.batch_alter_table("patents") as batch:
        batch.add_column(_text("ipcs", nullable=False))
    with op.batch_alter_table("parties") as batch:
        batch.add_column(_text("region", 6, nullable=False))
    op.create_table(
        "offers",
        _bytes32("offer_id"),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        _text("application_number", 20),
        *_place(),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        _text("title"),
        _text("ipcs"),
        _text("region", 6),
        sa.Column("method", sa.Integer(), nullable=False),
        sa.Column("upfront_minor", sa.BigInteger(), nullable=True),
        _text("upfront_currency", 3, nullable=True),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("terms", sa.LargeBinary(), nullable=False),
        _text("patentees"),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("acceptances", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("offer_id", name=op.f("pk_offers")),
        sa.UniqueConstraint("seq", name=op.f("uq_offers_seq")),
    )
    op.create_index(op.f("ix_offers_application_number"), "offers", ["application_number"])
    op.create_index(op.f("ix_offers_region"), "offers", ["region"])
    op.create_table(
        "offer_ipcs",
        _bytes32("offer_id"),
        _text("ipc", 40),
        sa.PrimaryKeyConstraint("offer_id", "ipc", name=op.f("pk_offer_ipcs")),
    )
    op.create_index(op.f("ix_offer_ipcs_ipc"), "offer_ipcs", ["ipc"])
    op.create_table(
        "licences",
        _bytes32("license_id"),
        _text("application_number", 20),
        _text("licensee", 32),
        _text("licensors"),
        sa.Column("type", sa.Integer(), nullable=False),
        _text("start_date", 10),
        _text("end_date", 10),
        sa.Column("terms", sa.LargeBinary(), nullable=False),
        _bytes32("offer_id", nullable=True),
        _text("recordal_due", 10),
        _text("recordal_number", 100, nullable=True),
        *_place(),
        sa.PrimaryKeyConstraint("license_id", name=op.f("pk_licences")),
    )
    op.create_index(op.f("ix_licences_application_number"), "licences", ["application_number"])
    op.create_index(op.f("ix_licences_licensee"), "licences", ["licensee"])
    op.create_table(
        "transfers",
        _bytes32("transfer_id"),
        _text("application_number", 20),
        _text("assignors"),
        _text("assignees"),
        sa.Column("price_minor", sa.BigInteger(), nullable=True),
        _text("currency", 3, nullable=True),
        *_place(),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_transfers")),
    )
    op.create_index(op.f("ix_transfers_application_number"), "transfers", ["application_number"])
    op.create_table(
        "pledges",
        _bytes32("pledge_id"),
        _text("application_number", 20),
        _text("pledgors"),
        _text("pledgee", 32),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        _text("currency", 3),
        _text("debt_start", 10),
        _text("debt_end", 10),
        sa.Column("released", sa.Boolean(), nullable=False),
        *_place(),
        sa.PrimaryKeyConstraint("pledge_id", name=op.f("pk_pledges")),
    )
    op.create_index(op.f("ix_pledges_application_number"), "pledges", ["application_number"])
    op.create_index(op.f("ix_pledges_pledgee"), "pledges", ["pledgee"])
    op.create_table(
        "disputes",
        _bytes32("dispute_id"),
        _text("application_number", 20),
        _bytes32("subject_id"),
        sa.Column("kind", sa.Integer(), nullable=False),
        _text("claimant", 32),
        _text("respondents"),
        _text("summary"),
        sa.Column("outcome", sa.Integer(), nullable=False),
        _text("mediator", 32, nullable=True),
        *_place(),
        sa.PrimaryKeyConstraint("dispute_id", name=op.f("pk_disputes")),
    )
    op.create_index(op.f("ix_disputes_application_number"), "disputes", ["application_number"])
    op.create_table(
        "credit_events",
        _bytes32("event_id"),
        _text("party_id", 32),
        sa.Column("kind", sa.Integer(), nullable=False),
        _text("supervisor", 32),
        _text("summary"),
        _text("occurred_on", 10, nullable=True),
        _text("evidence"),
        _text("repaired_by", 32, nullable=True),
        *_place(),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_credit_events")),
    )
    op.create_index(op.f("ix_credit_events_party_id"), "credit_events", ["party_id"])


def downgrade() -> None:
    for table in ("credit_events", "disputes", "pledges", "transfers", "licences"):
        op.drop_table(table)
    op.drop_table("offer_ipcs")
    op.drop_table("offers")
    for table in _OLD_VIEWS:
        op.execute(sa.table(table).delete())
    with op.batch_alter_table("parties") as batch:
        batch.drop_column("region")
    with op.batch_alter_table("patents") as batch:
        batch.drop_column("ipcs")
    with op.batch_alter_table("statements") as batch:
        batch.drop_index(op.f("ix_statements_day"))
        batch.drop_column("ipc_section")
        batch.drop_column("region")
        batch.drop_column("day")
