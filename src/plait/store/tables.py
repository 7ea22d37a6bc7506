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
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement
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


def _where(predicate: str) -> dict[str, Any]:
    """The keyword arguments of a partial index on both databases."""
    return {"sqlite_where": text(predicate), "postgresql_where": text(predicate)}


def status_is(column: Any, value: str) -> ColumnElement[bool]:
    """``column = 'value'`` with the value written into the SQL, not bound: a partial
    index (``… WHERE status = 'queued'``) serves a query only when the query states its
    predicate literally — neither SQLite nor a generic PostgreSQL plan looks into a
    bound parameter to prove it."""
    if not value.isidentifier():
        raise ValueError(f"not a status: {value!r}")
    return column == literal_column(f"'{value}'")  # type: ignore[no-any-return]


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
    Column("concurrency_key", String(300), nullable=True),
    # The UI lists runs newest first, optionally by workflow, status or namespace.
    Index(None, "created_at"),
    Index(None, "workflow", "created_at"),
    Index(None, "status", "created_at"),
    Index(None, "namespace", "created_at"),
    # Concurrency admission counts a key's active runs and takes its held ones in order.
    Index(None, "concurrency_key", "status", "created_at"),
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
    Column("attempt_base", Integer, nullable=False, server_default="0"),
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
    # Routing (migration 0007): fixed when the step is created, never updated.
    Column("queue", String(100), nullable=False, server_default="default"),
    Column("runs_on", Json, nullable=False, server_default="{}"),
    Column("priority", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("run_id", "key"),
)
# Claims and timers read only steps that wait: partial indexes (migration 0011) hold
# just those, so a step that goes from pending to running to succeeded — every step of
# a run that is not held up — never writes an index entry. The queued index is in
# claim order (highest priority first, then due time), so a routed claim reads its
# batch off the front of one range. Queries must repeat the predicate literally
# (:func:`status_is`) for a database to use such an index.
Index(
    "ix_steps_queued",
    steps.c.queue,
    steps.c.priority.desc(),
    steps.c.available_at,
    **_where("status = 'queued'"),
)
Index("ix_steps_retrying", steps.c.queue, steps.c.available_at, **_where("status = 'retrying'"))
Index("ix_steps_waiting", steps.c.available_at, **_where("status = 'waiting'"))

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
)
# Leases are renewed by worker and expire by time only while an attempt runs: a small
# partial index of the running attempts serves both (migration 0011).
Index(
    "ix_attempts_running",
    attempts.c.worker,
    attempts.c.lease_until,
    **_where("status = 'running'"),
)
# Failure clustering reads the newest failed attempts (plait.store.server_insights):
# only failures are in this index (migration 0010), so a success never writes to it.
Index(
    "ix_attempts_failed",
    attempts.c.started_at,
    **_where("status IN ('failed', 'timed_out')"),
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
    # NULL for published events (POST /events): they belong to no run (migration 0003).
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=True),
    Column("type", String(100), nullable=False),
    Column("step", String(300), nullable=True),
    Column("data", Json, nullable=False),
    Column("at", Double, nullable=False),
    Index(None, "run_id", "id"),
)

