"""The SQL schema, as SQLAlchemy Core tables (one definition for SQLite and PostgreSQL).

Migrations in ``migrations/versions`` create exactly these tables; a test compares the
two. Times are float seconds since the epoch (``Double``) like the domain records, so
no conversion runs on the hot path and both databases sort them the same way. Later
tables (users, tokens, audit, schedules, secrets) come with their own migrations.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

# Named constraints make migrations (and downgrades) reproducible on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: 64-bit ids for the append-only tables on PostgreSQL; SQLite needs ``INTEGER`` to
#: make the column its rowid.
BigId: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")

#: JSONB on PostgreSQL (smaller, indexable later), JSON text elsewhere.
Json: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")

workflows = Table(
    "workflows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    # No FK to workflow_versions: it would make the two tables depend on each other.
    Column("current_version_id", Integer, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("namespace", "name"),
)

workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow_id", Integer, ForeignKey("workflows.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("source", Text, nullable=False),
    Column("checksum", String(128), nullable=False),
    Column("author", String(200), nullable=True),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("workflow_id", "version"),
    Index(None, "workflow_id", "checksum"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workflow", String(200), nullable=False),
    Column("namespace", String(200), nullable=False),
    Column("version_id", Integer, nullable=True),
    Column("status", String(20), nullable=False),
    Column("inputs", Json, nullable=False),
    Column("sealed_inputs", LargeBinary, nullable=True),
    Column("trigger", Json, nullable=False),
    Column("failed_phases", Json, nullable=False),
    Column("cancel_requested", Boolean, nullable=False),
    Column("timed_out", Boolean, nullable=False),
    Column("outputs", Json, nullable=True),
    Column("error", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("deadline", Double, nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("parent_run_id", String(64), nullable=True),
    # The UI lists runs newest first, optionally by workflow, status or namespace.
    Index(None, "created_at"),
    Index(None, "workflow", "created_at"),
    Index(None, "status", "created_at"),
    Index(None, "namespace", "created_at"),
)

steps = Table(
    "steps",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(300), nullable=False),
    Column("node", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("interruptions", Integer, nullable=False),
    Column("parent", String(300), nullable=True),
    Column("item", Json, nullable=True),
    Column("idx", Integer, nullable=True),
    Column("items", Integer, nullable=True),
    Column("outputs", Json, nullable=True),
    Column("sealed_outputs", LargeBinary, nullable=True),
    Column("error", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("available_at", Double, nullable=True),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    PrimaryKeyConstraint("run_id", "key"),
    # The queue: claim and next_due scan due steps by status and due time.
    Index(None, "status", "available_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step", String(300), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", Double, nullable=False),
    Column("finished_at", Double, nullable=True),
    Column("error", Text, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("lease_until", Double, nullable=True),
    PrimaryKeyConstraint("run_id", "step", "attempt"),
    Index(None, "status", "lease_until"),  # expired leases
    Index(None, "worker"),  # lease renewal by heartbeat
)

logs = Table(
    "logs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step", String(300), nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("stream", String(10), nullable=False),
    Column("line", Text, nullable=False),
    Column("at", Double, nullable=False),
    Index(None, "run_id", "id"),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(100), nullable=False),
    Column("step", String(300), nullable=True),
    Column("data", Json, nullable=False),
    Column("at", Double, nullable=False),
    Index(None, "run_id", "id"),
)
