"""The SQL store: SQLite and PostgreSQL through one SQLAlchemy Core code path.

What differs between the two databases lives in :mod:`plait.store.dialects`. Every
statement on the hot path (commit, claim, leases) is built once, in ``__init__``, so a
call only binds parameters and SQLAlchemy's compiled cache does the rest; many rows
go in one ``executemany``.

A :class:`SqlStore` is thread-safe: it may be shared by the asyncio thread and worker
threads of one process, and any number of processes may share its database.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    func,
    nulls_first,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from plait.engine.state import (
    AttemptRecord,
    AttemptStatus,
    Event,
    RunState,
    RunStatus,
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
from plait.store.dialects import Hooks, hooks_for
from plait.store.prepared import Prepared
from plait.store.tables import attempts, events, logs, runs, steps, workflow_versions, workflows

_TERMINAL_RUN = [str(s) for s in RunStatus if s.terminal]
_RUNNABLE = [str(StepStatus.QUEUED), str(StepStatus.RETRYING)]
_WAITING = str(StepStatus.WAITING)
_TIMED = [str(StepStatus.QUEUED), str(StepStatus.RETRYING), _WAITING]
_RUNNING_ATTEMPT = str(AttemptStatus.RUNNING)
_FIXED_RUN_COLUMNS = (
    "id",
    "workflow",
    "namespace",
    "created_at",
    "parent_run_id",
    "concurrency_key",
)


def _upsert(hooks: Hooks, table: Any, keys: Sequence[str]) -> Any:
    """``INSERT … ON CONFLICT (keys) DO UPDATE`` setting every other column."""
    stmt = hooks.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys},
    )


def _columns(table: Any, *skip: str) -> list[str]:
    return [c.name for c in table.c if c.name not in skip]


class _Statements:
    """The statements of the hot path, compiled once per store (see ``prepared``)."""

    def __init__(self, hooks: Hooks) -> None:
        d = hooks.engine.dialect
        # Identity columns never change after create_run; leaving them out of the SET
        # spares SQLite from rewriting their index entries on every transition.
        run_cols = _columns(runs, *_FIXED_RUN_COLUMNS)
        self.update_run = Prepared(
            update(runs).where(
                runs.c.id == bindparam("b_id"), runs.c.version == bindparam("b_expected")
            ),
            d,
            run_cols,
        )
        self.bump_run = Prepared(
            update(runs).where(
                runs.c.id == bindparam("b_id"), runs.c.version == bindparam("b_expected")
            ),
            d,
            ["version"],
        )
        self.insert_run = Prepared(hooks.insert(runs), d, _columns(runs))
        self.insert_steps = Prepared(hooks.insert(steps), d, _columns(steps))
        self.upsert_steps = Prepared(_upsert(hooks, steps, ("run_id", "key")), d, _columns(steps))
        self.upsert_attempts = Prepared(
            _upsert(hooks, attempts, ("run_id", "step", "attempt")), d, _columns(attempts)
        )
        self.insert_events = Prepared(hooks.insert(events), d, _columns(events, "id"))
        self.insert_logs = Prepared(hooks.insert(logs), d, _columns(logs, "id"))
        self.claim = Prepared(hooks.lock(self._claim_query()), d)
        # SQLite (one writer, nothing to skip) takes each status from its own index range
        # in due order and merges: the single OR query would sort every due step.
        self.claim_parts = [
            Prepared(self._claim_part(status), d) for status in (*_RUNNABLE, _WAITING)
        ]
        self.claim_run = Prepared(
            hooks.lock(self._claim_query().where(steps.c.run_id == bindparam("run"))), d
        )
        self.start_steps = Prepared(
            update(steps)
            .where(steps.c.run_id == bindparam("b_run"), steps.c.key == bindparam("b_key"))
            .values(
                status=str(StepStatus.RUNNING),
                attempt=bindparam("b_attempt"),
                reason=None,
                available_at=None,
                started_at=func.coalesce(steps.c.started_at, bindparam("b_now")),
            ),
            d,
        )
        # A claimed timer moves to the lease end: if the claimer dies before it commits
        # the resume, the step comes due again instead of waiting forever.
        self.hold_timers = Prepared(
            update(steps)
            .where(steps.c.run_id == bindparam("b_run"), steps.c.key == bindparam("b_key"))
            .values(available_at=bindparam("b_lease")),
            d,
        )
        self.renew = Prepared(
            update(attempts)
            .where(attempts.c.worker == bindparam("b_worker"))
            .where(attempts.c.status == _RUNNING_ATTEMPT)
            .values(lease_until=bindparam("b_lease")),
            d,
        )
        self.load_run = Prepared(select(runs).where(runs.c.id == bindparam("b_id")), d)
        self.load_steps = Prepared(
            select(steps).where(steps.c.run_id == bindparam("b_id")).order_by(steps.c.key), d
        )

    @staticmethod
    def _claim_query() -> Select[Any]:
        now: Any = bindparam("now")
        s = steps.c
        # Equalities, not IN: an IN list is expanded at run time, which Prepared avoids.
        due = or_(
            and_(
                or_(*(s.status == status for status in _RUNNABLE)),
                or_(s.available_at.is_(None), s.available_at <= now),
            ),
            and_(s.status == _WAITING, s.available_at <= now),
        )
        # Not-yet-timed steps (no available_at) have waited longest: they come first;
        # ties keep index order, which is about insertion order.
        return (
            select(s.run_id, s.key, s.status, s.attempt, s.available_at)
            .where(due)
            .order_by(nulls_first(s.available_at.asc()))
            .limit(bindparam("lim"))
        )

    @staticmethod
    def _claim_part(status: str) -> Select[Any]:
        s = steps.c
        due = s.available_at <= bindparam("now")
        if status != _WAITING:
            due = or_(s.available_at.is_(None), due)
        return (
            select(s.run_id, s.key, s.status, s.attempt, s.available_at)
            .where(s.status == status, due)
            .order_by(s.available_at)  # SQLite sorts NULL first, as the index does
            .limit(bindparam("lim"))
        )


class SqlStore:
    """The :class:`~plait.store.base.Store` on SQLite or PostgreSQL.

    ``url`` is a SQLAlchemy URL: ``sqlite:///path/plait.db`` (options:
    ``?synchronous=full``) or ``postgresql+psycopg://user@host/db``. Secret fields are
    sealed with ``sealer``; without one, writing a secret raises StoreError. The schema
    must exist: :func:`plait.store.migrate.open_store` creates or upgrades it.
    """

    def __init__(self, url: str, sealer: Sealer | None = None) -> None:
        self._hooks = hooks_for(url)
        self._sealer = sealer
        self._q = _Statements(self._hooks)

    @property
    def engine(self) -> Engine:
        return self._hooks.engine

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
        with self._hooks.write() as conn:
            wf_id = self._workflow_id(conn, namespace, workflow, now)
            wv = workflow_versions.c
            found = conn.execute(
                select(wv.id).where(wv.workflow_id == wf_id, wv.checksum == checksum).limit(1)
            ).scalar()
            if found is None:
                number = conn.execute(
                    select(func.coalesce(func.max(wv.version), 0)).where(wv.workflow_id == wf_id)
                ).scalar_one()
                found = conn.execute(
                    workflow_versions.insert().returning(wv.id),
                    {
                        "workflow_id": wf_id,
                        "version": number + 1,
                        "source": source,
                        "checksum": checksum,
                        "author": author,
                        "created_at": now,
                    },
                ).scalar_one()
        return self.get_version(found)

    def _workflow_id(self, conn: Connection, namespace: str, name: str, now: float) -> int:
        """The workflow's id, creating the row; locked so versions get distinct numbers."""
        row = {"namespace": namespace, "name": name, "created_at": now, "updated_at": now}
        conn.execute(
            self._hooks.insert(workflows).on_conflict_do_nothing(
                index_elements=["namespace", "name"]
            ),
            row,
        )
        query = select(workflows.c.id).where(
            workflows.c.namespace == namespace, workflows.c.name == name
        )
        wf_id: int = conn.execute(query.with_for_update()).scalar_one()
        return wf_id

    def get_version(self, version_id: int) -> VersionRecord:
        wv, wf = workflow_versions.c, workflows.c
        query = (
            select(workflow_versions, wf.namespace, wf.name)
            .join_from(workflow_versions, workflows, wv.workflow_id == wf.id)
            .where(wv.id == version_id)
        )
        with self._hooks.read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"workflow version {version_id} not found")
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
        with self._hooks.cursor() as cur:
            cur.execute(update_run.sql, run_params)
            if cur.rowcount != 1:
                self._conflict(cur, run.id, expected_version)
            if step_params:
                cur.executemany(q.upsert_steps.sql, step_params)
            if attempt_params:
                cur.executemany(q.upsert_attempts.sql, attempt_params)
            if event_params:
                cur.executemany(q.insert_events.sql, event_params)

    def _conflict(self, cur: Any, run_id: str, expected: int) -> None:
        load = self._q.load_run
        cur.execute(load.sql, load.params({"b_id": run_id}))
        found = load.rows(cur)
        stored = found[0]["version"] if found else None
        if stored is None:
            raise NotFound(f"run {run_id} not found")
        raise ConflictError(f"run {run_id} is at version {stored}, not {expected}")

    def list_runs(self, filter: RunFilter, cursor: str | None, limit: int) -> Page:
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
        a = attempts.c
        query = select(attempts).where(a.run_id == run_id).order_by(a.started_at, a.step, a.attempt)
        with self._hooks.read() as conn:
            return [codec.attempt_from_row(r) for r in conn.execute(query).mappings()]

    def run_versions(self, run_ids: Sequence[str]) -> dict[str, int]:
        if not run_ids:
            return {}
        query = select(runs.c.id, runs.c.version).where(runs.c.id.in_(list(run_ids)))
        with self._hooks.read() as conn:
            return {row.id: row.version for row in conn.execute(query)}

    def request_cancel(self, run_id: str) -> bool:
        """Also increases the run's version, so that a process holding the run sees a
        conflict on its next commit and reloads the flag instead of overwriting it."""
        query = (
            update(runs)
            .where(runs.c.id == run_id, runs.c.status.not_in(_TERMINAL_RUN))
            .values(cancel_requested=True, version=runs.c.version + 1)
        )
        with self._hooks.write() as conn:
            if conn.execute(query).rowcount == 1:
                return True
            if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
                raise NotFound(f"run {run_id} not found")
            return False

    # -- the queue ---------------------------------------------------------------------
    def claim(
        self, worker: str, now: float, lease_until: float, limit: int, run_id: str | None = None
    ) -> list[Claim]:
        q = self._q
        with self._hooks.cursor() as cur:
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

    def renew_leases(self, worker: str, lease_until: float) -> int:
        renew = self._q.renew
        with self._hooks.cursor() as cur:
            cur.execute(renew.sql, renew.params({"b_worker": worker, "b_lease": lease_until}))
            count: int = cur.rowcount
        return count

    def expired_attempts(self, now: float, run_id: str | None = None) -> list[AttemptRecord]:
        a = attempts.c
        query = select(attempts).where(a.status == _RUNNING_ATTEMPT, a.lease_until < now)
        if run_id is not None:
            query = query.where(a.run_id == run_id)
        with self._hooks.read() as conn:
            rows = conn.execute(query.order_by(a.lease_until)).mappings().all()
        return [codec.attempt_from_row(r) for r in rows]

    def next_due(self, run_id: str | None = None) -> float | None:
        """Also counts queued steps held back by ``available_at``: they need a timer too."""
        s = steps.c
        query = select(func.min(s.available_at)).where(
            s.status.in_(_TIMED), s.available_at.is_not(None)
        )
        if run_id is not None:
            query = query.where(s.run_id == run_id)
        with self._hooks.read() as conn:
            due: float | None = conn.execute(query).scalar()
        return due

    # -- logs and events ---------------------------------------------------------------
    def append_logs(self, lines: Sequence[LogLine]) -> None:
        insert = self._q.insert_logs
        if lines:
            params = insert.many([codec.log_row(line) for line in lines])
            with self._hooks.cursor() as cur:
                cur.executemany(insert.sql, params)

    def read_logs(
        self, run_id: str, after_id: int = 0, limit: int = 1000, step: str | None = None
    ) -> list[LogLine]:
        c = logs.c
        query = select(logs).where(c.run_id == run_id, c.id > after_id)
        if step is not None:
            query = query.where(c.step == step)
        with self._hooks.read() as conn:
            rows = conn.execute(query.order_by(c.id).limit(limit)).mappings().all()
        return [codec.log_from_row(r) for r in rows]

    def read_events(
        self, after_id: int = 0, limit: int = 1000, run_id: str | None = None
    ) -> list[StoredEvent]:
        c = events.c
        query = select(events).where(c.id > after_id)
        if run_id is not None:
            query = query.where(c.run_id == run_id)
        with self._hooks.read() as conn:
            rows = conn.execute(query.order_by(c.id).limit(limit)).mappings().all()
        return [codec.event_from_row(r) for r in rows]

    def close(self) -> None:
        self._hooks.close()


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
