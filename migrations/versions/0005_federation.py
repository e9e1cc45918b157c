"""Federation: witnessing state, collected cosignatures and fork evidence.

- ``witnessed``: per origin, the latest checkpoint this node cosigned as a
  witness (replaced in place: compare and swap on the size).
- ``cosignatures``: the cosignatures peers returned for this node's
  checkpoints, served with the checkpoint in the heads.
- ``fork_evidence``: pairs of signed checkpoints of one origin that cannot
  both be true. Like the log itself, evidence and cosignatures are never
  changed or removed: the database refuses UPDATE and DELETE on them.

Revision ID: 0005_federation
Revises: 0004_offer_search_indexes
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_federation"
down_revision: str | None = "0004_offer_search_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("cosignatures", "fork_evidence")


def upgrade() -> None:
    op.create_table(
        "witnessed",
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("cosigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin", name=op.f("pk_witnessed")),
    )
    op.create_table(
        "cosignatures",
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.String(length=255), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["logs.id"], name=op.f("fk_cosignatures_log_id_logs")),
        sa.PrimaryKeyConstraint("log_id", "size", "witness", name=op.f("pk_cosignatures")),
    )
    op.create_table(
        "fork_evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("checkpoint_a", sa.Text(), nullable=False),
        sa.Column("checkpoint_b", sa.Text(), nullable=False),
        sa.Column("proof", sa.LargeBinary(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fork_evidence")),
    )
    op.create_index(op.f("ix_fork_evidence_origin"), "fork_evidence", ["origin"])
    # 0001 created the PostgreSQL trigger function; SQLite needs a trigger per action.
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in APPEND_ONLY:
        if postgresql:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION kaifang_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION kaifang_append_only()"
            )
            continue
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'table {table} is append-only: {action} refused'); END"
            )


def downgrade() -> None:
    # Evidence of misbehaviour is part of the record: there is no going back.
    raise NotImplementedError("the federation schema cannot be downgraded")
