"""Log keys: every verifier key a log accepts, so that a log can rotate its key.

- ``log_keys``: (log, verifier key, when it was added). Each existing log's
  key (``logs.vkey``) becomes its first row. A node rotating its key adds
  the next key here and signs with both; a replica adds the keys the network
  file lists for its origin. Rows are never changed or removed, so that
  every checkpoint a key signed keeps verifying (``fsck``): the database
  refuses UPDATE and DELETE on the table.

Revision ID: 0006_log_keys
Revises: 0005_federation
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_log_keys"
down_revision: str | None = "0005_federation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "log_keys"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("vkey", sa.Text(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["logs.id"], name=op.f("fk_log_keys_log_id_logs")),
        sa.PrimaryKeyConstraint("log_id", "vkey", name=op.f("pk_log_keys")),
    )
    op.execute(
        "INSERT INTO log_keys (log_id, vkey, added_at) SELECT id, vkey, created_at FROM logs"
    )
    # 0001 created the PostgreSQL trigger function; SQLite needs a trigger per action.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION kaifang_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION kaifang_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, 'table {TABLE} is append-only: {action} refused'); END"
        )


def downgrade() -> None:
    # Which keys a log accepted is part of its record: there is no going back.
    raise NotImplementedError("the log keys cannot be downgraded")
