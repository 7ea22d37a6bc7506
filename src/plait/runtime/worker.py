"""A worker: serves the runs in the store (``plait serve`` and ``plait worker``).

Same rules and the same :class:`Runner` as ``plait run``; the difference is where work
comes from. A worker claims due steps of any run (newly queued, retry backoffs and
waits that came due) routed to it — of its queues, needing only tags it has —, records
attempts whose worker died (expired lease) as ``interrupted``, and notices runs other
processes changed — a cancel from the API — so it stops the attempts it holds for them.

It registers in the worker registry, beats with its lease renewal, and stops
gracefully (:meth:`Worker.close`): it takes nothing new, lets running attempts finish
for up to ``drain_timeout`` seconds, then hands back what is left — those attempts are
recorded ``interrupted`` and their steps queued again at once, for any other worker,
instead of waiting for the lease to run out.

It survives the database going away (a restart, cut connections): its loop backs off
(capped exponential, up to 30 s) and carries on, renewing its leases first when the
database is back; results it could not record are kept and recorded then
(:meth:`Runner._flush_finished`); an attempt it claimed but could not start is found by
its next sweep and recorded ``interrupted``, so it runs again instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from plait.engine.api import Outcome, Transition
from plait.engine.state import AttemptRecord, AttemptStatus, RunState, StepStatus
from plait.errors import NotFound, PlaitError, StoreUnavailable
from plait.model.plan import Plan
from plait.runtime.applying import finish, start_one
from plait.runtime.backoff import Backoff
from plait.runtime.ids import worker_alive
from plait.runtime.runner import Runner
from plait.runtime.tracked import TrackedRun

log = logging.getLogger(__name__)

PlanSource = Callable[[int], Plan]
SecretsFor = Callable[[Plan], Mapping[str, str]]


class WorkerRegistry(Protocol):
    """Where a worker says it exists (:class:`plait.store.server_workers.WorkerStore`)."""

    def register_worker(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        queues: Sequence[str],
        tags: Mapping[str, str],
        concurrency: int,
        version: str,
        now: float | None = None,
    ) -> None: ...

    def worker_beat(self, worker_id: str, now: float, running: int, state: str) -> bool: ...


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
        queues: Sequence[str] = ("default",),
        tags: Mapping[str, str] | None = None,
        registry_store: WorkerRegistry | None = None,
        drain_timeout: float = 30.0,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, queues=queues, tags=tags, **kwargs)  # type: ignore[arg-type]
        self.plans = plans
        self.secrets_for = secrets_for
        self.workdir_root = workdir_root
        self.poll_interval = poll_interval
        self.on_run_finished = on_run_finished
        self.registry_store = registry_store
        self.drain_timeout = drain_timeout
        #: what the registry says: running, then draining, then stopped
        self.state = "running"
        self._stop = asyncio.Event()
        self._dead_checked = 0.0
        #: whether the store may hold work for us that the last claim did not take (a
        #: wake-up came, the claim was full, a commit queued more than we could take);
        #: otherwise a wake-up from our own commit claims nothing until the next poll
        self._maybe_more = True
        self._resuming: set[tuple[str, str]] = set()

    def wake(self) -> None:
        """Look for work now (called when steps were queued: in-process by the API, or
        by the listener on another process's ``plait_ready``)."""
        self._maybe_more = True
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def serve(self) -> None:
        """Claim and run steps until :meth:`stop`; :meth:`close` then drains."""
        self._register()
        self._ensure_background()
        checked = 0.0
        backoff = Backoff(base=self.poll_interval, cap=30.0)
        while not self._stop.is_set():
            self._wake.clear()
            pause = self.poll_interval
            try:
                if backoff.failures:  # back from an outage: renew our leases first
                    self.store.renew_leases(self.worker_id, self.clock() + self.lease_seconds)
                poll = self.clock() - checked >= self.poll_interval  # queries: not every wake
                if poll:
                    checked = self.clock()
                    self._recover_expired()
                    self._watch_all()
                if poll or self._maybe_more:  # not after each of our own commits
                    self._claim_any()
            except StoreUnavailable as exc:  # the database is away: back off, carry on
                pause = backoff.failed()
                log.warning("worker %s: %s; again in %.1f s", self.worker_id, exc, pause)
            except PlaitError:
                log.exception("worker loop")
            else:
                if backoff.succeeded():
                    log.warning("worker %s: the database is back", self.worker_id)
            await self._sleep(pause)  # until woken: not wait_for, a task per wake-up

    # -- work from the store -------------------------------------------------------------
    def _claim_any(self) -> None:
        free = self.concurrency - self._active
        if free <= 0:
            return  # looked at again when a slot frees (every result commit wakes us)
        now = self.clock()
        lease = now + self.lease_seconds
        self._maybe_more = False
        claims = self.store.claim(
            self.worker_id, now, lease, free, queues=self.queues, tags=self.tags
        )
        if len(claims) >= free:
            self._maybe_more = True  # a full batch: there may be more
        for claim in claims:
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

    def _load(self, run_id: str) -> TrackedRun:
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
        process on this very host (no need to wait out its lease after a restart), or
        this worker when it holds no task for them (a claim whose start could not be
        committed, a result the database refused: our heartbeat would renew their lease
        for ever)."""
        now = self.clock()
        horizon = now
        if now - self._dead_checked >= 5:
            self._dead_checked = now
            horizon = now + self.lease_seconds + 1
        for attempt in self.store.expired_attempts(horizon):
            mine = attempt.worker == self.worker_id
            if mine and self._holds(attempt.run_id, attempt.step):
                continue  # ours and alive: the heartbeat is merely late
            expired = (attempt.lease_until or 0) < now
            if not (expired or mine) and worker_alive(attempt.worker) is not False:
                continue
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
                worker=attempt.worker,  # the record says who lost it
            )
            self._transact(h, finish(step.key, step.attempt, Outcome("interrupted"), now), [record])

    def _holds(self, run_id: str, step: str) -> bool:
        """Whether this worker runs the step, or has its result waiting to be recorded."""
        h = self._runs.get(run_id)
        if h is None:
            return False
        return step in h.tasks or any(f.run is h and f.key == step for f in self._finished)

    def _watch_all(self) -> None:
        self._watch_runs([h for h in self._runs.values() if h.tasks])

    # -- finished runs -----------------------------------------------------------------
    def _after_commit(self, h: TrackedRun, transition: Transition, started: list[str]) -> None:
        super()._after_commit(h, transition, started)
        if h.backlog:  # steps it queued that we had no slot for: claim them when we do
            self._maybe_more = True
        if self._maybe_more:  # work may wait in the store: claim it now a slot is free
            self._wake.set()
        if h.machine.finished and not h.tasks and h.id in self._runs:
            del self._runs[h.id]
            shutil.rmtree(h.workdir, ignore_errors=True)
            if self.on_run_finished is not None:
                try:
                    self.on_run_finished(h.machine.run)
                except PlaitError:
                    log.exception("after run %s finished", h.id)

    # -- the registry and graceful shutdown -----------------------------------------------
    def _register(self) -> None:
        if self.registry_store is None:
            return
        from plait import __version__

        try:
            self.registry_store.register_worker(
                self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues or (),
                tags=self.tags,
                concurrency=self.concurrency,
                version=__version__,
                now=self.clock(),
            )
        except PlaitError as exc:  # registered by a later beat, once the store answers
            log.warning("could not register worker %s: %s", self.worker_id, exc)

    def _beat(self) -> None:
        """Tell the registry we live (and how busy we are); register again if our row
        was removed meanwhile."""
        if self.registry_store is None:
            return
        try:
            found = self.registry_store.worker_beat(
                self.worker_id, self.clock(), self._active, self.state
            )
        except PlaitError as exc:  # the database is away: the next beat tries again
            log.warning("could not record the heartbeat of worker %s: %s", self.worker_id, exc)
            return
        if not found and self.state == "running":
            self._register()

    def _ensure_background(self) -> None:
        fresh = not self._background
        super()._ensure_background()  # the lease renewal among them
        if fresh and self.registry_store is not None:
            self._background.append(asyncio.create_task(self._registry_beats()))

    async def _registry_beats(self) -> None:
        """Beat as often as the leases are renewed: a worker shown alive holds its leases."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            self._beat()

    def _spawn(self, h: TrackedRun, key: str, attempt: int, *, resume: bool) -> None:
        super()._spawn(h, key, attempt, resume=resume)
        if resume:
            mark = (h.id, key)
            self._resuming.add(mark)
            h.tasks[key].add_done_callback(lambda _: self._resuming.discard(mark))

    async def close(self) -> None:
        """Drain (see the module docstring), stop, and say so in the registry."""
        self._stop.set()
        self._closing = True  # results are still recorded; nothing new starts
        self.state = "draining"
        self._beat()
        try:
            await self._drain()
        finally:
            await super().close()
            self.state = "stopped"
            self._beat()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        if self._active:
            log.info("worker %s: waiting for %d running step(s)", self.worker_id, self._active)
        while self._active and loop.time() < deadline:
            await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
            try:
                self._watch_all()  # a cancel from the API still stops what runs here
            except PlaitError:
                log.exception("worker loop")
        await asyncio.sleep(0)  # let the results that just came in be recorded
        if self._active:
            await self._hand_back()

    async def _hand_back(self) -> None:
        """Stop the attempts still running and record them ``interrupted``: their steps
        are queued again at once, for any worker. A resumed timer (a sleep coming due,
        an approval's timeout) is only left: its claim ends with our lease."""
        held = [
            (h, key, h.machine.steps[key].attempt, task, (h.id, key) in self._resuming)
            for h in list(self._runs.values())
            for key, task in list(h.tasks.items())
        ]
        log.warning("worker %s: handing back %d step(s)", self.worker_id, len(held))
        for *_, task, _ in held:
            task.cancel()  # not marked as cancelling: no result is recorded for them
        await asyncio.gather(*(task for *_, task, _ in held), return_exceptions=True)
        now = self.clock()
        for h, key, attempt, _, resuming in held:
            if resuming or key in h.cancelling:  # a cancelled one records its own end
                continue
            step = h.machine.steps[key]
            record = AttemptRecord(
                h.id,
                key,
                attempt,
                AttemptStatus.INTERRUPTED,
                started_at=step.started_at or now,
                finished_at=now,
                error=f"handed back by worker {self.worker_id}: it was stopping",
                worker=self.worker_id,
            )
            try:
                self._transact(h, finish(key, attempt, Outcome("interrupted"), now), [record])
            except PlaitError:  # its lease expires instead: another worker takes it then
                log.exception("could not hand back step %s of run %s", key, h.id)
