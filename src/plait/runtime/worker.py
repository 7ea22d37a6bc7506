"""A worker: serves every run in the store (``plait serve`` and ``plait worker``).

Same rules and the same :class:`Runner` as ``plait run``; the difference is where work
comes from. A worker claims due steps of any run (newly queued, retry backoffs and
waits that came due), records attempts whose worker died (expired lease) as
``interrupted``, and notices runs other processes changed — a cancel from the API —
so it stops the attempts it holds for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from plait.engine.api import Outcome, Transition
from plait.engine.state import AttemptRecord, AttemptStatus, RunState, StepStatus
from plait.errors import NotFound, PlaitError
from plait.model.plan import Plan
from plait.runtime.applying import finish, start_one
from plait.runtime.ids import worker_alive
from plait.runtime.runner import Runner, _Run

log = logging.getLogger(__name__)

PlanSource = Callable[[int], Plan]
SecretsFor = Callable[[Plan], Mapping[str, str]]


class Worker(Runner):
    """A :class:`Runner` that takes work from the whole store until stopped."""

    def __init__(
        self,
        *args: object,
        plans: PlanSource,
        secrets_for: SecretsFor,
        workdir_root: Path,
        poll_interval: float = 0.5,
        on_run_finished: Callable[[RunState], None] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.plans = plans
        self.secrets_for = secrets_for
        self.workdir_root = workdir_root
        self.poll_interval = poll_interval
        self.on_run_finished = on_run_finished
        self._stop = asyncio.Event()
        self._dead_checked = 0.0

    def wake(self) -> None:
        """Look for work now (called in-process when the API queued something)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def serve(self) -> None:
        """Claim and run steps until :meth:`stop`; then leave running attempts to expire
        (a restarted worker, or another one, picks them up as interrupted)."""
        self._ensure_background()
        checked = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self.clock() - checked >= self.poll_interval:  # queries: not every wake
                    checked = self.clock()
                    self._recover_expired()
                    self._watch_all()
                self._claim_any()
            except PlaitError:
                log.exception("worker loop")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    # -- work from the store -------------------------------------------------------------
    def _claim_any(self) -> None:
        free = self.concurrency - self._active
        if free <= 0:
            return
        now = self.clock()
        for claim in self.store.claim(self.worker_id, now, now + self.lease_seconds, free):
            try:
                h = self._load(claim.run_id)
            except (NotFound, PlaitError):
                log.exception("cannot load run %s for step %s", claim.run_id, claim.step)
                continue
            h.backlog.discard(claim.step)
            h.timers.pop(claim.step, None)
            if claim.kind != "resume":
                self._transact(h, start_one(claim.step, claim.attempt, now))
            self._spawn(h, claim.step, claim.attempt, resume=claim.kind == "resume")

    def _load(self, run_id: str) -> _Run:
        h = self._runs.get(run_id)
        if h is not None:
            return h
        snap = self.store.load_run(run_id)
        if snap.run.version_id is None:
            raise PlaitError(f"run {run_id} has no workflow version")
        plan = self.plans(snap.run.version_id)
        workdir = self.workdir_root / run_id
        workdir.mkdir(parents=True, exist_ok=True)
        return self._track(plan, snap.run, snap.steps, self.secrets_for(plan), workdir)

    def _recover_expired(self) -> None:
        """Attempts whose lease ran out — or, every few seconds, whose worker is a dead
        process on this very host (no need to wait out its lease after a restart)."""
        now = self.clock()
        horizon = now
        if now - self._dead_checked >= 5:
            self._dead_checked = now
            horizon = now + self.lease_seconds + 1
        for attempt in self.store.expired_attempts(horizon):
            if (attempt.lease_until or 0) >= now and worker_alive(attempt.worker) is not False:
                continue
            h = self._runs.get(attempt.run_id)
            if attempt.worker == self.worker_id and h and attempt.step in h.tasks:
                continue  # ours and alive: the heartbeat is merely late
            try:
                h = self._load(attempt.run_id)
            except (NotFound, PlaitError):
                continue
            self._reload(h)
            step = h.machine.steps.get(attempt.step)
            if step is None or step.status is not StepStatus.RUNNING:
                continue
            record = AttemptRecord(
                h.id,
                step.key,
                step.attempt,
                AttemptStatus.INTERRUPTED,
                started_at=attempt.started_at,
                finished_at=now,
                error=f"worker {attempt.worker} stopped renewing its lease",
            )
            self._transact(h, finish(step.key, step.attempt, Outcome("interrupted"), now), [record])

    def _watch_all(self) -> None:
        self._watch_runs([h for h in self._runs.values() if h.tasks])

    # -- finished runs -----------------------------------------------------------------
    def _after_commit(self, h: _Run, transition: Transition, started: list[str]) -> None:
        super()._after_commit(h, transition, started)
        if h.machine.finished and not h.tasks and h.id in self._runs:
            del self._runs[h.id]
            shutil.rmtree(h.workdir, ignore_errors=True)
            if self.on_run_finished is not None:
                try:
                    self.on_run_finished(h.machine.run)
                except PlaitError:
                    log.exception("after run %s finished", h.id)
