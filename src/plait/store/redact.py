"""Retention: anonymising the data of old finished runs, keeping their skeleton.

``plait runs redact --older-than 90d`` replaces what a run carried — inputs, outputs,
sealed values, the trigger's payload, loop items, errors, event details — with
``"[redacted]"`` and deletes its log lines. It keeps what history and metrics need:
ids, workflow, namespace, statuses, attempts, times, step names and the shape of every
mapping (its keys).

Only runs that finished before the cutoff are touched, and only when their parent run
(for a sub-workflow) has finished too. Runs are processed in batches, each in one write
transaction, so the store stays available; an interrupted redaction continues when it
is run again (a redacted run is simply redacted again, which changes nothing).

On SQLite the transaction runs with ``PRAGMA secure_delete`` so the replaced bytes are
overwritten in the file, and the write-ahead log is checkpointed and truncated at the
end. On PostgreSQL the old row versions stay on disk until ``VACUUM`` reclaims them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, exists, select, update
from sqlalchemy.orm import aliased

from plait.engine.state import RunStatus
from plait.store.sql import SqlStore
from plait.store.tables import attempts, events, logs, runs, steps

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
BATCH = 100
_TERMINAL = sorted(str(s) for s in RunStatus if s.terminal)
#: Event details that describe the run's progress, not its data.
_KEEP_EVENT_KEYS = frozenset({"attempt", "attempts", "status", "duration", "index", "items"})
#: Trigger fields that say how a run started, not what it was given.
_KEEP_TRIGGER_KEYS = frozenset({"type", "kind", "name", "schedule", "schedule_id", "by"})


@dataclass(frozen=True, slots=True)
class RedactPolicy:
    """Which runs to redact: finished before ``cutoff`` (epoch seconds), optionally of
    one ``workflow``."""

    cutoff: float
    workflow: str | None = None


@dataclass(slots=True)
class RedactReport:
    runs: int = 0
    steps: int = 0
    attempts: int = 0
    events: int = 0
    log_lines: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "runs": self.runs,
            "steps": self.steps,
            "attempts": self.attempts,
            "events": self.events,
            "log_lines": self.log_lines,
        }


def redact_value(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    """A mapping keeps its keys (and the values of ``keep``); anything else becomes
    ``"[redacted]"``; None stays None."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: (v if k in keep else REDACTED) for k, v in value.items()}
    return REDACTED


def _eligible(policy: RedactPolicy) -> Any:
    """The runs a policy selects (finished before the cutoff, parent finished)."""
    parent = aliased(runs)
    parent_running = exists().where(
        parent.c.id == runs.c.parent_run_id, parent.c.status.not_in(_TERMINAL)
    )
    query = select(runs.c.id).where(
        runs.c.status.in_(_TERMINAL),
        runs.c.finished_at.is_not(None),
        runs.c.finished_at < policy.cutoff,
        ~parent_running,
    )
    if policy.workflow is not None:
        query = query.where(runs.c.workflow == policy.workflow)
    return query


def count_eligible(store: SqlStore, policy: RedactPolicy) -> RedactReport:
    """What :func:`redact` would touch (for ``--dry-run``)."""
    from sqlalchemy import func

    ids = _eligible(policy).subquery()
    report = RedactReport()
    with store._hooks.read() as conn:

        def count(table: Any) -> int:
            query = select(func.count()).where(table.c.run_id.in_(select(ids.c.id)))
            return int(conn.execute(query).scalar_one())

        report.runs = int(conn.execute(select(func.count()).select_from(ids)).scalar_one())
        report.steps = count(steps)
        report.attempts = count(attempts)
        report.events = count(events)
        report.log_lines = count(logs)
    return report


