"""What the alert rules observe in the store: run outcomes, long runs, retried steps,
missed schedule fires and worker heartbeats — in domain words, by indexed queries.

Each query is bounded so that an evaluation every few seconds stays cheap on a store
with years of history: runs are found through ``runs (status, created_at)`` (a run
that ended in the window must have been created at most :data:`MAX_RUN_AGE` before
it; one running longer is caught while it runs), schedule fires through
``schedule_fires (workflow, fire_time)``, and only rows over a threshold come back.

Worker heartbeats come from the worker registry (``workers``, where every worker
renews ``heartbeat_at`` with its leases and says when it stops); when no worker is
registered (workers of an older version), from the attempts: a running attempt's
``lease_until`` is renewed by its worker's heartbeat, so ``lease_until -
LEASE_SECONDS`` is that worker's last sign of life — which tells about workers holding
work, and nothing about idle ones.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select

from plait.store.server_records import StorePart
from plait.store.tables import attempts, runs, schedule_fires, status_is, steps, workers

#: the longest a run may have run and still count for the window it ended in
MAX_RUN_AGE = 86400.0
#: the lease a worker renews by heartbeat (``Runner(lease_seconds=…)``'s default)
LEASE_SECONDS = 30.0
#: how far before a window a missed fire's due time may lie (a long outage)
MAX_MISS_AGE = 7 * 86400.0
ENDED = ("succeeded", "failed", "timed_out")
FAILED = ("failed", "timed_out")
ACTIVE = ("running", "waiting")
ROW_LIMIT = 500


@dataclass(frozen=True, slots=True)
class RunOutcomes:
    """Runs of one workflow that ended in a window: ``failed`` of ``ended``."""

    workflow: str
    namespace: str
    ended: int
    failed: int


@dataclass(frozen=True, slots=True)
class LongRun:
    run_id: str
    workflow: str
    namespace: str
    status: str
    duration: float


@dataclass(frozen=True, slots=True)
class RetriedStep:
    run_id: str
    workflow: str
    namespace: str
    step: str
    retries: int


@dataclass(frozen=True, slots=True)
class MissedFires:
    schedule_id: str
    workflow: str
    count: int
    last_fire_time: float


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A worker's last sign of life; ``source`` is ``registry`` or ``leases``."""

    worker: str
    at: float
    source: str


def _filters(workflow: str | None, namespace: str | None) -> list[Any]:
    found: list[Any] = []
    if workflow is not None:
        found.append(runs.c.workflow == workflow)
    if namespace is not None:
        found.append(runs.c.namespace == namespace)
    return found


