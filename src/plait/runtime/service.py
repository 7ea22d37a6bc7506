"""Operations on runs for the API, the scheduler and triggers: start, cancel, retry,
decide an approval, and finish a step that waited on something outside it.

Each operation loads the run, applies one event to its :class:`RunMachine` and commits
the transition with the run's version, reloading and applying again if another process
got there first. Workers (in this process or another) then pick the queued steps up
from the store; ``wake`` tells the local ones at once.

A workflow with ``concurrency`` is admitted against its key's active runs (rules in
:mod:`plait.runtime.concurrency`): :meth:`RunService.start` creates it started, held or
skipped in one transaction with counting them, and :meth:`RunService.release` starts
held runs when slots free up (the trigger service calls it on every run ending).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from plait.actions.registry import ActionRegistry
from plait.engine.api import Outcome, Transition
from plait.engine.machine import RunMachine
from plait.engine.rerun import prepare_rerun
from plait.engine.state import AttemptRecord, AttemptStatus, RunState, RunStatus, StepStatus
from plait.errors import ConflictError, NotFound, PlaitError
from plait.model.plan import ConcurrencyPlan, Plan
from plait.ops import tracing
from plait.runtime import concurrency
from plait.runtime.concurrency import KeyRuns, RunRecords, SlotStore
from plait.runtime.ids import new_run_id
from plait.security.masking import Masker
from plait.store.base import RunSnapshot, Store, VersionRecord

log = logging.getLogger(__name__)

#: ``secrets(namespace, names) -> {name: value}`` — where secret values come from.
SecretSource = Callable[[str, Iterable[str]], dict[str, str]]


class DecisionError(PlaitError):
    """An approval decision that cannot be taken (not waiting, not an approver …)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Started:
    run: RunState
    created: bool = True


def _tainted(mask: Callable[[str], str] | None, value: Any) -> bool:
    if mask is None:
        return False
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return mask(text) != text


def _no_secrets(namespace: str, names: Iterable[str]) -> dict[str, str]:
    return {}