def redact(store: SqlStore, policy: RedactPolicy, *, batch: int = BATCH) -> RedactReport:
    """Redact every run the policy selects; returns what was changed."""
    report = RedactReport()
    for run_ids in _batches(store, policy, batch):
        with store._hooks.write() as conn:
            if store._hooks.name == "sqlite":
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
            # Re-check inside the write: a run retried since the read is left alone.
            still = _eligible(policy).where(runs.c.id.in_(run_ids))
            ids = [r[0] for r in conn.execute(still).all()]
            if ids:
                _redact_batch(conn, ids, report)
    if store._hooks.name == "sqlite":
        _checkpoint(store)
    return report


def _batches(store: SqlStore, policy: RedactPolicy, batch: int) -> Iterator[list[str]]:
    last = ""
    while True:
        query = _eligible(policy).where(runs.c.id > last).order_by(runs.c.id).limit(batch)
        with store._hooks.read() as conn:
            ids = [r[0] for r in conn.execute(query).all()]
        if not ids:
            return
        yield ids
        last = ids[-1]


def _redact_batch(conn: Connection, ids: Sequence[str], report: RedactReport) -> None:
    report.runs += _redact_runs(conn, ids)
    report.steps += _redact_steps(conn, ids)
    report.events += _redact_events(conn, ids)
    result = conn.execute(
        update(attempts)
        .where(attempts.c.run_id.in_(ids), attempts.c.error.is_not(None))
        .values(error=REDACTED)
    )
    report.attempts += max(result.rowcount, 0)
    report.log_lines += max(conn.execute(delete(logs).where(logs.c.run_id.in_(ids))).rowcount, 0)


def _redact_runs(conn: Connection, ids: Sequence[str]) -> int:
    c = runs.c
    rows = conn.execute(
        select(c.id, c.inputs, c.outputs, c.trigger, c.error, c.sealed_inputs).where(c.id.in_(ids))
    ).all()
    params = [
        {
            "b_id": r.id,
            "inputs": redact_value(r.inputs),
            "outputs": redact_value(r.outputs),
            "trigger": redact_value(r.trigger, _KEEP_TRIGGER_KEYS),
            "error": None if r.error is None else REDACTED,
            # Empty bytes load as an empty mapping and need no key.
            "sealed_inputs": None if r.sealed_inputs is None else b"",
        }
        for r in rows
    ]
    if params:
        conn.execute(update(runs).where(c.id == bindparam("b_id")), params)
    return len(params)


def _redact_steps(conn: Connection, ids: Sequence[str]) -> int:
    c = steps.c
    rows = conn.execute(
        select(c.run_id, c.key, c.item, c.outputs, c.error, c.sealed_outputs).where(
            c.run_id.in_(ids)
        )
    ).all()
    params = [
        {
            "b_run": r.run_id,
            "b_key": r.key,
            "item": redact_value(r.item),
            "outputs": redact_value(r.outputs),
            "error": None if r.error is None else REDACTED,
            "sealed_outputs": None if r.sealed_outputs is None else b"",
        }
        for r in rows
    ]
    if params:
        stmt = update(steps).where(c.run_id == bindparam("b_run"), c.key == bindparam("b_key"))
        conn.execute(stmt, params)
    return len(params)


def _redact_events(conn: Connection, ids: Sequence[str]) -> int:
    c = events.c
    rows = conn.execute(select(c.id, c.data).where(c.run_id.in_(ids))).all()
    params = [
        {"b_id": r.id, "data": redact_value(r.data, _KEEP_EVENT_KEYS)}
        for r in rows
        if r.data and redact_value(r.data, _KEEP_EVENT_KEYS) != r.data
    ]
    if params:
        conn.execute(update(events).where(c.id == bindparam("b_id")), params)
    return len(params)


def _checkpoint(store: SqlStore) -> None:
    """Move the WAL into the database file and truncate it, so the old pages are gone
    from the WAL too (skipped, with a warning, while a reader holds an old snapshot)."""
    if getattr(store._hooks, "memory", False):
        return
    with store.engine.connect() as conn:
        busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
        if busy is not None and busy[0]:
            logger.warning("the SQLite log could not be truncated now: a reader is active")