class AlertFacts(StorePart):
    """The observations of the alert rules (see the module docstring)."""

    def run_outcomes(
        self, since: float, *, workflow: str | None = None, namespace: str | None = None
    ) -> list[RunOutcomes]:
        """Per workflow, the runs that ended (succeeded, failed, timed out) at or after
        ``since`` and how many of them failed or timed out. Cancelled runs are left
        out: someone stopped them."""
        r = runs.c
        failed = func.sum(case((r.status.in_(FAILED), 1), else_=0))
        query = (
            select(r.workflow, r.namespace, func.count(), failed)
            .where(
                r.status.in_(ENDED),
                r.created_at >= since - MAX_RUN_AGE,
                r.finished_at >= since,
                *_filters(workflow, namespace),
            )
            .group_by(r.workflow, r.namespace)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [RunOutcomes(str(w), str(n), int(c), int(f or 0)) for w, n, c, f in rows]

    def long_runs(
        self,
        now: float,
        longer_than: float,
        since: float,
        *,
        workflow: str | None = None,
        namespace: str | None = None,
    ) -> list[LongRun]:
        """Runs running (or waiting) for more than ``longer_than`` seconds at ``now``,
        and runs that ended at or after ``since`` having taken longer; longest first."""
        r = runs.c
        began = func.coalesce(r.started_at, r.created_at)
        duration = case((r.status.in_(ACTIVE), literal(now) - began), else_=r.finished_at - began)
        running = and_(r.status.in_(ACTIVE), began < now - longer_than)
        ended = and_(
            r.status.in_((*ENDED, "cancelled")),
            r.created_at >= since - MAX_RUN_AGE,
            r.finished_at >= since,
            r.finished_at - began > longer_than,
        )
        query = (
            select(r.id, r.workflow, r.namespace, r.status, duration.label("duration"))
            .where(or_(running, ended), *_filters(workflow, namespace))
            .order_by(duration.desc())
            .limit(ROW_LIMIT)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [LongRun(str(i), str(w), str(n), str(s), float(d)) for i, w, n, s, d in rows]

    def retried_steps(
        self,
        since: float,
        more_than: int,
        *,
        workflow: str | None = None,
        namespace: str | None = None,
    ) -> list[RetriedStep]:
        """Steps retried more than ``more_than`` times, in runs created at or after
        ``since`` or still active; most retried first. Retries are attempts after the
        first, not counting attempts lost to a dead worker (``interruptions``) nor
        those before the run was retried from failure (``attempt_base``); a step
        waiting to retry counts the retry it waits for."""
        s, r = steps.c, runs.c
        retries = (
            s.attempt
            - s.attempt_base
            - s.interruptions
            - 1
            + case((s.status == "retrying", 1), else_=0)
        )
        found: dict[tuple[str, str], RetriedStep] = {}
        for scope in (r.created_at >= since, r.status.in_(ACTIVE)):
            query = (
                select(s.run_id, r.workflow, r.namespace, s.key, retries.label("retries"))
                .select_from(steps.join(runs, runs.c.id == s.run_id))
                .where(scope, retries > more_than, *_filters(workflow, namespace))
                .order_by(retries.desc())
                .limit(ROW_LIMIT)
            )
            with self._read() as conn:
                for run_id, wf, ns, key, count in conn.execute(query).all():
                    found[(str(run_id), str(key))] = RetriedStep(
                        str(run_id), str(wf), str(ns), str(key), int(count)
                    )
        return sorted(found.values(), key=lambda x: (-x.retries, x.run_id, x.step))

    def missed_fires(self, since: float, workflows: Collection[str]) -> list[MissedFires]:
        """Per schedule of ``workflows``: the fires recorded as missed at or after
        ``since`` (the scheduler was down past them and the catch-up policy skipped
        them, or they were beyond ``max_catch_up``)."""
        if not workflows:
            return []
        f = schedule_fires.c
        query = (
            select(f.schedule_id, f.workflow, func.count(), func.max(f.fire_time))
            .where(
                f.workflow.in_(sorted(workflows)),
                f.fire_time >= since - MAX_MISS_AGE,
                f.status == "missed",
                f.recorded_at >= since,
            )
            .group_by(f.schedule_id, f.workflow)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [MissedFires(str(i), str(w), int(c), float(t)) for i, w, c, t in rows]

    def worker_heartbeats(self) -> list[Heartbeat]:
        """Every known worker's last heartbeat (see the module docstring): the worker
        registry's workers that have not stopped, or — when none is registered (workers
        of a version before the registry) — the workers holding running attempts."""
        w = workers.c
        registered = select(w.id, w.heartbeat_at).where(
            w.state != "stopped", w.stopped_at.is_(None)
        )
        with self._read() as conn:
            rows = conn.execute(registered).all()
        if rows:
            return [Heartbeat(str(i), float(at), "registry") for i, at in rows]
        a = attempts.c
        query = (
            select(a.worker, func.max(a.lease_until))
            .where(
                status_is(a.status, "running"),
                a.worker.is_not(None),
                a.lease_until.is_not(None),
            )
            .group_by(a.worker)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [Heartbeat(str(w), float(lease) - LEASE_SECONDS, "leases") for w, lease in rows]


__all__ = [
    "AlertFacts",
    "Heartbeat",
    "LongRun",
    "MissedFires",
    "RetriedStep",
    "RunOutcomes",
]
