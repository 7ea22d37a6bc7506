"""Test helpers: an in-memory store and a controllable clock, for fast unit tests.

:class:`MemoryStore` keeps the same contract as the SQL store (the contract suite in
``tests/integration/test_store_contract.py`` runs on both); it copies records in and
out so a caller can never change stored state by mutating an object it holds.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TypeVar

from plait.engine.state import (
    AttemptRecord,
    AttemptStatus,
    Event,
    RunState,
    StepState,
    StepStatus,
)
from plait.errors import ConflictError, NotFound
from plait.store.base import (
    Claim,
    LogLine,
    Page,
    RunFilter,
    RunSnapshot,
    StoredEvent,
    VersionRecord,
)
from plait.store.codec import decode_cursor, encode_cursor

T = TypeVar("T")

_RUNNABLE = (StepStatus.QUEUED, StepStatus.RETRYING)
_TIMED = (StepStatus.QUEUED, StepStatus.RETRYING, StepStatus.WAITING)


def _copy(value: T) -> T:
    return copy.deepcopy(value)


class ManualClock:
    """Time that moves only when told: ``now()`` and ``advance(seconds)``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


class MemoryStore:
    """The :class:`~plait.store.base.Store` in dicts, thread-safe, nothing at rest (so
    ``sealed_*`` fields need no sealer)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._workflows: dict[tuple[str, str], list[int]] = {}
        self._versions: dict[int, VersionRecord] = {}
        self._current: dict[tuple[str, str], int] = {}
        self._runs: dict[str, RunState] = {}
        self._steps: dict[str, dict[str, StepState]] = {}
        self._attempts: dict[tuple[str, str, int], AttemptRecord] = {}
        self._logs: list[LogLine] = []
        self._events: list[StoredEvent] = []
        self._seq = 0  # insertion order of steps, for FIFO claims like the SQL store
        self._order: dict[tuple[str, str], int] = {}

    # -- workflow versions -------------------------------------------------------------
    def save_version(
        self, namespace: str, workflow: str, source: str, checksum: str, author: str | None
    ) -> VersionRecord:
        with self._lock:
            ids = self._workflows.setdefault((namespace, workflow), [])
            found = next((i for i in ids if self._versions[i].checksum == checksum), None)
            if found is None:
                found = len(self._versions) + 1
                self._versions[found] = VersionRecord(
                    found, namespace, workflow, len(ids) + 1, source, checksum, author, time.time()
                )
                ids.append(found)
            self._current[(namespace, workflow)] = found
            return self._versions[found]

    def get_version(self, version_id: int) -> VersionRecord:
        with self._lock:
            if version_id not in self._versions:
                raise NotFound(f"workflow version {version_id} not found")
            return self._versions[version_id]

    # -- runs ------------------------------------------------------------------------
    def create_run(
        self, run: RunState, steps: Sequence[StepState], events: Sequence[Event]
    ) -> None:
        with self._lock:
            if run.id in self._runs:
                raise ConflictError(f"run {run.id} already exists")
            self._runs[run.id] = _copy(run)
            self._steps[run.id] = {}
            self._put_steps(run.id, steps)
            self._add_events(events)

    def _put_steps(self, run_id: str, steps: Sequence[StepState]) -> None:
        for step in steps:
            if (run_id, step.key) not in self._order:
                self._seq += 1
                self._order[(run_id, step.key)] = self._seq
            self._steps[run_id][step.key] = _copy(step)

    def _add_events(self, events: Sequence[Event]) -> None:
        for e in events:
            self._events.append(StoredEvent(len(self._events) + 1, _copy(e)))

    def load_run(self, run_id: str) -> RunSnapshot:
        with self._lock:
            run = self._get(run_id)
            steps = sorted(self._steps[run_id].values(), key=lambda s: s.key)
            return RunSnapshot(_copy(run), _copy(steps))

    def _get(self, run_id: str) -> RunState:
        if run_id not in self._runs:
            raise NotFound(f"run {run_id} not found")
        return self._runs[run_id]

    def commit(
        self,
        run: RunState,
        expected_version: int,
        steps: Sequence[StepState] = (),
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[Event] = (),
        run_changed: bool = True,
    ) -> None:
        with self._lock:
            stored = self._get(run.id)
            if stored.version != expected_version:
                raise ConflictError(
                    f"run {run.id} is at version {stored.version}, not {expected_version}"
                )
            # Identity fields are fixed at create_run, as in the SQL store.
            fixed = {f: getattr(stored, f) for f in _FIXED_RUN_FIELDS}
            source = run if run_changed else stored
            new = dataclasses.replace(_copy(source), version=expected_version + 1, **fixed)
            self._runs[run.id] = new
            self._put_steps(run.id, steps)
            for a in attempts:
                self._attempts[(a.run_id, a.step, a.attempt)] = _copy(a)
            self._add_events(events)

    def list_runs(self, filter: RunFilter, cursor: str | None, limit: int) -> Page:
        with self._lock:
            runs = [r for r in self._runs.values() if _matches(r, filter)]
        runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        if cursor:
            after = decode_cursor(cursor)
            runs = [r for r in runs if (r.created_at, r.id) < after]
        items = _copy(runs[:limit])
        more = len(runs) > limit and items
        next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more else None
        return Page(items=list(items), next_cursor=next_cursor)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        with self._lock:
            found = [a for a in self._attempts.values() if a.run_id == run_id]
        return _copy(sorted(found, key=lambda a: (a.started_at, a.step, a.attempt)))

    def run_versions(self, run_ids: Sequence[str]) -> dict[str, int]:
        with self._lock:
            return {i: self._runs[i].version for i in run_ids if i in self._runs}

    def request_cancel(self, run_id: str) -> bool:
        with self._lock:
            run = self._get(run_id)
            if run.status.terminal:
                return False
            run.cancel_requested = True
            run.version += 1  # as the SQL store: a holder of the run must reload it
            return True

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
        with self._lock:
            due = self._due(now, run_id)
            if run_id is None and queues is not None:
                have = (tags or {}).items()
                due = [(r, s) for r, s in due if s.queue in queues and s.runs_on.items() <= have]
            order = self._claim_order if run_id is None and queues is None else self._by_priority
            due = sorted(due, key=order)[:limit]
            return [self._take(r, s, worker, now, lease_until) for r, s in due]

    def _by_priority(self, item: tuple[str, StepState]) -> tuple[int, bool, float, int]:
        return (-item[1].priority, *self._claim_order(item))

    def _due(self, now: float, run_id: str | None) -> list[tuple[str, StepState]]:
        found = []
        for rid, steps in self._steps.items():
            if run_id is not None and rid != run_id:
                continue
            for s in steps.values():
                at = s.available_at
                runnable = s.status in _RUNNABLE and (at is None or at <= now)
                if runnable or (s.status == StepStatus.WAITING and at is not None and at <= now):
                    found.append((rid, s))
        return found

    def _claim_order(self, item: tuple[str, StepState]) -> tuple[bool, float, int]:
        at = item[1].available_at
        return (at is not None, at or 0.0, self._order[(item[0], item[1].key)])

    def _take(
        self, run_id: str, step: StepState, worker: str, now: float, lease_until: float
    ) -> Claim:
        if step.status == StepStatus.WAITING:
            step.available_at = lease_until  # due again if the claimer dies
            return Claim(run_id, step.key, step.attempt, "resume")
        step.attempt += 1
        step.status = StepStatus.RUNNING
        step.reason = None
        step.available_at = None
        step.started_at = step.started_at if step.started_at is not None else now
        self._attempts[(run_id, step.key, step.attempt)] = AttemptRecord(
            run_id,
            step.key,
            step.attempt,
            AttemptStatus.RUNNING,
            now,
            None,
            None,
            worker,
            lease_until,
        )
        return Claim(run_id, step.key, step.attempt, "execute")

    def renew_leases(self, worker: str, lease_until: float) -> int:
        with self._lock:
            held = [
                a
                for a in self._attempts.values()
                if a.worker == worker and a.status == AttemptStatus.RUNNING
            ]
            for a in held:
                a.lease_until = lease_until
            return len(held)

    def expired_attempts(self, now: float, run_id: str | None = None) -> list[AttemptRecord]:
        with self._lock:
            found = [
                a
                for a in self._attempts.values()
                if a.status == AttemptStatus.RUNNING
                and a.lease_until is not None
                and a.lease_until < now
                and (run_id is None or a.run_id == run_id)
            ]
        return _copy(sorted(found, key=lambda a: a.lease_until or 0.0))

    def next_due(self, run_id: str | None = None) -> float | None:
        with self._lock:
            times = [
                s.available_at
                for rid, steps in self._steps.items()
                if run_id is None or rid == run_id
                for s in steps.values()
                if s.status in _TIMED and s.available_at is not None
            ]
        return min(times, default=None)

    # -- logs and events ---------------------------------------------------------------
    def append_logs(self, lines: Sequence[LogLine]) -> None:
        with self._lock:
            for line in lines:
                self._logs.append(dataclasses.replace(line, id=len(self._logs) + 1))

    def read_logs(
        self, run_id: str, after_id: int = 0, limit: int = 1000, step: str | None = None
    ) -> list[LogLine]:
        with self._lock:
            found = (
                line
                for line in self._logs[after_id:]
                if line.run_id == run_id and (step is None or line.step == step)
            )
            return [line for _, line in zip(range(limit), found, strict=False)]

    def read_events(
        self, after_id: int = 0, limit: int = 1000, run_id: str | None = None
    ) -> list[StoredEvent]:
        with self._lock:
            found = (
                e for e in self._events[after_id:] if run_id is None or e.event.run_id == run_id
            )
            return _copy([e for _, e in zip(range(limit), found, strict=False)])

    def close(self) -> None:
        pass


_FIXED_RUN_FIELDS = ("workflow", "namespace", "created_at", "parent_run_id")


def _matches(run: RunState, f: RunFilter) -> bool:
    return (
        (f.workflow is None or run.workflow == f.workflow)
        and (f.namespace is None or run.namespace == f.namespace)
        and (not f.status or str(run.status) in {str(s) for s in f.status})
    )


__all__ = ["ManualClock", "MemoryStore"]
