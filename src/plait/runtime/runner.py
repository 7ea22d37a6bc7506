"""The imperative shell around the engine: claims work, runs actions, commits results.

One :class:`Runner` serves ``plait run``, ``plait serve`` and a cluster worker alike;
only the store and the number of processes differ (DESIGN §3 "One code path").

How a step moves, and why it survives ``kill -9`` at any instant:

1. The engine makes a step ``queued``. If this runner has a free slot it claims the step
   *in the same commit* (step ``running``, attempt row with a lease); otherwise the step
   waits in the store for any worker's :meth:`Store.claim`.
2. The action runs as an asyncio task. Its log lines are masked and buffered, and
   written before the attempt's result.
3. The result goes through the engine, and the new step states, the finished attempt,
   the next claims and the outbox events are committed in one transaction — before any
   successor starts. A crash before that commit leaves the attempt ``running`` with an
   expiring lease: it is recorded ``interrupted`` and run again (at-least-once). When
   the database refuses the commit (it is away), the results are kept and committed
   again after a pause; a result that comes too late — its attempt was meanwhile
   recorded ``interrupted`` and run again elsewhere — is refused, by attempt number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from plait.actions.registry import ActionRegistry
from plait.engine.api import Outcome, Transition
from plait.engine.machine import RunMachine
from plait.engine.state import AttemptRecord, AttemptStatus, RunState, StepState, StepStatus
from plait.errors import ConflictError, PlaitError, StoreError, StoreUnavailable
from plait.model.plan import Plan
from plait.ops import tracing
from plait.runtime.applying import Finished, finish, finish_all, start_all
from plait.runtime.backoff import Backoff
from plait.runtime.executor import PreparedAttempt, prepare_attempt, prestart, run_attempt
from plait.runtime.ids import new_run_id, new_worker_id, worker_alive
from plait.runtime.tracked import ATTEMPT_STATUS, TrackedRun, current_records
from plait.security.masking import Masker
from plait.store.base import LogLine, Store

log = logging.getLogger(__name__)

#: log lines kept in memory while the database cannot take them
_HELD_LOG_LINES = 100_000


class RunListener(Protocol):
    """Watches runs as they change (the CLI's live view, the server's event fan-out)."""

    def on_transition(self, run: RunState, machine: RunMachine, transition: Transition) -> None: ...

    def on_log(self, line: LogLine) -> None: ...


class Runner:
    """Drives runs on one store. Use from one asyncio event loop."""

    def __init__(
        self,
        store: Store,
        registry: ActionRegistry,
        *,
        worker_id: str | None = None,
        concurrency: int = 32,
        lease_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
        listener: RunListener | None = None,
        poll_interval: float = 0.5,
        services: Mapping[str, Any] | None = None,
        tracer: tracing.Tracing | None = None,
        queues: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        #: the queues and tags of a worker: it claims only steps routed to them (None:
        #: every step, as ``plait run`` does for its own run)
        self.queues = tuple(dict.fromkeys(queues)) if queues is not None else None
        self.tags = dict(tags or {})
        #: spans of attempts and runs (None: tracing is off, see :mod:`plait.ops.tracing`)
        self.tracer = tracer or tracing.current()
        #: handed to actions (``uses: workflow`` and ``approval`` reach the run service)
        self.services = dict(services or {})
        self.registry = registry
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.listener = listener
        self.poll_interval = poll_interval
        self._runs: dict[str, TrackedRun] = {}
        self._active = 0
        self._wake = asyncio.Event()
        self._logbuf: list[LogLine] = []
        self._background: list[asyncio.Task[None]] = []
        self._finished: list[Finished] = []
        self._flush_scheduled = False
        self._closing = False
        self._record_backoff = Backoff(base=0.2, cap=10.0)

    # -- starting and resuming -----------------------------------------------------------
    async def start(
        self,
        plan: Plan,
        inputs: Mapping[str, Any],
        *,
        version_id: int | None = None,
        secrets: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        trigger: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        on_created: Callable[[str], None] | None = None,
    ) -> str:
        """Create a run (committed before anything runs) and start its first steps.

        ``on_created`` is called once the run is recorded and before any step starts
        (``plait run`` prints the id there, so it is the first line a script reads)."""
        now = self.clock()
        secret_inputs = {
            k: v for k, v in inputs.items() if k in plan.inputs and plan.inputs[k].secret
        }
        public = {k: ("***" if k in secret_inputs else v) for k, v in inputs.items()}
        run = RunState(
            id=run_id or new_run_id(now),
            workflow=plan.name,
            namespace=plan.namespace,
            version_id=version_id,
            inputs=public,
            sealed_inputs=secret_inputs or None,
            trigger=dict(trigger or {"type": "manual"}),
            created_at=now,
        )
        h = self._track(plan, run, [], secrets or {}, workdir)
        self.store.create_run(run, list(h.machine.steps.values()), [])
        if on_created is not None:
            on_created(run.id)
        self._transact(h, lambda m: m.start(self.clock()))
        return run.id

    async def resume(
        self,
        plan: Plan,
        run_id: str,
        *,
        secrets: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        force: bool = False,
    ) -> RunState:
        """Take over a run whose process stopped: attempts it left running are recorded
        ``interrupted`` (they run again without using a retry), then it continues."""
        snap = self.store.load_run(run_id)
        h = self._track(plan, snap.run, snap.steps, secrets or {}, workdir)
        if snap.run.status.terminal:
            return snap.run
        self._recover_attempts(h, force=force)
        if h.machine.run.status == "queued" and h.machine.run.started_at is None:
            self._transact(h, lambda m: m.start(self.clock()))
        for step in h.machine.steps.values():
            if step.status is StepStatus.QUEUED:
                h.backlog.add(step.key)
            elif step.status in (StepStatus.RETRYING, StepStatus.WAITING) and step.available_at:
                h.timers[step.key] = step.available_at
        return h.machine.run

    def _track(
        self,
        plan: Plan,
        run: RunState,
        steps: list[Any],
        secrets: Mapping[str, str],
        workdir: Path | None,
    ) -> TrackedRun:
        masker = Masker(list(secrets.values()))
        for value in (run.sealed_inputs or {}).values():
            masker.add(str(value))
        machine = RunMachine(plan, run, steps, secrets=dict(secrets))
        h = TrackedRun(plan, machine, masker, workdir or Path.cwd(), secrets)
        for step in machine.steps.values():
            h.taint(step.sealed_outputs)
        self._runs[run.id] = h
        return h

    def _recover_attempts(self, h: TrackedRun, *, force: bool) -> None:
        now = self.clock()
        running = [s for s in h.machine.steps.values() if s.status is StepStatus.RUNNING]
        if not running:
            return
        holders = {a.step: a for a in self.store.attempts(h.id) if a.status == "running"}
        for step in running:
            held = holders.get(step.key)
            if held and not force and worker_alive(held.worker):
                raise PlaitError(
                    f"run {h.id} is still being run by worker {held.worker} (step "
                    f"{step.key!r}); stop that process first, or resume with --force"
                )
        for step in running:
            held = holders.get(step.key)
            record = AttemptRecord(
                h.id,
                step.key,
                step.attempt,
                AttemptStatus.INTERRUPTED,
                started_at=step.started_at or now,
                finished_at=now,
                error="the process running this attempt stopped",
                worker=held.worker if held is not None else None,
            )
            self._transact(h, finish(step.key, step.attempt, Outcome("interrupted"), now), [record])

    # -- driving -------------------------------------------------------------------------
    async def wait(self, run_id: str) -> RunState:
        """Drive ``run_id`` until it ends; returns its final state."""
        h = self._runs[run_id]
        self._ensure_background()
        watched = self.clock()
        while not h.machine.finished:
            self._wake.clear()
            if self.clock() - watched >= self.poll_interval:  # not on every step: a query
                watched = self.clock()
                self._watch_runs([h])
            self._claim_due(h)
            if h.finished:  # the claim's commit may have ended it
                break
            deadline = h.machine.run.deadline
            now = self.clock()
            if deadline is not None and now >= deadline and not h.machine.run.timed_out:
                self._transact(h, lambda m: m.deadline_passed(self.clock()))
                continue
            await self._sleep(self._sleep_for(h, now))
        self.flush_logs()
        return h.machine.run

    def committed(self, run_id: str) -> tuple[RunState, dict[str, StepState]]:
        """The run and its steps as last committed by this runner (public values:
        outputs and errors already masked) — what reloading them would give, without
        reading every step row back."""
        machine = self._runs[run_id].machine
        return machine.run, dict(machine.steps)

    async def _sleep(self, seconds: float) -> None:
        """Until woken or ``seconds`` pass. Not ``asyncio.wait_for``: that makes a task
        per call, and this loop goes round once per committed step."""
        if self._wake.is_set():
            return
        timer = asyncio.get_running_loop().call_later(seconds, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()

    def cancel(self, run_id: str, reason: str = "cancelled by user") -> None:
        h = self._runs.get(run_id)
        if h is not None and not h.machine.finished:
            self._transact(h, lambda m: m.cancel(self.clock(), reason))

    async def close(self) -> None:
        """Stop background work. Attempts still running stay ``running`` in the store
        (a later resume records them interrupted), which is what a crash would leave."""
        self._closing = True  # record results still coming in, but start nothing new
        for task in self._background:
            task.cancel()
        for h in self._runs.values():
            for task in list(h.tasks.values()):
                task.cancel()
        pending = self._background + [t for h in self._runs.values() for t in h.tasks.values()]
        await asyncio.gather(*pending, return_exceptions=True)
        self._background.clear()
        if self._finished:  # results that came in just now: record them, as a crash won't
            self._flush_finished()
        self.flush_logs()
        await self.registry.aclose()

    def _watch_runs(self, runs: list[TrackedRun]) -> None:
        """Reload runs another process changed (a cancel, an approval decided from
        another terminal or the API) and stop the attempts the change ends."""
        if not runs:
            return
        stored = self.store.run_versions([h.id for h in runs])
        for h in runs:
            if stored.get(h.id, h.machine.run.version) <= h.machine.run.version:
                continue
            self._reload(h)
            run = h.machine.run
            for key, task in list(h.tasks.items()):
                step = h.machine.steps.get(key)
                gone = step is None or step.status is not StepStatus.RUNNING
                if run.cancel_requested or run.timed_out or gone:
                    h.cancelling.add(key)
                    task.cancel()

    def _sleep_for(self, h: TrackedRun, now: float) -> float:
        wake = now + self.poll_interval
        if h.timers:
            wake = min(wake, min(h.timers.values()))
        if h.machine.run.deadline is not None:
            wake = min(wake, h.machine.run.deadline)
        return max(0.0, wake - now)

    def _claim_due(self, h: TrackedRun) -> None:
        now = self.clock()
        due = any(t <= now for t in h.timers.values())
        free = self.concurrency - self._active
        if not (due or h.backlog) or free <= 0:
            return
        claims = self.store.claim(self.worker_id, now, now + self.lease_seconds, free, run_id=h.id)
        starts = [(c.step, c.attempt) for c in claims if c.kind != "resume"]
        for claim in claims:
            h.backlog.discard(claim.step)
            h.timers.pop(claim.step, None)
        if starts:  # one commit for all of them, not one each
            self._transact(h, start_all(starts, now))
        for claim in claims:
            self._spawn(h, claim.step, claim.attempt, resume=claim.kind == "resume")

    # -- transitions ---------------------------------------------------------------------
    def _transact(
        self,
        h: TrackedRun,
        apply: Callable[[RunMachine], Transition],
        attempts: list[AttemptRecord] | None = None,
    ) -> None:
        """Apply an event, claim what became ready, commit, then start the claimed steps.

        On a version conflict (another process changed the run) the machine is rebuilt
        from the store and the event applied again. Attempt records are kept only for
        the attempt the step is at (fencing): a late result of an attempt that was
        meanwhile recorded ``interrupted`` and run again is refused, not written over.
        When the database fails, the machine has run ahead of the store: it is reloaded
        before its next transition.
        """
        if h.stale:
            self._reload(h)
            h.stale = False
        for _ in range(5):
            records = current_records(h.machine, attempts or [])
            transition = apply(h.machine)
            started = self._claim_ready(h, transition, records)
            if started:
                self._prestart(h, started)
            try:
                self._commit(h, transition, records)
            except BaseException as exc:
                for key in started:  # nothing of theirs may happen: their start is not recorded
                    prepared = h.prepared.pop(key, None)
                    if prepared is not None:
                        prepared.abort()
                if isinstance(exc, ConflictError):
                    self._reload(h)
                    continue
                if isinstance(exc, StoreError):
                    h.stale = True
                raise
            self._after_commit(h, transition, started)
            return
        raise PlaitError(f"run {h.id}: gave up after repeated concurrent updates")

    def _claim_ready(
        self, h: TrackedRun, transition: Transition, records: list[AttemptRecord]
    ) -> list[str]:
        now = self.clock()
        started: list[str] = []
        free = 0 if self._closing else self.concurrency - self._active
        for step in list(transition.steps):
            if step.status is not StepStatus.QUEUED or not self.serves(step):
                continue  # not ours: it waits in the store for a worker that serves it
            if free <= len(started):
                h.backlog.add(step.key)
                continue
            attempt = step.attempt + 1
            transition.merge(h.machine.attempt_started(step.key, attempt, now))
            records.append(
                AttemptRecord(
                    h.id,
                    step.key,
                    attempt,
                    AttemptStatus.RUNNING,
                    started_at=now,
                    worker=self.worker_id,
                    lease_until=now + self.lease_seconds,
                )
            )
            h.backlog.discard(step.key)
            started.append(step.key)
        return started

    def _prestart(self, h: TrackedRun, started: list[str]) -> None:
        """Let the actions that can begin the slow, effect-free part of their attempt
        (a shell step's process start-up) do it while the start is being committed.
        Anything that goes wrong here is left to the attempt itself to report."""
        for key in started:
            step = h.machine.steps[key]
            try:  # most actions have nothing to begin early: ask before preparing
                if not self.registry.get(h.plan.nodes[step.node].uses or "shell").prestarts:
                    continue
            except PlaitError:
                continue  # the attempt reports it
            prepared = self._prepare(h, key, step.attempt)
            if isinstance(prepared, PreparedAttempt) and prestart(prepared):
                h.prepared[key] = prepared

    def serves(self, step: StepState) -> bool:
        """Whether this runner may run ``step``: its queue is one of ours and we have
        every tag it asks for (``runs_on``)."""
        if self.queues is None:
            return True
        return step.queue in self.queues and step.runs_on.items() <= self.tags.items()

    def _commit(self, h: TrackedRun, transition: Transition, records: list[AttemptRecord]) -> None:
        self.flush_logs()
        run = h.machine.run
        if run.outputs:  # rendered by the engine from real values: public only when masked
            run.outputs = h.masker.mask_value(run.outputs)
        if run.error:
            run.error = h.masker.mask(run.error)
        expected = run.version
        run.version = expected + 1
        try:
            self.store.commit(
                run,
                expected,
                transition.steps,
                records,
                transition.events,
                run_changed=transition.run_changed,
            )
        except Exception:
            run.version = expected
            raise

    def _reload(self, h: TrackedRun) -> None:
        snap = self.store.load_run(h.id)
        h.machine = RunMachine(h.plan, snap.run, snap.steps, secrets=dict(h.secrets))
        h.backlog.clear()
        h.timers.clear()
        for step in h.machine.steps.values():
            if step.status is StepStatus.QUEUED and step.key not in h.tasks:
                h.backlog.add(step.key)
            elif step.status in (StepStatus.RETRYING, StepStatus.WAITING) and step.available_at:
                h.timers[step.key] = step.available_at

    def _after_commit(self, h: TrackedRun, transition: Transition, started: list[str]) -> None:
        for key in transition.cancel:
            task = h.tasks.get(key)
            if task is not None:
                h.cancelling.add(key)
                task.cancel()
        # The loops in wait() and Worker.serve() need a turn only when something they
        # act on changed: the run itself (started, ended, a deadline), a new timer,
        # steps left for a free slot, a cancel. Steps that merely started or ended do
        # not: a sequential run saves a turn of the event loop per step.
        wake = transition.run_changed or bool(transition.cancel) or bool(h.backlog)
        for step in transition.steps:
            if step.status in (StepStatus.RETRYING, StepStatus.WAITING) and step.available_at:
                h.timers[step.key] = step.available_at
                wake = True
            else:
                h.timers.pop(step.key, None)
        for key in started:
            self._spawn(h, key, h.machine.steps[key].attempt, resume=False)
        if self.listener is not None:
            self.listener.on_transition(h.machine.run, h.machine, transition)
        if self.tracer is not None:
            self.tracer.transition(h.machine.run, transition.events)
        if wake or h.machine.finished:
            self._wake.set()

    # -- attempts ------------------------------------------------------------------------
    def _spawn(self, h: TrackedRun, key: str, attempt: int, *, resume: bool) -> None:
        self._active += 1
        h.tasks[key] = asyncio.create_task(self._attempt(h, key, attempt, resume))

    async def _attempt(self, h: TrackedRun, key: str, attempt: int, resume: bool) -> None:
        try:
            outcome = await self._execute(h, key, attempt, resume)
        except asyncio.CancelledError:
            if key not in h.cancelling:
                raise  # the runner is shutting down: leave the attempt for a resume
            outcome = Outcome("cancelled", error="cancelled")
        finally:
            h.tasks.pop(key, None)
            self._active -= 1
            prepared = h.prepared.pop(key, None)
            if prepared is not None:  # cancelled before its action took it over
                prepared.abort()
        h.cancelling.discard(key)
        now = self.clock()
        record = AttemptRecord(
            h.id,
            key,
            attempt,
            ATTEMPT_STATUS[outcome.kind],
            started_at=h.machine.steps[key].started_at or now,
            finished_at=now,
            error=outcome.error,
            worker=self.worker_id,
        )
        if outcome.kind == "suspended":
            record.lease_until = None
        self._finished.append(Finished(h, key, attempt, outcome, record, now))
        if self._flush_scheduled:
            return
        if self._active == 0 and len(self._finished) == 1:
            # Nothing else is running here, so no other result can join this one: record
            # it now rather than a turn of the event loop later (a sequential run's case).
            self._flush_finished()
            return
        # Group commit: results that arrive in the same turn of the event loop are
        # recorded in one transaction per run (nothing starts before it commits).
        self._flush_scheduled = True
        asyncio.get_running_loop().call_soon(self._flush_finished)

    def _flush_finished(self) -> None:
        self._flush_scheduled = False
        batch, self._finished = self._finished, []
        by_run: dict[str, list[Finished]] = {}
        for item in batch:
            by_run.setdefault(item.run.id, []).append(item)
        retry: list[Finished] = []
        for items in by_run.values():
            try:
                self._transact(items[0].run, finish_all(items), [i.record for i in items])
            except StoreUnavailable as exc:
                retry.extend(items)
                log.warning("run %s: cannot record results yet: %s", items[0].run.id, exc)
            except PlaitError:
                log.exception(
                    "could not record %d attempt result(s) of run %s", len(items), items[0].run.id
                )
        if retry:
            self._retry_finished(retry)
        else:
            self._record_backoff.succeeded()

    def _retry_finished(self, items: list[Finished]) -> None:
        """Keep results the database could not take and try again after a pause (capped
        backoff); results that arrive meanwhile join them. Their attempts stay
        ``running`` under our renewed lease until then, so no one else runs them."""
        self._finished[:0] = items
        if self._closing:
            return  # stopping: their leases expire and the steps run again elsewhere
        self._flush_scheduled = True
        delay = self._record_backoff.failed()
        asyncio.get_running_loop().call_later(delay, self._flush_finished)

    async def _execute(self, h: TrackedRun, key: str, attempt: int, resume: bool) -> Outcome:
        prepared = h.prepared.pop(key, None) or self._prepare(h, key, attempt)
        if isinstance(prepared, Outcome):
            return prepared
        try:
            outcome = await tracing.traced(
                self.tracer,
                prepared.ctx,
                prepared.node.uses or "shell",
                run_attempt(
                    prepared.action,
                    prepared.node,
                    prepared.scope,
                    prepared.ctx,
                    resume=resume,
                    mask_value=h.masker.mask_value,
                    inp=prepared.input,
                ),
            )
        finally:
            prepared.abort()  # a no-op once the action took its prestarted work over
        h.taint(outcome.sealed_outputs)
        return outcome

    def _prepare(self, h: TrackedRun, key: str, attempt: int) -> PreparedAttempt | Outcome:
        def sink(stream: str, line: str) -> None:
            self._log(h, key, attempt, stream, line)

        return prepare_attempt(h, key, attempt, self.registry, sink, self.services, self.clock())

    # -- logs and background work -------------------------------------------------------
    def _log(self, h: TrackedRun, key: str, attempt: int, stream: str, line: str) -> None:
        entry = LogLine(h.id, key, attempt, stream, h.masker.mask(line), self.clock())
        self._logbuf.append(entry)
        if self.listener is not None:
            self.listener.on_log(entry)
        if len(self._logbuf) >= 500:
            self.flush_logs()

    def flush_logs(self) -> None:
        if self._logbuf:
            lines, self._logbuf = self._logbuf, []
            try:
                self.store.append_logs(lines)
            except StoreUnavailable:  # kept for the next flush (the newest, within a bound)
                self._logbuf[:0] = lines[-_HELD_LOG_LINES:]
                raise

    def _ensure_background(self) -> None:
        if not self._background:
            self._background.append(asyncio.create_task(self._heartbeat()))
            self._background.append(asyncio.create_task(self._flusher()))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                self.store.renew_leases(self.worker_id, self.clock() + self.lease_seconds)
            except PlaitError:
                log.exception("could not renew leases")

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            try:
                self.flush_logs()
            except PlaitError:
                log.exception("could not write log lines")
