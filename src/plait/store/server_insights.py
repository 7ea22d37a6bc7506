"""What the insights read from the history: failed attempts with their log tails, and
the timings of a workflow's runs and of their attempts — in domain words, by indexed
queries, each bounded by a limit the caller gives.

* Failed attempts come newest first from the partial index ``ix_attempts_failed``
  (``attempts (started_at) WHERE status IN ('failed', 'timed_out')``, migration
  0010): only failures are in it, so finding the latest few thousand costs the same
  with a million successful attempts beside them, and recording a success does not
  touch it. The predicate is written as SQL text, identical to the index's, because
  SQLite uses a partial index only for queries that repeat its condition.
* A failure's log tail is its last lines on stdout and stderr, read backwards on
  ``logs (run_id, id)``, one small query per attempt asked for.
* A workflow's runs come newest first from ``runs (workflow, created_at)``; runs that
  succeeded in a window from ``runs (status, created_at)`` (a run that ended in the
  window was created at most :data:`MAX_RUN_AGE` before it, as for the alert rules);
  the attempts of given runs by the primary key's ``run_id`` prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, select, text

from plait.ops.insights_records import (
    AttemptTiming,
    FailedAttempt,
    HistoryFilter,
    RunTiming,
)
from plait.store.server_records import StorePart
from plait.store.tables import attempts, deployments, logs, runs, workflows

#: the longest a run may have run and still be found by the window it ended in
MAX_RUN_AGE = 86400.0
#: the condition of the partial index ``ix_attempts_failed``, word for word
FAILED_CONDITION = "status IN ('failed', 'timed_out')"
_FAILED: ColumnElement[bool] = text(f"attempts.{FAILED_CONDITION}")  # type: ignore[assignment]
#: run ids per ``IN (…)`` list
CHUNK = 500


def _filters(where: HistoryFilter) -> list[Any]:
    found: list[Any] = []
    if where.workflow is not None:
        found.append(runs.c.workflow == where.workflow)
    if where.namespace is not None:
        found.append(runs.c.namespace == where.namespace)
    if where.namespaces is not None:
        found.append(runs.c.namespace.in_(sorted(where.namespaces)))
    return found


def _timing_columns() -> tuple[Any, ...]:
    r = runs.c
    return (
        r.id,
        r.workflow,
        r.namespace,
        r.status,
        r.created_at,
        r.started_at,
        r.finished_at,
        r.version_id,
    )


def _timing(row: Any) -> RunTiming:
    return RunTiming(*row)  # the columns of _timing_columns are the record's fields


class InsightStore(StorePart):
    """The history the insights read (see the module docstring)."""

    # -- failures ------------------------------------------------------------------------
    def failed_attempts(
        self, since: float, where: HistoryFilter, limit: int
    ) -> list[FailedAttempt]:
        """Attempts that failed or timed out, started at or after ``since``, newest
        first, at most ``limit``."""
        if where.nothing:
            return []
        a, r = attempts.c, runs.c
        query = (
            select(
                a.run_id,
                r.workflow,
                r.namespace,
                a.step,
                a.attempt,
                a.status,
                a.error,
                a.started_at,
                a.finished_at,
            )
            .select_from(attempts.join(runs, r.id == a.run_id))
            .where(_FAILED, a.started_at >= since, *_filters(where))
            .order_by(a.started_at.desc())
            .limit(limit)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            FailedAttempt(
                run_id=str(row.run_id),
                workflow=str(row.workflow),
                namespace=str(row.namespace),
                step=str(row.step),
                attempt=int(row.attempt),
                status=str(row.status),
                error=str(row.error or ""),
                started_at=float(row.started_at),
                finished_at=None if row.finished_at is None else float(row.finished_at),
            )
            for row in rows
        ]

    def log_tails(
        self, keys: Sequence[tuple[str, str, int]], lines: int
    ) -> dict[tuple[str, str, int], tuple[str, ...]]:
        """The last ``lines`` lines each attempt (run id, step, attempt) wrote on stdout
        or stderr, oldest first."""
        c = logs.c
        query = (
            select(c.line)
            .where(
                c.run_id == bindparam("run_id"),
                c.step == bindparam("step"),
                c.attempt == bindparam("attempt"),
                c.stream != "system",
            )
            .order_by(c.id.desc())
            .limit(lines)
        )
        found: dict[tuple[str, str, int], tuple[str, ...]] = {}
        with self._read() as conn:
            for run_id, step, attempt in keys:
                params = {"run_id": run_id, "step": step, "attempt": attempt}
                tail = [str(line) for line in conn.execute(query, params).scalars()]
                found[(run_id, step, attempt)] = tuple(reversed(tail))
        return found

    # -- timings -------------------------------------------------------------------------
    def succeeded_runs(self, since: float, where: HistoryFilter, limit: int) -> list[RunTiming]:
        """Runs that succeeded at or after ``since``, newest first, at most ``limit``."""
        if where.nothing:
            return []
        r = runs.c
        query = (
            select(*_timing_columns())
            .where(
                r.status == "succeeded",
                r.created_at >= since - MAX_RUN_AGE,
                r.finished_at >= since,
                *_filters(where),
            )
            .order_by(r.created_at.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [_timing(row) for row in conn.execute(query).all()]

    def workflow_runs(
        self,
        workflow: str,
        namespace: str,
        limit: int,
        *,
        before: float | None = None,
        since: float | None = None,
    ) -> list[RunTiming]:
        """Runs of one workflow of any status, newest first, at most ``limit``: created
        before ``before`` and at or after ``since`` when given."""
        r = runs.c
        query = select(*_timing_columns()).where(r.workflow == workflow, r.namespace == namespace)
        if before is not None:
            query = query.where(r.created_at < before)
        if since is not None:
            query = query.where(r.created_at >= since)
        query = query.order_by(r.created_at.desc()).limit(limit)
        with self._read() as conn:
            return [_timing(row) for row in conn.execute(query).all()]

    def run_timing(self, run_id: str) -> RunTiming | None:
        """One run's timing, or None when there is no such run."""
        query = select(*_timing_columns()).where(runs.c.id == run_id)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _timing(row)

    def run_attempts(
        self, run_ids: Sequence[str], statuses: Iterable[str] | None = None
    ) -> list[AttemptTiming]:
        """The attempts of ``run_ids`` (of ``statuses`` only, when given; their errors
        only when failures are among them)."""
        a = attempts.c
        wanted = None if statuses is None else sorted(statuses)
        errors = wanted is None or any(s != "succeeded" for s in wanted)
        columns = [a.run_id, a.step, a.attempt, a.status, a.started_at, a.finished_at]
        if errors:
            columns.append(a.error)
        found: list[AttemptTiming] = []
        with self._read() as conn:
            for start in range(0, len(run_ids), CHUNK):
                query = select(*columns).where(a.run_id.in_(list(run_ids[start : start + CHUNK])))
                if wanted is not None:
                    query = query.where(a.status.in_(wanted))
                # the columns are the record's fields, in its order
                found.extend(AttemptTiming(*row) for row in conn.execute(query).all())
        return found

    def workflows_since(
        self, since: float, where: HistoryFilter, limit: int
    ) -> list[tuple[str, str]]:
        """The workflows (name, namespace) with runs created at or after ``since``, those
        with the newest run first, at most ``limit``."""
        if where.nothing:
            return []
        r = runs.c
        newest = func.max(r.created_at)
        query = (
            select(r.workflow, r.namespace)
            .where(r.created_at >= since, *_filters(where))
            .group_by(r.workflow, r.namespace)
            .order_by(newest.desc(), r.workflow)
            .limit(limit)
        )
        with self._read() as conn:
            return [(str(w), str(n)) for w, n in conn.execute(query).all()]

    def current_version_id(self, workflow: str, namespace: str) -> int | None:
        """The version a deployed workflow runs now; None when it is not deployed."""
        d = deployments.c
        query = (
            select(workflows.c.current_version_id)
            .select_from(deployments.join(workflows, workflows.c.id == d.workflow_id))
            .where(d.name == workflow, d.namespace == namespace)
        )
        with self._read() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)


__all__ = ["FAILED_CONDITION", "MAX_RUN_AGE", "InsightStore"]
