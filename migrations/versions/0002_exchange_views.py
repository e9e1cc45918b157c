"""The exchange's views: cursors, statements, patents, parties.

Revision ID: 0002_exchange_views
Revises: 0001_ledger
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_exchange_views"
down_revision: str | None = "0001_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "view_cursors",
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("next_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("origin", name=op.f("pk_view_cursors")),
    )
    op.create_table(
        "statements",
        sa.Column("id", sa.LargeBinary(length=32), nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("patent", sa.String(length=20), nullable=True),
        sa.Column("party", sa.String(length=32), nullable=True),
        sa.Column("sequenced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statements")),
    )
    op.create_index(op.f("ix_statements_patent"), "statements", ["patent"])
    op.create_index(op.f("ix_statements_party"), "statements", ["party"])
    op.create_table(
        "patents",
        sa.Column("application_number", sa.String(length=20), nullable=False),
        sa.Column("home", sa.String(length=255), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("ipc", sa.String(length=40), nullable=False),
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("last_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("application_number", name=op.f("pk_patents")),
    )
    op.create_index(op.f("ix_patents_ipc"), "patents", ["ipc"])
    op.create_table(
        "parties",
        sa.Column("party_id", sa.String(length=32), nullable=False),
        sa.Column("home", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("last_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("party_id", name=op.f("pk_parties")),
    )


def downgrade() -> None:
    # Views are derived from the logs: dropping them loses nothing.
    for table in ("parties", "patents", "statements", "view_cursors"):
        op.drop_table(table)
