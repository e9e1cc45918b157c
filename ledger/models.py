"""SQLAlchemy models of the ledger's tables.

The schema itself is created only by the alembic revisions in ``migrations/``;
these models describe it for queries, and ``alembic check`` (run by the tests)
proves the two agree.

- ``logs``: one row per log the database holds (the node's own, and later
  the replicas of its peers' logs), keyed by a small surrogate id.
- ``log_keys``: every verifier key a log accepts checkpoints from: the key
  it was created with and any key added since (a key rotation: the next key
  signs beside the current one, then alone). A key once accepted stays, so
  that checkpoints it signed keep verifying.
- ``entries``: the entries, verbatim, each with its RFC 6962 leaf hash and
  the hashes of the complete subtrees that appending it completed (see
  :func:`ledger.merkle.node_home`). Unique leaf hashes per log give strong
  dedup.
- ``checkpoints``: every checkpoint the log signed (or, for a replica, every
  checkpoint received from its origin), as the verbatim signed note.

``logs``, ``log_keys``, ``entries`` and ``checkpoints`` are append-only:
triggers in the migrations make the database refuse UPDATE and DELETE on them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so that migrations can refer to them on every engine.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Log(Base):
    """A log held in this database, named by its origin."""

    __tablename__ = "logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The checkpoint origin line, e.g. "east.kaifang.example/log".
    origin: Mapped[str] = mapped_column(String(255), unique=True)
    # The C2SP verifier key (name+keyid+base64) the log was created with; it
    # is also the first row of log_keys, which holds every key it accepts.
    vkey: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LogKey(Base):
    """A verifier key whose signatures a log's checkpoints may carry.

    Read by the log's own writer (it signs only with accepted keys), by fsck
    and by readers that check what they are served.
    """

    __tablename__ = "log_keys"

    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id"), primary_key=True)
    # C2SP verifier key, name+keyid+base64; its name is the log's origin.
    vkey: Mapped[str] = mapped_column(Text, primary_key=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Entry(Base):
    """One entry of a log: its bytes, leaf hash and the subtree hashes it completed."""

    __tablename__ = "entries"
    __table_args__ = (UniqueConstraint("log_id", "leaf_hash", name="uq_entries_log_id_leaf_hash"),)

    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id"), primary_key=True)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # SHA-256(0x00 || data): the level-0 node, and the dedup key.
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The hashes, 32 bytes each, of the subtrees at levels 1, 2, … that this
    # entry completed; empty for an entry at an even index.
    nodes: Mapped[bytes] = mapped_column(LargeBinary)
    # The entry exactly as appended; never re-serialised.
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Checkpoint(Base):
    """A checkpoint of a log, as the verbatim signed note."""

    __tablename__ = "checkpoints"

    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id"), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Witnessed(Base):
    """Witnessing state: per origin, the latest checkpoint this node cosigned.

    C2SP tlog-witness semantics: a new checkpoint is cosigned only if it grows
    consistently from this one, and the row is replaced in the same
    transaction that decides so (compare and swap on ``size``).
    """

    __tablename__ = "witnessed"

    origin: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The checkpoint as the origin signed it (C2SP signed note).
    note: Mapped[str] = mapped_column(Text)
    cosigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Cosignature(Base):
    """A witness's cosignature of one of this node's checkpoints."""

    __tablename__ = "cosignatures"

    log_id: Mapped[int] = mapped_column(ForeignKey("logs.id"), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The witness's cosigner verifier key (name+keyid+base64).
    witness: Mapped[str] = mapped_column(String(255), primary_key=True)
    # The C2SP tlog-cosignature line, newline included.
    line: Mapped[str] = mapped_column(Text)


class ForkEvidence(Base):
    """Two checkpoints signed by one origin that cannot both be true."""

    __tablename__ = "fork_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    origin: Mapped[str] = mapped_column(String(255), index=True)
    # SAME_SIZE_DIFFERENT_ROOT or INCONSISTENT.
    kind: Mapped[str] = mapped_column(String(40))
    checkpoint_a: Mapped[str] = mapped_column(Text)
    checkpoint_b: Mapped[str] = mapped_column(Text)
    # For INCONSISTENT: the concatenated 32-byte hashes of the failed proof.
    proof: Mapped[bytes] = mapped_column(LargeBinary)
    # The peer the conflicting checkpoint came from.
    source: Mapped[str] = mapped_column(String(255))
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
