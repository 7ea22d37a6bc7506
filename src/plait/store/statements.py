"""The SQLAlchemy Core statements of a run's life, compiled for one store's dialect.

Each is a fixed statement with bound parameters (no ``IN`` lists, which SQLAlchemy
expands at run time), so it compiles once into a :class:`~plait.store.prepared.Prepared`
and every call only binds values. :class:`plait.store.sql.SqlStore` runs them; for
SQLite their compiled form is also kept in :mod:`plait.store.lite`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    CompoundSelect,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    nulls_first,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from plait.engine.state import AttemptStatus, RunStatus, StepStatus
from plait.store.lite import StoreHooks
from plait.store.prepared import Prepared
from plait.store.tables import (
    attempts,
    events,
    logs,
    runs,
    status_is,
    steps,
    workflow_versions,
    workflows,
)

_TERMINAL_RUN = [str(s) for s in RunStatus if s.terminal]
_RUNNABLE = [str(StepStatus.QUEUED), str(StepStatus.RETRYING)]
_WAITING = str(StepStatus.WAITING)
_TIMED = [*_RUNNABLE, _WAITING]
_RUNNING_ATTEMPT = str(AttemptStatus.RUNNING)
#: Identity columns never change after create_run; leaving them out of the SET spares
#: SQLite from rewriting their index entries on every transition.
_FIXED_RUN_COLUMNS = (
    "id",
    "workflow",
    "namespace",
    "created_at",
    "parent_run_id",
    "concurrency_key",
)


#: Step columns set when the step is created and never changed (its routing): left out
#: of the upsert's SET, so a transition does not rewrite their entries in the claim index.
_FIXED_STEP_COLUMNS = ("queue", "runs_on", "priority")


def _upsert(hooks: StoreHooks, table: Any, keys: Sequence[str], fixed: Sequence[str] = ()) -> Any:
    """``INSERT … ON CONFLICT (keys) DO UPDATE`` setting every other column (but ``fixed``)."""
    stmt = hooks.insert(table)
    keep = {*keys, *fixed}
    return stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in keep},
    )


def _columns(table: Any, *skip: str) -> list[str]:
    return [c.name for c in table.c if c.name not in skip]


def _claim_query() -> Select[Any]:
    now: Any = bindparam("now")
    s = steps.c
    # Equalities, not IN: an IN list is expanded at run time, which Prepared avoids.
    due = or_(
        and_(
            or_(*(status_is(s.status, status) for status in _RUNNABLE)),
            or_(s.available_at.is_(None), s.available_at <= now),
        ),
        and_(status_is(s.status, _WAITING), s.available_at <= now),
    )
    # Not-yet-timed steps (no available_at) have waited longest: they come first;
    # ties keep index order, which is about insertion order.
    return (
        select(s.run_id, s.key, s.status, s.attempt, s.available_at)
        .where(due)
        .order_by(nulls_first(s.available_at.asc()))
        .limit(bindparam("lim"))
    )


def _claim_part(status: str) -> Select[Any]:
    s = steps.c
    due = s.available_at <= bindparam("now")
    if status != _WAITING:
        due = or_(s.available_at.is_(None), due)
    return (
        select(s.run_id, s.key, s.status, s.attempt, s.available_at)
        .where(status_is(s.status, status), due)
        .order_by(s.available_at)  # SQLite sorts NULL first, as the index does
        .limit(bindparam("lim"))
    )


def _pg_commit(run_changed: bool) -> Any:
    """PostgreSQL: a whole step transition as ONE statement — the run's version check
    and update, the steps and attempts upserted and the events appended (rows passed
    as JSON arrays), and the wake-ups — run in autocommit, so the transition costs one
    round trip and one executor start instead of a pipeline of eight statements and a
    ``COMMIT``. Every write is conditioned on the version check (``r``): when another
    process moved the run, nothing is written and the statement returns 0."""

    def cols(names: Sequence[str]) -> str:
        return ", ".join(f'"{c}"' for c in names)

    def upsert(table: Any, keys: Sequence[str], fixed: Sequence[str], param: str) -> str:
        names = _columns(table)
        changing = [c for c in names if c not in (*keys, *fixed)]
        return (
            f"INSERT INTO {table.name} ({cols(names)}) SELECT {cols(names)} "
            f"FROM jsonb_populate_recordset(NULL::{table.name}, CAST(:{param} AS jsonb)) "
            f"WHERE EXISTS (SELECT 1 FROM r) ON CONFLICT ({cols(keys)}) DO UPDATE SET "
            + ", ".join(f'"{c}" = excluded."{c}"' for c in changing)
        )

    run_columns = _columns(runs, *_FIXED_RUN_COLUMNS) if run_changed else ["version"]
    event_columns = _columns(events, "id")
    sql = (
        "WITH r AS (UPDATE runs SET "
        + ", ".join(f'"{c}" = :{c}' for c in run_columns)
        + " WHERE runs.id = :b_id AND runs.version = :b_expected RETURNING runs.id), "
        f"s AS ({upsert(steps, ('run_id', 'key'), _FIXED_STEP_COLUMNS, 'steps')}), "
        f"a AS ({upsert(attempts, ('run_id', 'step', 'attempt'), (), 'attempts')}), "
        f"e AS (INSERT INTO events ({cols(event_columns)}) SELECT {cols(event_columns)} "
        "FROM jsonb_populate_recordset(NULL::events, CAST(:events AS jsonb)) "
        "WITH ORDINALITY AS x WHERE EXISTS (SELECT 1 FROM r) ORDER BY x.ordinality), "
        "n AS (SELECT pg_notify(x.channel, x.payload) FROM "
        "jsonb_to_recordset(CAST(:notes AS jsonb)) AS x(channel text, payload text) "
        "WHERE EXISTS (SELECT 1 FROM r)) "
        "SELECT (SELECT count(*) FROM r) AS updated, (SELECT count(*) FROM n) AS notified"
    )
    binds = [bindparam(c, type_=runs.c[c].type) for c in run_columns]
    binds += [bindparam(n, type_=String) for n in ("b_id", "steps", "attempts", "events", "notes")]
    binds.append(bindparam("b_expected", type_=Integer))
    return text(sql).bindparams(*binds)


def _fits_tags(dialect: str) -> Any:
    """The step's ``runs_on`` tags are all among the worker's ``tags`` (a JSON object)."""
    if dialect == "postgresql":
        return steps.c.runs_on.op("<@", is_comparison=True)(bindparam("tags", type_=JSONB))
    # SQLite: no required tag is missing from (or different in) the worker's tags.
    return text(
        "(steps.runs_on = '{}' OR NOT EXISTS (SELECT 1 FROM json_each(steps.runs_on) AS need "
        "WHERE NOT EXISTS (SELECT 1 FROM json_each(:tags) AS have "
        "WHERE have.key = need.key AND have.value = need.value)))"
    ).bindparams(bindparam("tags", type_=JSON))


def _routed_claim(hooks: StoreHooks) -> CompoundSelect[Any]:
    """Due steps of one ``queue`` whose tags the worker has: queued steps from the front
    of ``ix_steps_claim`` (highest priority, then due time), retries and timers from
    the due-time index; each part locked (``SKIP LOCKED`` on PostgreSQL) and limited on
    its own, so the statement stays an index range scan however long the queue is. The
    caller merges the parts (and the worker's queues) into the batch."""
    s = steps.c
    now: Any = bindparam("now")
    mine = and_(s.queue == bindparam("queue"), _fits_tags(hooks.name))
    due_or_untimed = or_(s.available_at.is_(None), s.available_at <= now)
    columns = (s.run_id, s.key, s.status, s.attempt, s.available_at, s.priority)
    lim: Any = bindparam("lim")
    queued, retrying = _RUNNABLE
    parts = [
        select(*columns)
        .where(status_is(s.status, queued), mine, due_or_untimed)
        .order_by(s.priority.desc(), s.available_at)
        .limit(lim),
        select(*columns)
        .where(status_is(s.status, retrying), due_or_untimed, mine)
        .order_by(s.available_at)
        .limit(lim),
        select(*columns)
        .where(status_is(s.status, _WAITING), s.available_at <= now, mine)
        .order_by(s.available_at)
        .limit(lim),
    ]
    ctes = [hooks.lock(part).cte(f"due_{i}") for i, part in enumerate(parts)]
    return union_all(*(select(cte) for cte in ctes))


def compile_all(hooks: StoreHooks) -> dict[str, Any]:
    """Every statement, compiled for ``hooks``' dialect, by name."""
    d = hooks.engine.dialect
    s, a, wv, wf = steps.c, attempts.c, workflow_versions.c, workflows.c
    by_run_version = and_(runs.c.id == bindparam("b_id"), runs.c.version == bindparam("b_expected"))
    q: dict[str, Any] = {}
    q["update_run"] = Prepared.compile(
        update(runs).where(by_run_version), d, _columns(runs, *_FIXED_RUN_COLUMNS)
    )
    q["bump_run"] = Prepared.compile(update(runs).where(by_run_version), d, ["version"])
    q["insert_run"] = Prepared.compile(hooks.insert(runs), d, _columns(runs))
    q["insert_steps"] = Prepared.compile(hooks.insert(steps), d, _columns(steps))
    q["upsert_steps"] = Prepared.compile(
        _upsert(hooks, steps, ("run_id", "key"), _FIXED_STEP_COLUMNS), d, _columns(steps)
    )
    q["upsert_attempts"] = Prepared.compile(
        _upsert(hooks, attempts, ("run_id", "step", "attempt")), d, _columns(attempts)
    )
    q["insert_events"] = Prepared.compile(hooks.insert(events), d, _columns(events, "id"))
    q["insert_logs"] = Prepared.compile(hooks.insert(logs), d, _columns(logs, "id"))
    q["claim"] = Prepared.compile(hooks.lock(_claim_query()), d)
    # SQLite (one writer, nothing to skip) takes each status from its own index range in
    # due order and merges: the single OR query would sort every due step.
    q["claim_parts"] = [
        Prepared.compile(_claim_part(status), d) for status in (*_RUNNABLE, _WAITING)
    ]
    q["claim_run"] = Prepared.compile(
        hooks.lock(
            _claim_query()
            .where(s.run_id == bindparam("run"))
            .order_by(None)
            .order_by(s.priority.desc(), nulls_first(s.available_at.asc()))
        ),
        d,
    )
    q["claim_queue"] = Prepared.compile(_routed_claim(hooks), d)
    if hooks.name == "postgresql":
        q["commit_changed"] = Prepared.compile(_pg_commit(True), d)
        q["commit_bump"] = Prepared.compile(_pg_commit(False), d)
    this_step = and_(s.run_id == bindparam("b_run"), s.key == bindparam("b_key"))
    q["start_steps"] = Prepared.compile(
        update(steps)
        .where(this_step)
        .values(
            status=str(StepStatus.RUNNING),
            attempt=bindparam("b_attempt"),
            reason=None,
            available_at=None,
            started_at=func.coalesce(s.started_at, bindparam("b_now")),
        ),
        d,
    )
    # A claimed timer moves to the lease end: if the claimer dies before it commits the
    # resume, the step comes due again instead of waiting forever.
    q["hold_timers"] = Prepared.compile(
        update(steps).where(this_step).values(available_at=bindparam("b_lease")), d
    )
    q["renew"] = Prepared.compile(
        update(attempts)
        .where(a.worker == bindparam("b_worker"), status_is(a.status, _RUNNING_ATTEMPT))
        .values(lease_until=bindparam("b_lease")),
        d,
    )
    q["load_run"] = Prepared.compile(select(runs).where(runs.c.id == bindparam("b_id")), d)
    q["load_steps"] = Prepared.compile(
        select(steps).where(s.run_id == bindparam("b_id")).order_by(s.key), d
    )
    # -- workflow versions
    q["insert_workflow"] = Prepared.compile(
        hooks.insert(workflows).on_conflict_do_nothing(index_elements=["namespace", "name"]),
        d,
        ["namespace", "name", "created_at", "updated_at"],
    )
    # Locked so that two processes saving versions of one workflow number them apart.
    q["workflow_id"] = Prepared.compile(
        select(wf.id)
        .where(wf.namespace == bindparam("b_namespace"), wf.name == bindparam("b_name"))
        .with_for_update(),
        d,
    )
    q["version_by_checksum"] = Prepared.compile(
        select(wv.id)
        .where(wv.workflow_id == bindparam("b_wf"), wv.checksum == bindparam("b_checksum"))
        .limit(1),
        d,
    )
    q["max_version"] = Prepared.compile(
        select(func.coalesce(func.max(wv.version), 0).label("n")).where(
            wv.workflow_id == bindparam("b_wf")
        ),
        d,
    )
    q["insert_version"] = Prepared.compile(
        workflow_versions.insert().returning(wv.id),
        d,
        ["workflow_id", "version", "source", "checksum", "author", "created_at"],
    )
    q["get_version"] = Prepared.compile(
        select(workflow_versions, wf.namespace, wf.name)
        .join_from(workflow_versions, workflows, wv.workflow_id == wf.id)
        .where(wv.id == bindparam("b_id")),
        d,
    )
    # -- timers, leases and attempts
    expired = select(attempts).where(
        status_is(a.status, _RUNNING_ATTEMPT), a.lease_until < bindparam("b_now")
    )
    q["expired"] = Prepared.compile(expired.order_by(a.lease_until), d)
    q["expired_run"] = Prepared.compile(
        expired.where(a.run_id == bindparam("b_run")).order_by(a.lease_until), d
    )
    timed = select(func.min(s.available_at).label("due")).where(
        or_(*(status_is(s.status, status) for status in _TIMED)), s.available_at.is_not(None)
    )
    q["next_due"] = Prepared.compile(timed, d)
    q["next_due_run"] = Prepared.compile(timed.where(s.run_id == bindparam("b_run")), d)
    q["run_attempts"] = Prepared.compile(
        select(attempts)
        .where(a.run_id == bindparam("b_run"))
        .order_by(a.started_at, a.step, a.attempt),
        d,
    )
    q["run_version"] = Prepared.compile(
        select(runs.c.id, runs.c.version).where(runs.c.id == bindparam("b_id")), d
    )
    q["request_cancel"] = Prepared.compile(
        update(runs)
        .where(runs.c.id == bindparam("b_id"), *(runs.c.status != t for t in _TERMINAL_RUN))
        .values(cancel_requested=True, version=runs.c.version + 1),
        d,
    )
    q["run_exists"] = Prepared.compile(select(runs.c.id).where(runs.c.id == bindparam("b_id")), d)
    # -- logs and events
    c = logs.c
    run_logs = select(logs).where(c.run_id == bindparam("b_run"), c.id > bindparam("b_after"))
    q["read_logs"] = Prepared.compile(run_logs.order_by(c.id).limit(bindparam("b_limit")), d)
    q["read_step_logs"] = Prepared.compile(
        run_logs.where(c.step == bindparam("b_step")).order_by(c.id).limit(bindparam("b_limit")),
        d,
    )
    e = events.c
    after = select(events).where(e.id > bindparam("b_after"))
    q["read_events"] = Prepared.compile(after.order_by(e.id).limit(bindparam("b_limit")), d)
    q["read_run_events"] = Prepared.compile(
        after.where(e.run_id == bindparam("b_run")).order_by(e.id).limit(bindparam("b_limit")),
        d,
    )
    return q
