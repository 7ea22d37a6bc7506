"""The SQL store: SQLite and PostgreSQL through one SQLAlchemy Core code path.

What differs between the two databases lives in :mod:`plait.store.dialects`. Every
statement a run needs (create, commit, claim, leases, logs, versions) is built once,
in ``__init__``, and run on the driver's cursor (:mod:`plait.store.prepared`); many rows
go in one ``executemany``. On SQLite those statements may come precompiled from
:mod:`plait.store.lite`, so that ``plait run`` never imports SQLAlchemy; only the
queries built per call (run lists with filters) import it, when first used.

A :class:`SqlStore` is thread-safe: it may be shared by the asyncio thread and worker
threads of one process, and any number of processes may share its database.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from plait.engine.state import (
    AttemptRecord,
    AttemptStatus,
    Event,
    RunState,
    StepState,
    StepStatus,
)
from plait.errors import ConflictError, NotFound, StoreError
from plait.store import codec
from plait.store.base import (
    Claim,
    LogLine,
    Page,
    RunFilter,
    RunSnapshot,
    Sealer,
    StoredEvent,
    VersionRecord,
)
from plait.store.prepared import BIND_KINDS
from plait.store.statement_set import StatementSet

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from plait.store.lite import StoreHooks

_RUNNABLE = [str(StepStatus.QUEUED), str(StepStatus.RETRYING)]
_WAITING = str(StepStatus.WAITING)
_QUEUED = str(StepStatus.QUEUED)
_RUNNING_ATTEMPT = str(AttemptStatus.RUNNING)


class SqlStore:
    """The :class:`~plait.store.base.Store` on SQLite or PostgreSQL.

    ``url`` is a SQLAlchemy URL: ``sqlite:///path/plait.db`` (options:
    ``?synchronous=full``) or ``postgresql+psycopg://user@host/db``. Secret fields are
    sealed with ``sealer``; without one, writing a secret raises StoreError. The schema
    must exist: :func:`plait.store.migrate.open_store` creates or upgrades it.
    """

    def __init__(
        self,
        url: str,
        sealer: Sealer | None = None,
        *,
        hooks: StoreHooks | None = None,
        statements: StatementSet | None = None,
    ) -> None:
        if hooks is None:
            from plait.store.dialects import hooks_for

            hooks = hooks_for(url)
        self._hooks = hooks
        self._sealer = sealer
        self._q = statements or StatementSet.compile(hooks)
        #: PostgreSQL: ``notify(cur, channel, payload)`` inside a transaction (wake-ups)
        self._notify: Any = getattr(hooks, "notify", None) if hooks.name == "postgresql" else None
        #: PostgreSQL: statements of a transaction sent in one round trip (``commit``)
        self._pipeline: Any = getattr(hooks, "pipeline", None)
        #: runs someone follows (any API replica said so on ``plait_follow``) → until when
        self._followed: dict[str, float] = {}

    @property
    def engine(self) -> Engine:
        return self._hooks.engine

    # -- wake-ups (PostgreSQL LISTEN/NOTIFY; SQLite has its in-process wake) -----------
    @property
    def listen_url(self) -> str | None:
        """The libpq URL of dedicated connections (LISTEN, leadership); None on SQLite."""
        url: str | None = getattr(self._hooks, "listen_url", None)
        return url

    @property
    def listen_options(self) -> dict[str, Any]:
        """libpq options of those connections (timeouts, keepalives)."""
        return dict(getattr(self._hooks, "listen_options", {}))

    def notify(self, channel: str, payload: str = "") -> None:
        """Send one notification now, in a transaction of its own (no-op on SQLite)."""
        if self._notify is not None:
            with self._hooks.cursor() as cur:
                self._notify(cur, channel, payload)

    def watch(self, run_id: str, until: float) -> None:
        """Someone follows ``run_id`` until ``until``: meanwhile this process's commits
        and log lines of it also notify ``plait_runs``/``plait_logs``. Unfollowed runs
        notify nothing, which keeps NOTIFY (serialised at commit by PostgreSQL) off the
        hot path."""
        now = time.time()
        if len(self._followed) > 1000:
            self._followed = {k: v for k, v in self._followed.items() if v > now}
        self._followed[run_id] = max(until, self._followed.get(run_id, 0.0))

    def _followed_now(self, run_id: str) -> bool:
        until = self._followed.get(run_id)
        return until is not None and until > time.time()

    def _notify_changes(
        self, cur: Any, run_id: str, step_rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Send :meth:`_wake_ups` in the cursor's transaction."""
        for note in self._wake_ups(run_id, step_rows):
            self._notify(cur, note["channel"], note["payload"])

    def _wake_ups(
        self, run_id: str, step_rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, str]]:
        """What a transaction that writes ``step_rows`` notifies (PostgreSQL): one
        ``plait_ready`` when it queues steps (however many), ``plait_runs`` when the run
        is followed."""
        if self._notify is None:
            return []
        notes = []
        if any(row["status"] == _QUEUED for row in step_rows):
            notes.append({"channel": "plait_ready", "payload": ""})
        if self._followed and self._followed_now(run_id):
            notes.append({"channel": "plait_runs", "payload": run_id})
        return notes

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._hooks.name

    # -- workflow versions -------------------------------------------------------------
    def save_version(
        self, namespace: str, workflow: str, source: str, checksum: str, author: str | None
    ) -> VersionRecord:
        """Never moves the workflow's current version: only deploying does that
        (:meth:`plait.store.server.ServerStore.deploy`), so ``plait run`` of a local file
        on the server's store cannot change what the server runs."""
        now = time.time()
        q = self._q
        with self._hooks.cursor() as cur:
            row = {"namespace": namespace, "name": workflow, "created_at": now, "updated_at": now}
            cur.execute(q.insert_workflow.sql, q.insert_workflow.params(row))
            cur.execute(
                q.workflow_id.sql,
                q.workflow_id.params({"b_namespace": namespace, "b_name": workflow}),
            )
            wf_id = cur.fetchone()[0]
            cur.execute(
                q.version_by_checksum.sql,
                q.version_by_checksum.params({"b_wf": wf_id, "b_checksum": checksum}),
            )
            found = cur.fetchone()
            if found is None:
                cur.execute(q.max_version.sql, q.max_version.params({"b_wf": wf_id}))
                number = cur.fetchone()[0]
                version = {
                    "workflow_id": wf_id,
                    "version": number + 1,
                    "source": source,
                    "checksum": checksum,
                    "author": author,
                    "created_at": now,
                }
                cur.execute(q.insert_version.sql, q.insert_version.params(version))
                found = cur.fetchone()
        return self.get_version(found[0])

    def get_version(self, version_id: int) -> VersionRecord:
        q = self._q.get_version
        with self._hooks.cursor(write=False) as cur:
            cur.execute(q.sql, q.params({"b_id": version_id}))
            found = q.rows(cur)
        if not found:
            raise NotFound(f"workflow version {version_id} not found")
        row = found[0]
        return VersionRecord(
            id=row["id"],
            namespace=row["namespace"],
            workflow=row["name"],
            version=row["version"],
            source=row["source"],
            checksum=row["checksum"],
            author=row["author"],
            created_at=row["created_at"],
        )

    # -- runs ------------------------------------------------------------------------
    def create_run(
        self, run: RunState, steps: Sequence[StepState], events: Sequence[Event]
    ) -> None:
        run_row = codec.run_row(run, self._sealer)
        step_rows = [codec.step_row(run.id, s, self._sealer) for s in steps]
        q = self._q
        try:
            with self._hooks.cursor() as cur:
                cur.execute(q.insert_run.sql, q.insert_run.params(run_row))
                if step_rows:
                    cur.executemany(q.insert_steps.sql, q.insert_steps.many(step_rows))
                if events:
                    rows = [codec.event_row(e) for e in events]
                    cur.executemany(q.insert_events.sql, q.insert_events.many(rows))
                if self._notify is not None:
                    self._notify_changes(cur, run.id, step_rows)
        except ConflictError as exc:
            raise ConflictError(f"run {run.id} already exists") from exc.__cause__

    def load_run(self, run_id: str) -> RunSnapshot:
        q = self._q
        with self._hooks.cursor(write=False) as cur:
            cur.execute(q.load_run.sql, q.load_run.params({"b_id": run_id}))
            found = q.load_run.rows(cur)
            if not found:
                raise NotFound(f"run {run_id} not found")
            cur.execute(q.load_steps.sql, q.load_steps.params({"b_id": run_id}))
            step_rows = q.load_steps.rows(cur)
        return RunSnapshot(
            run=codec.run_from_row(found[0], self._sealer),
            steps=[codec.step_from_row(r, self._sealer) for r in step_rows],
        )

    def commit(
        self,
        run: RunState,
        expected_version: int,
        steps: Sequence[StepState] = (),
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[Event] = (),
        run_changed: bool = True,
    ) -> None:
        # Encode (and seal) before the transaction: no CPU work while holding the lock.
        q = self._q
        update_run = q.update_run if run_changed else q.bump_run
        if run_changed:
            params = codec.run_row(run, self._sealer)
            del params["id"]
        else:  # only the version moves: the cheap, common case of a step transition
            params = {}
        params["version"] = expected_version + 1
        params["b_id"] = run.id
        params["b_expected"] = expected_version
        step_rows = [codec.step_row(run.id, s, self._sealer) for s in steps]
        run_params = update_run.params(params)
        step_params = q.upsert_steps.many(step_rows)
        attempt_params = q.upsert_attempts.many([codec.attempt_row(a) for a in attempts])
        event_params = q.insert_events.many([codec.event_row(e) for e in events])
        one = q.commit_changed if run_changed else q.commit_bump
        if one is not None:  # PostgreSQL: the transition is one statement in autocommit
            params["steps"] = _json_array(_last_by(step_rows, "key"), "sealed_outputs")
            params["attempts"] = _json_array(
                _last_by([codec.attempt_row(a) for a in attempts], "step", "attempt")
            )
            params["events"] = _json_array([codec.event_row(e) for e in events])
            params["notes"] = _json_array(self._wake_ups(run.id, step_rows))
            with self._hooks.autocommit() as cur:  # type: ignore[attr-defined]
                cur.execute(one.sql, one.params(params))
                if cur.fetchone()[0] != 1:  # nothing was written
                    self._conflict(cur, run.id, expected_version)
            return
        with self._hooks.cursor() as cur:
            if self._pipeline is not None:  # PostgreSQL: one round trip, then COMMIT
                with self._pipeline(cur) as checked:
                    checked.execute(update_run.sql, run_params)
                    _execute(cur, q.upsert_steps.sql, step_params)
                    _execute(cur, q.upsert_attempts.sql, attempt_params)
                    _execute(cur, q.insert_events.sql, event_params)
                    self._notify_changes(cur, run.id, step_rows)
                if checked.rowcount != 1:  # the rest is rolled back with the conflict
                    self._conflict(cur, run.id, expected_version)
                return
            cur.execute(update_run.sql, run_params)
            if cur.rowcount != 1:
                self._conflict(cur, run.id, expected_version)
            _execute(cur, q.upsert_steps.sql, step_params)
            _execute(cur, q.upsert_attempts.sql, attempt_params)
            _execute(cur, q.insert_events.sql, event_params)
            if self._notify is not None:
                self._notify_changes(cur, run.id, step_rows)

    def _conflict(self, cur: Any, run_id: str, expected: int) -> None:
        load = self._q.load_run
        cur.execute(load.sql, load.params({"b_id": run_id}))
        found = load.rows(cur)
        stored = found[0]["version"] if found else None
        if stored is None:
            raise NotFound(f"run {run_id} not found")
        raise ConflictError(f"run {run_id} is at version {stored}, not {expected}")

    def list_runs(self, filter: RunFilter, cursor: str | None, limit: int) -> Page:
        from sqlalchemy import and_, or_, select

        from plait.store.tables import runs

        c = runs.c
        query = select(runs).order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)
        if filter.workflow is not None:
            query = query.where(c.workflow == filter.workflow)
        if filter.namespace is not None:
            query = query.where(c.namespace == filter.namespace)
        if filter.status:
            query = query.where(c.status.in_([str(s) for s in filter.status]))
        if cursor:
            at, last = codec.decode_cursor(cursor)
            query = query.where(or_(c.created_at < at, and_(c.created_at == at, c.id < last)))
        with self._hooks.read() as conn:
            rows = conn.execute(query).mappings().all()
        items = [codec.run_from_row(r, self._sealer) for r in rows[:limit]]
        more = len(rows) > limit and items
        next_cursor = codec.encode_cursor(items[-1].created_at, items[-1].id) if more else None
        return Page(items=list(items), next_cursor=next_cursor)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        q = self._q.run_attempts
        with self._hooks.cursor(write=False) as cur:
            cur.execute(q.sql, q.params({"b_run": run_id}))
            return [codec.attempt_from_row(r) for r in q.rows(cur)]

    def run_versions(self, run_ids: Sequence[str]) -> dict[str, int]:
        q = self._q.run_version
        found: dict[str, int] = {}
        if not run_ids:
            return found
        with self._hooks.cursor(write=False) as cur:
            for run_id in run_ids:  # a handful of runs: one indexed lookup each
                cur.execute(q.sql, q.params({"b_id": run_id}))
                row = cur.fetchone()
                if row is not None:
                    found[row[0]] = row[1]
        return found

    def request_cancel(self, run_id: str) -> bool:
        """Also increases the run's version, so that a process holding the run sees a
        conflict on its next commit and reloads the flag instead of overwriting it."""
        q = self._q
        with self._hooks.cursor() as cur:
            cur.execute(q.request_cancel.sql, q.request_cancel.params({"b_id": run_id}))
            if cur.rowcount == 1:
                return True
            cur.execute(q.run_exists.sql, q.run_exists.params({"b_id": run_id}))
            if cur.fetchone() is None:
                raise NotFound(f"run {run_id} not found")
            return False

    # -- the queue ---------------------------------------------------------------------
    def claim(
        self,
        worker: str,
        now: float,
        lease_until: float,
        limit: int,
        run_id: str | None = None,
        *,
        queues: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[Claim]:
        q = self._q
        with self._hooks.cursor() as cur:
            if queues is not None and run_id is None:
                rows = self._routed_steps(cur, now, limit, queues, tags or {})
            else:
                rows = self._due_steps(cur, now, limit, run_id)
            if not rows:
                return []
            claims, starts, holds, new_attempts = _plan_claims(rows, worker, now, lease_until)
            if starts:
                cur.executemany(q.start_steps.sql, q.start_steps.many(starts))
                cur.executemany(q.upsert_attempts.sql, q.upsert_attempts.many(new_attempts))
            if holds:
                cur.executemany(q.hold_timers.sql, q.hold_timers.many(holds))
        return claims

    def _due_steps(self, cur: Any, now: float, limit: int, run_id: str | None) -> list[Any]:
        q = self._q
        params: dict[str, Any] = {"now": now, "lim": limit}
        if run_id is not None:
            params["run"] = run_id
            cur.execute(q.claim_run.sql, q.claim_run.params(params))
            return list(cur.fetchall())
        if self._hooks.name != "sqlite":
            cur.execute(q.claim.sql, q.claim.params(params))
            return list(cur.fetchall())
        rows: list[Any] = []
        for part in q.claim_parts:
            cur.execute(part.sql, part.params(params))
            rows.extend(cur.fetchall())
        rows.sort(key=lambda r: (r[4] is not None, r[4] or 0.0))
        return rows[:limit]

    def _routed_steps(
        self, cur: Any, now: float, limit: int, queues: Sequence[str], tags: Mapping[str, str]
    ) -> list[Any]:
        """One statement per queue (a worker serves a few), merged in claim order. On
        PostgreSQL the rows of a part that lose the merge stay locked only until this
        transaction ends: other workers skip them for that moment, nothing more."""
        part = self._q.claim_queue
        rows: list[Any] = []
        for queue in dict.fromkeys(queues):
            values = {"now": now, "lim": limit, "queue": queue, "tags": dict(tags)}
            cur.execute(part.sql, part.params(values))
            rows.extend(cur.fetchall())
        rows.sort(key=claim_order)
        return [row[:5] for row in rows[:limit]]

    def renew_leases(self, worker: str, lease_until: float) -> int:
        renew = self._q.renew
        with self._hooks.cursor() as cur:
            cur.execute(renew.sql, renew.params({"b_worker": worker, "b_lease": lease_until}))
            count: int = cur.rowcount
        return count

    def expired_attempts(self, now: float, run_id: str | None = None) -> list[AttemptRecord]:
        q = self._q.expired if run_id is None else self._q.expired_run
        with self._hooks.cursor(write=False) as cur:
            cur.execute(q.sql, q.params({"b_now": now, "b_run": run_id}))
            return [codec.attempt_from_row(r) for r in q.rows(cur)]

    def next_due(self, run_id: str | None = None) -> float | None:
        """Also counts queued steps held back by ``available_at``: they need a timer too."""
        q = self._q.next_due if run_id is None else self._q.next_due_run
        with self._hooks.cursor(write=False) as cur:
            cur.execute(q.sql, q.params({"b_run": run_id}))
            row = cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- logs and events ---------------------------------------------------------------
    def append_logs(self, lines: Sequence[LogLine]) -> None:
        insert = self._q.insert_logs
        if lines:
            params = insert.many([codec.log_row(line) for line in lines])
            followed = self._followed and {
                line.run_id for line in lines if self._followed_now(line.run_id)
            }
            with self._hooks.cursor() as cur:
                cur.executemany(insert.sql, params)
                if followed and self._notify is not None:
                    for run_id in followed:
                        self._notify(cur, "plait_logs", run_id)

    def read_logs(
        self, run_id: str, after_id: int = 0, limit: int = 1000, step: str | None = None
    ) -> list[LogLine]:
        q = self._q.read_logs if step is None else self._q.read_step_logs
        values = {"b_run": run_id, "b_after": after_id, "b_limit": limit, "b_step": step}
        with self._hooks.cursor(write=False) as cur:
            cur.execute(q.sql, q.params(values))
            return [codec.log_from_row(r) for r in q.rows(cur)]

    def read_events(
        self, after_id: int = 0, limit: int = 1000, run_id: str | None = None
    ) -> list[StoredEvent]:
        q = self._q.read_events if run_id is None else self._q.read_run_events
        values = {"b_after": after_id, "b_limit": limit, "b_run": run_id}
        with self._hooks.cursor(write=False) as cur:
            cur.execute(q.sql, q.params(values))
            return [codec.event_from_row(r) for r in q.rows(cur)]

    def close(self) -> None:
        self._hooks.close()


_dumps = BIND_KINDS["json"]


def _json_array(rows: Sequence[Mapping[str, Any]], binary: str | None = None) -> str:
    """Rows as a JSON array for ``jsonb_populate_recordset``; the ``binary`` column's
    bytes in PostgreSQL's hex form (``\\x…``), which its bytea input reads."""
    if binary is not None:
        rows = [
            {**row, binary: "\\x" + bytes(row[binary]).hex()} if row[binary] is not None else row
            for row in rows
        ]
    return _dumps(list(rows))  # type: ignore[no-any-return]


def _last_by(rows: Sequence[Mapping[str, Any]], *keys: str) -> list[Mapping[str, Any]]:
    """One row per key (the last): one statement cannot upsert a row twice."""
    if len(rows) < 2:
        return list(rows)
    return list({tuple(row[k] for k in keys): row for row in rows}.values())


def _execute(cur: Any, sql: str, params: Sequence[Any]) -> None:
    """``executemany`` for several rows, ``execute`` for one: a step transition writes
    one or two rows per table, and psycopg's ``executemany`` puts each call through
    pipeline mode and a sync of its own, twice the client CPU of an ``execute``."""
    if len(params) == 1:
        cur.execute(sql, params[0])
    elif params:
        cur.executemany(sql, params)


def claim_order(row: Sequence[Any]) -> tuple[int, bool, float]:
    """Sort key of a routed claim row (…, available_at, priority): highest priority
    first, then steps queued without a due time (they have waited longest), then by due
    time."""
    available_at, priority = row[4], row[5]
    return (-priority, available_at is not None, available_at or 0.0)


def _plan_claims(
    rows: Sequence[Any], worker: str, now: float, lease_until: float
) -> tuple[list[Claim], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """From the selected due steps: the claims, and the parameters of the updates."""
    claims: list[Claim] = []
    starts: list[dict[str, Any]] = []
    holds: list[dict[str, Any]] = []
    new_attempts: list[dict[str, Any]] = []
    for run_id, key, status, attempt, _ in rows:
        if status == _WAITING:
            claims.append(Claim(run_id, key, attempt, "resume"))
            holds.append({"b_run": run_id, "b_key": key, "b_lease": lease_until})
            continue
        number = attempt + 1
        claims.append(Claim(run_id, key, number, "execute"))
        starts.append({"b_run": run_id, "b_key": key, "b_attempt": number, "b_now": now})
        new_attempts.append(
            {
                "run_id": run_id,
                "step": key,
                "attempt": number,
                "status": _RUNNING_ATTEMPT,
                "started_at": now,
                "finished_at": None,
                "error": None,
                "worker": worker,
                "lease_until": lease_until,
            }
        )
    return claims, starts, holds, new_attempts


__all__ = ["SqlStore", "StoreError"]