# --- accounts (migration 0002): users, tokens, role bindings, the audit log ------------

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("password_hash", String(512), nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_login_at", Double, nullable=True),
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", Double, nullable=True),
    UniqueConstraint("name"),
    # Ids are never reused on SQLite either: an access token names its user by id.
    sqlite_autoincrement=True,
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("prefix", String(20), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("scopes", Json, nullable=False),
    Column("expires_at", Double, nullable=True),
    Column("revoked_at", Double, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("last_used_at", Double, nullable=True),
    UniqueConstraint("token_hash"),
    Index(None, "user_id"),
    sqlite_autoincrement=True,
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family_id", String(64), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("issued_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("family_expires_at", Double, nullable=False),
    Column("used_at", Double, nullable=True),
    Column("revoked_at", Double, nullable=True),
    Index(None, "family_id"),
    Index(None, "user_id"),
)

role_bindings = Table(
    "role_bindings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject_kind", String(10), nullable=False),
    Column("subject_id", Integer, nullable=False),
    Column("role", String(20), nullable=False),
    # "" is the global binding: a NULL would not take part in the unique constraint.
    Column("namespace", String(200), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("created_by", String(200), nullable=True),
    UniqueConstraint("subject_kind", "subject_id", "role", "namespace"),
    sqlite_autoincrement=True,
)

audit_log = Table(
    "audit_log",
    metadata,
    # Assigned by the writer (previous seq + 1) under the chain lock, never by the database.
    Column("seq", BigId, primary_key=True, autoincrement=False),
    Column("at", Double, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(300), nullable=False),
    Column("resource", String(1000), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("source_ip", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("details", Json, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index(None, "at"),
    Index(None, "actor", "seq"),
)

# --- server (migration 0003): deployments, labels, schedules, secrets, idempotency ------

# A deployed workflow: its name is unique across namespaces (the API addresses workflows
# by name; the namespace is the RBAC scope). ``plait run`` of a local file never adds a
# row here, so only deploying decides what the server shows and runs.
deployments = Table(
    "deployments",
    metadata,
    Column("workflow_id", Integer, ForeignKey("workflows.id"), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("namespace", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("name"),
    Index(None, "namespace", "name"),
)

# One row per label, so the UI's label filters (stage, service, …) use an index.
workflow_labels = Table(
    "workflow_labels",
    metadata,
    Column("workflow_id", Integer, ForeignKey("workflows.id"), nullable=False),
    Column("key", String(100), nullable=False),
    Column("value", String(200), nullable=False),
    PrimaryKeyConstraint("workflow_id", "key"),
    Index(None, "key", "value"),
)

# Idempotency keys of run starts and webhook deliveries: the first writer wins.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(300), nullable=False),
    Column("key", String(300), nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("created_at", Double, nullable=False),
    PrimaryKeyConstraint("scope", "key"),
    Index(None, "created_at"),
)

schedules = Table(
    "schedules",
    metadata,
    Column("id", String(300), primary_key=True),
    Column("workflow", String(200), nullable=False),
    Column("namespace", String(200), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("cron", String(200), nullable=False),
    Column("timezone", String(100), nullable=False),
    Column("catch_up", String(10), nullable=False),
    Column("max_catch_up", Integer, nullable=False),
    Column("inputs", Json, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("last_fire", Double, nullable=True),
    Column("next_fire", Double, nullable=True),
    Column("missed_count", Integer, nullable=False),
    Column("last_missed", Double, nullable=True),
    Index(None, "workflow"),
    Index(None, "next_fire"),
)

# Every fire and every recorded miss; the unique key makes a time fire once.
schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("fire_key", String(400), nullable=False),
    Column("schedule_id", String(300), nullable=False),
    Column("workflow", String(200), nullable=False),
    Column("fire_time", Double, nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("status", String(10), nullable=False),
    Column("recorded_at", Double, nullable=False),
    UniqueConstraint("fire_key"),
    Index(None, "workflow", "fire_time"),
)

secrets = Table(
    "secrets",
    metadata,
    Column("namespace", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("sealed_value", LargeBinary, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("created_by", String(200), nullable=True),
    Column("updated_by", String(200), nullable=True),
    PrimaryKeyConstraint("namespace", "name"),
)

event_cursors = Table(
    "event_cursors",
    metadata,
    Column("consumer", String(200), primary_key=True),
    Column("last_id", BigInteger, nullable=False),
    Column("updated_at", Double, nullable=False),
)

# -- security (migration 0005): second factor and login session details --------------

user_mfa = Table(
    "user_mfa",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    # The TOTP secret sealed with the store's keyring: the server needs it in the clear.
    Column("sealed_secret", LargeBinary, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("activated_at", Double, nullable=True),
    # The last accepted RFC 6238 time step: a code of that step or earlier is a replay.
    Column("last_step", BigInteger, nullable=True),
)

mfa_recovery_codes = Table(
    "mfa_recovery_codes",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("used_at", Double, nullable=True),
    PrimaryKeyConstraint("user_id", "code_hash"),
)

login_sessions = Table(
    "login_sessions",
    metadata,
    # The refresh family: its tokens (refresh_tokens) say whether it is still active.
    Column("family_id", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("user_agent", String(300), nullable=True),
    Column("source_ip", String(64), nullable=True),
    Column("second_factor", String(20), nullable=True),
    Index(None, "user_id"),
)

# -- integrations (migration 0006): connections -----------------------------------------

# A named, typed credential set that steps refer to by name (``with: {connection: …}``).
# ``config`` holds only the public fields; the credential fields are one JSON object
# sealed with the store's keyring (so ``plait secrets rotate-key`` re-seals it like any
# other ``LargeBinary`` column). ``secret_fields`` names the credentials that are set,
# so listings show them without unsealing anything.
connections = Table(
    "connections",
    metadata,
    Column("namespace", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(100), nullable=False),
    Column("config", Json, nullable=False),
    Column("secret_fields", Json, nullable=False),
    Column("sealed_secrets", LargeBinary, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("created_by", String(200), nullable=True),
    Column("updated_by", String(200), nullable=True),
    PrimaryKeyConstraint("namespace", "name"),
)

# -- cluster (migration 0007): the worker registry ---------------------------------------

# One row per worker process, written by the worker itself: registered at start,
# heartbeat (with its lease renewal), ``draining`` on SIGTERM, ``stopped`` at exit. A
# row still ``running`` whose heartbeat is stale is a worker that died (shown ``lost``).
workers = Table(
    "workers",
    metadata,
    Column("id", String(300), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queues", Json, nullable=False),
    Column("tags", Json, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("running", Integer, nullable=False),
    Column("version", String(50), nullable=False),
    Column("state", String(20), nullable=False),
    Column("started_at", Double, nullable=False),
    Column("heartbeat_at", Double, nullable=False),
    Column("stopped_at", Double, nullable=True),
    Index(None, "state", "heartbeat_at"),
)

# -- operations (migration 0009): alert rules, alert states and history, notifications ---

# A rule as its author wrote it (checked by plait.ops.alert_rules); ``source`` is "api"
# for rules set through the API or the CLI, "file" for those of $PLAIT_HOME/alerts.yaml.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("spec", Json, nullable=False),
    Column("source", String(10), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("updated_by", String(200), nullable=True),
)

# The alerts that are pending or firing, one row per rule and key. ``revision`` makes
# every change a conditional write, so of several evaluators only one applies a change
# (and sends its notifications).
alert_states = Table(
    "alert_states",
    metadata,
    Column("rule", String(200), nullable=False),
    Column("key", String(400), nullable=False),
    Column("state", String(10), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("value", Double, nullable=True),
    Column("threshold", Double, nullable=True),
    Column("summary", Text, nullable=False),
    Column("labels", Json, nullable=False),
    Column("info", Json, nullable=False),
    Column("since", Double, nullable=False),
    Column("firing_since", Double, nullable=True),
    Column("last_notified_at", Double, nullable=True),
    Column("alert_id", BigInteger, nullable=True),
    Column("revision", Integer, nullable=False),
    Column("updated_at", Double, nullable=False),
    PrimaryKeyConstraint("rule", "key"),
)

# Every time an alert fired, until it resolved: what GET /api/v1/alerts lists.
alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False),
    Column("key", String(400), nullable=False),
    Column("state", String(10), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("value", Double, nullable=True),
    Column("threshold", Double, nullable=True),
    Column("summary", Text, nullable=False),
    Column("labels", Json, nullable=False),
    Column("info", Json, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("resolved_at", Double, nullable=True),
    Column("last_notified_at", Double, nullable=True),
    Column("notifications", Integer, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index(None, "state", "started_at"),
    Index(None, "started_at"),
    Index(None, "rule", "started_at"),
)

# The outbox of alert notifications, one row per notice and channel: written with the
# change that causes it, claimed (a lease) by one evaluator, sent, retried on failure.
alert_notifications = Table(
    "alert_notifications",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, nullable=True),
    Column("rule", String(200), nullable=False),
    Column("event", String(10), nullable=False),
    Column("channel", String(200), nullable=False),
    Column("notice", Json, nullable=False),
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("claimed_until", Double, nullable=True),
    Column("sent_at", Double, nullable=True),
    Index(None, "status", "next_attempt_at"),
    Index(None, "alert_id"),
)

# -- log search (migration 0008) ----------------------------------------------------------

#: What migration 0008 makes with SQL that SQLAlchemy Core cannot describe: SQLite's FTS5
#: index of ``logs.line`` (a virtual table and the shadow tables FTS5 keeps) and
#: PostgreSQL's GIN index on ``to_tsvector('simple', line)``. Schema comparisons leave
#: them out; :mod:`plait.store.server_logs` queries them.
LOG_SEARCH_TABLES = frozenset(
    {"logs_fts", "logs_fts_data", "logs_fts_idx", "logs_fts_docsize", "logs_fts_config"}
)
LOG_SEARCH_INDEXES = frozenset({"ix_logs_line_search"})
