"""Offer search indexes: IPC keys ordered by offer, filters that yield the newest first.

``offer_ipcs`` becomes (key, offer seq) → offer id, with keys from the class
down to the whole symbol; ``offers`` gets the region's province and city
codes as columns, and (method, seq), (status, seq), (region, seq),
(province, seq) and (city, seq) indexes in place of the region index. Views are derived from
the logs, so this revision empties them and resets their cursors: the node
re-applies its logs at its next start (or run ``kaifang views rebuild``).

Revision ID: 0004_offer_search_indexes
Revises: 0003_exchange_queries
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_offer_search_indexes"
down_revision: str | None = "0003_exchange_queries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VIEWS = (
    "credit_events", "disputes", "pledges", "transfers", "licences", "offer_ipcs", "offers",
    "statements", "patents", "parties", "view_cursors",
)  # fmt: skip
_SEQ_INDEXES = {
    "method": "ix_offers_method_seq", "status": "ix_offers_status_seq",
    "region": "ix_offers_region_seq", "province": "ix_offers_province_seq",
    "city": "ix_offers_city_seq",
}  # fmt: skip


def upgrade() -> None:
    for table in _VIEWS:
        op.execute(sa.table(table).delete())
    op.drop_table("offer_ipcs")
    op.create_table(
        "offer_ipcs",
        sa.Column("ipc", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("offer_id", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("ipc", "seq", name=op.f("pk_offer_ipcs")),
    )
    op.drop_index("ix_offers_region", table_name="offers")
    with op.batch_alter_table("offers") as batch:
        batch.add_column(sa.Column("province", sa.String(length=2), nullable=False))
        batch.add_column(sa.Column("city", sa.String(length=4), nullable=False))
    for column, name in _SEQ_INDEXES.items():
        op.create_index(name, "offers", [column, "seq"])


def downgrade() -> None:
    for table in _VIEWS:
        op.execute(sa.table(table).delete())
    for name in _SEQ_INDEXES.values():
        op.drop_index(name, table_name="offers")
    with op.batch_alter_table("offers") as batch:
        batch.drop_column("city")
        batch.drop_column("province")
    op.create_index("ix_offers_region", "offers", ["region"])
    op.drop_table("offer_ipcs")
    op.create_table(
        "offer_ipcs",
        sa.Column("offer_id", sa.LargeBinary(length=32), nullable=False),
        sa.Column("ipc", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("offer_id", "ipc", name=op.f("pk_offer_ipcs")),
    )
    op.create_index("ix_offer_ipcs_ipc", "offer_ipcs", ["ipc"])