class RunService:
    """Run operations over a store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        registry: ActionRegistry,
        *,
        clock: Callable[[], float] = time.time,
        secrets: SecretSource = _no_secrets,
        wake: Callable[[], None] | None = None,
        slots: SlotStore | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.secrets = secrets
        self.wake = wake or (lambda: None)
        self._slots = slots
        self._plans: dict[int, Plan] = {}

    # -- plans ---------------------------------------------------------------------------
    def plan(self, version_id: int) -> Plan:
        """The compiled plan of a stored version (cached: versions never change)."""
        plan = self._plans.get(version_id)
        if plan is None:
            from plait.model import load_workflow

            version = self.store.get_version(version_id)
            name = f"{version.workflow}@v{version.version}"
            plan = load_workflow(version.source, name, self.registry.input_models()).plan
            self._plans[version_id] = plan
        return plan

    def secrets_for(self, plan: Plan) -> dict[str, str]:
        return self.secrets(plan.namespace, sorted(plan.secret_names))

    def machine(self, snap: RunSnapshot) -> RunMachine:
        if snap.run.version_id is None:
            raise PlaitError(f"run {snap.run.id} has no workflow version")
        plan = self.plan(snap.run.version_id)
        return RunMachine(plan, snap.run, snap.steps, secrets=self.secrets_for(plan))

    # -- operations ----------------------------------------------------------------------
    def start(
        self,
        version: VersionRecord,
        inputs: Mapping[str, Any],
        *,
        trigger: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        mask: Callable[[str], str] | None = None,
    ) -> RunState:
        """Validate ``inputs`` (InputError → 422), record the run and queue its first
        steps. Secret inputs are stored sealed and shown as ``***``; so is any input in
        which ``mask`` (the masking of the run that starts this one, for sub-workflows)
        finds a secret, so a secret passed to a child stays a secret there."""
        from plait.model.inputs import validate_inputs

        plan = self.plan(version.id)
        values = validate_inputs(plan, dict(inputs))
        now = self.clock()
        secret = {
            k: v
            for k, v in values.items()
            if (k in plan.inputs and plan.inputs[k].secret) or _tainted(mask, v)
        }
        run = RunState(
            id=run_id or new_run_id(now),
            workflow=plan.name,
            namespace=plan.namespace,
            version_id=version.id,
            inputs={k: ("***" if k in secret else v) for k, v in values.items()},
            sealed_inputs=secret or None,
            trigger=dict(trigger or {"type": "manual"}),
            created_at=now,
            parent_run_id=parent_run_id,
        )
        machine = RunMachine(plan, run, [], secrets=self.secrets_for(plan))
        if plan.concurrency is not None:
            return self._start_limited(plan.concurrency, machine)
        self.store.create_run(run, list(machine.steps.values()), [])
        self._commit(machine, machine.start(self.clock()))
        self.wake()
        return machine.run

    def start_stranded(self, run_id: str) -> RunState | None:
        """Start a run that was recorded but never started: :meth:`start` writes the run,
        then its first transition, so a process that died between the two leaves it
        queued at version 0 (a broker trigger's redelivery is what notices). Returns the
        run once started; None when there is nothing to start — no such run, one already
        started, held or skipped by a concurrency limit — or another process started it
        meanwhile."""
        try:
            snap = self.store.load_run(run_id)
        except NotFound:
            return None
        run = snap.run
        stranded = run.status is RunStatus.QUEUED and run.version == 0
        if not stranded or run.concurrency_key is not None or run.reason:
            return None
        machine = self.machine(snap)
        try:
            self._commit(machine, machine.start(self.clock()))
        except ConflictError:
            return None
        finally:
            self.wake()
        return machine.run

    # -- concurrency ---------------------------------------------------------------------
    @property
    def slots(self) -> SlotStore:
        """Where admission happens (the server store; given by the composition root)."""
        if self._slots is None:
            raise PlaitError("concurrency limits are enforced by the server (plait serve)")
        return self._slots

    def _start_limited(self, policy: ConcurrencyPlan, machine: RunMachine) -> RunState:
        """Create the run started, held or skipped, atomically with counting its key's
        runs; then cancel the runs it supersedes (``cancel_running``)."""
        run = machine.run
        key = concurrency.render_key(policy.key, machine.run_scope(), self.masker(machine))
        run.concurrency_key = key
        now = self.clock()
        decided: list[concurrency.Decision] = []

        def build(seen: KeyRuns) -> RunRecords:
            decided.append(concurrency.decide(policy, key, seen))
            return concurrency.new_run_records(machine, decided[-1], now)

        self.slots.create_limited_run(run.namespace, key, build)
        for other in decided[-1].supersede:
            try:  # the new run exists and runs: a failed cancel must not hide it
                self.cancel(other, concurrency.superseded_reason(run.id))
            except (NotFound, DecisionError):  # gone, or ended in the meantime
                continue
            except PlaitError:
                log.exception("run %s: cannot cancel superseded run %s", run.id, other)
        self.wake()
        return run

    def release(self, namespace: str, key: str) -> list[RunState]:
        """Start the key's oldest held runs while it has free slots. Idempotent and safe
        from several processes at once; returns the runs it started."""
        now = self.clock()

        def admit(snap: RunSnapshot, seen: KeyRuns) -> RunRecords | None:
            plan = self.plan(snap.run.version_id or 0)
            limit = plan.concurrency.limit if plan.concurrency is not None else 1
            if not concurrency.has_room(limit, seen):
                return None
            machine = self.machine(snap)
            transition = machine.start(now)
            return RunRecords(machine.run, transition.steps, transition.events)

        started = self.slots.start_held_runs(namespace, key, admit)
        if started:
            self.wake()
        return started

    def release_all(self) -> int:
        """:meth:`release` every key that has held runs (a sweep that makes up for run
        endings whose release was lost); returns how many runs started."""
        if self._slots is None:  # nothing can be held without the server store
            return 0
        count = 0
        for namespace, key in self._slots.held_keys():
            count += len(self.release(namespace, key))
        return count

    def cancel(self, run_id: str, reason: str = "cancelled by user") -> RunState:
        """Cancel a run: queued and waiting steps end at once; the worker running the
        others sees the flag and stops them (their processes are killed). A run that has
        already ended raises DecisionError (409)."""

        def apply(m: RunMachine) -> Transition:
            if m.run.status.terminal:
                raise DecisionError(f"run {run_id} has already ended ({m.run.status})")
            return m.cancel(self.clock(), reason)

        return self._apply(run_id, apply)

    def retry(self, run_id: str, *, version_id: int | None = None) -> RunState:
        """Run a finished, unsuccessful run again from its failures: succeeded steps keep
        their outputs; everything else runs again (on ``version_id`` if given)."""
        for _ in range(5):
            snap = self.store.load_run(run_id)
            if not snap.run.status.terminal:
                raise DecisionError(f"run {run_id} is still {snap.run.status}")
            if snap.run.status == "succeeded":
                raise DecisionError(f"run {run_id} succeeded: there is nothing to retry")
            if version_id is not None:
                snap.run.version_id = version_id
            plan = self.plan(snap.run.version_id or 0)
            expected = snap.run.version
            run, steps, events = prepare_rerun(plan, snap.run, snap.steps, self.clock())
            machine = RunMachine(plan, run, steps, secrets=self.secrets_for(plan))
            transition = machine.start(self.clock())
            transition.events[:0] = events
            transition.steps[:0] = [s for s in steps if s not in transition.steps]
            try:
                self._write(machine, expected, transition, [])
            except ConflictError:
                continue
            self.wake()
            return machine.run
        raise PlaitError(f"run {run_id}: gave up after repeated concurrent updates")

    def finish_waiting(
        self, run_id: str, step: str, outcome: Outcome, *, expect_uses: str | None = None
    ) -> RunState:
        """End a ``waiting`` step from outside (an approval decision, a sub-workflow that
        finished). Raises DecisionError when the step is not waiting."""

        def apply(m: RunMachine) -> Transition:
            state = m.steps.get(step)
            if state is None:
                raise NotFound(f"run {run_id} has no step {step!r}")
            node = m.plan.nodes[state.node]
            if expect_uses and node.uses != expect_uses:
                raise DecisionError(f"step {step!r} is not a {expect_uses} step", 400)
            if state.status is not StepStatus.WAITING:
                raise DecisionError(f"step {step!r} is {state.status}, not waiting")
            return m.attempt_finished(step, state.attempt, outcome, self.clock())

        def record(m: RunMachine) -> list[AttemptRecord]:
            state = m.steps[step]
            ok = outcome.kind == "succeeded"
            status = AttemptStatus.SUCCEEDED if ok else AttemptStatus.FAILED
            return [
                AttemptRecord(
                    run_id,
                    step,
                    state.attempt,
                    status,
                    started_at=state.started_at or self.clock(),
                    finished_at=self.clock(),
                    error=outcome.error,
                )
            ]

        return self._apply(run_id, apply, record)

    def masker(self, machine: RunMachine) -> Masker:
        values = list(self.secrets_for(machine.plan).values())
        values += [str(v) for v in (machine.run.sealed_inputs or {}).values()]
        return Masker(values)

    # -- plumbing ------------------------------------------------------------------------
    def _apply(
        self,
        run_id: str,
        apply: Callable[[RunMachine], Transition],
        attempts: Callable[[RunMachine], list[AttemptRecord]] | None = None,
    ) -> RunState:
        for _ in range(5):
            machine = self.machine(self.store.load_run(run_id))
            expected = machine.run.version
            transition = apply(machine)
            records = attempts(machine) if attempts else []
            try:
                self._write(machine, expected, transition, records)
            except ConflictError:
                continue
            self.wake()
            return machine.run
        raise PlaitError(f"run {run_id}: gave up after repeated concurrent updates")

    def _commit(self, machine: RunMachine, transition: Transition) -> None:
        self._write(machine, machine.run.version, transition, [])

    def _write(
        self,
        machine: RunMachine,
        expected: int,
        transition: Transition,
        attempts: list[AttemptRecord],
    ) -> None:
        run = machine.run
        masker = self.masker(machine)
        if run.outputs:
            run.outputs = masker.mask_value(run.outputs)
        run.version = expected + 1
        try:
            self.store.commit(run, expected, transition.steps, attempts, transition.events)
        except Exception:
            run.version = expected
            raise
        traced = tracing.current()  # a run ended here (a cancel, a decision): its span
        if traced is not None:
            traced.transition(run, transition.events)
