"""The rules of a run: state and an event in, changed state and commands out.

:class:`RunMachine` owns the live :class:`RunState` and :class:`StepState` records of one
run and applies events to them — the run starts, a worker claims an attempt, an attempt
ends, the run is cancelled or times out — returning a :class:`Transition` with what
changed, the outbox events and the attempts the runtime must stop. It does no I/O and
never reads a clock, so the runtime can commit each transition before acting on it and
rebuild the machine from the store after a crash (``RunMachine(plan, run, steps)``).

Every event costs time in proportion to the nodes it affects: unfinished-dependency
sets, open-children and per-phase counters, active-step indexes and the ``steps`` part of
the expression scope are kept up to date as statuses change, never recomputed by scans.
Only once-per-run moments (a phase failing or starting, cancel, timeout) walk a phase.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from plait.engine.api import Outcome, Transition
from plait.engine.fanout import ending, items_of
from plait.engine.graph import BUSY, RunGraph, item_key, new_step, waiting_reason
from plait.engine.retry import format_time, honour_retry_after, jitter_seed, retry_delay
from plait.engine.scope import (
    ScopeBuilder,
    collect_outputs,
    implicit_condition,
    stopping,
    turned_away,
)
from plait.engine.state import Event, RunState, RunStatus, StepState, StepStatus
from plait.errors import ExpressionError
from plait.expr import evaluate, render
from plait.model.plan import Phase, Plan, StepPlan

S = StepStatus
_FAILED = frozenset({S.FAILED, S.TIMED_OUT})
#: After this many interruptions the step is probably what kills its process.
MAX_INTERRUPTIONS = 3


class RunMachine:
    """The functional core of one run (DESIGN §3); see the module docstring."""

    def __init__(
        self,
        plan: Plan,
        run: RunState,
        steps: Iterable[StepState] = (),
        *,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.plan = plan
        self.run = run
        self.steps: dict[str, StepState] = {s.key: s for s in steps}
        self._nodes = plan.nodes
        self._now = 0.0
        self._tx = Transition()
        #: steps created or changed by the event being applied, in first-change order
        self._changed: dict[str, StepState] = {}
        self._ended: deque[str] = deque()
        self._g = RunGraph(plan)
        # Steps the store does not have yet (all of them for a new run) are reported with
        # the first transition, so the runtime persists them with it.
        self._unreported: list[StepState] = []
        for node in self._nodes.values():
            if node.key not in self.steps:
                self.steps[node.key] = new_step(node, node.key)
                self._unreported.append(self.steps[node.key])
        self._scope = ScopeBuilder(plan, run, self.steps, secrets or {})
        self._g.rebuild(run, self.steps)

    # ----------------------------------------------------------------- public events

    @property
    def finished(self) -> bool:
        return self.run.status.terminal

    def start(self, now: float) -> Transition:
        """The run begins: consider the main phase's nodes that wait for nothing."""
        self._begin(now)
        if self.run.status is RunStatus.QUEUED:
            self.run.status = RunStatus.RUNNING
            self.run.started_at = now
            self.run.reason = None
            if self.plan.timeout is not None:
                self.run.deadline = now + self.plan.timeout
            self._run_event("run.started")
            self._start_phase("main")
        return self._commit()

    def attempt_started(self, key: str, attempt: int, now: float) -> Transition:
        """A worker claimed ``attempt`` of step ``key``."""
        self._begin(now)
        step = self.steps.get(key)
        if step is not None and self._claimable(step, attempt):
            step.attempt = attempt
            if step.started_at is None:
                step.started_at = now
            step.reason = None
            step.available_at = None
            self._set_status(step, S.RUNNING)
            self._step_event(step)
        return self._commit()

    def attempt_finished(self, key: str, attempt: int, outcome: Outcome, now: float) -> Transition:
        """Attempt ``attempt`` of ``key`` ended; a stale or duplicate report is ignored."""
        self._begin(now)
        step = self.steps.get(key)
        if (
            step is not None
            and step.status in (S.RUNNING, S.WAITING)
            and attempt == step.attempt
            and self._g.is_leaf(step)
        ):
            self._apply_outcome(step, outcome)
        return self._commit()

    def cancel(self, now: float, reason: str = "cancelled") -> Transition:
        """Stop the run: active main/on_failure steps end or are killed; ``finally`` runs."""
        self._begin(now)
        run = self.run
        if run.status.terminal:
            return self._commit()
        if run.status is RunStatus.QUEUED:  # nothing started, so nothing to clean up
            return self._cancel_unstarted(reason)
        if not run.cancel_requested:
            run.cancel_requested = True
            run.reason = reason
            self._tx.run_changed = True
            self._stop_active(("main", "on_failure"), S.CANCELLED, reason)
            for phase in ("main", "on_failure"):
                self._halt(phase, S.CANCELLED, f"cancelled: {reason}", all_items=True)
        else:  # asked again: the runtime may not have killed them yet
            self._stop_active(("main", "on_failure"), S.CANCELLED, reason)
        return self._commit()

    def deadline_passed(self, now: float) -> Transition:
        """The whole-run timeout: stop ``main``; ``on_failure`` and ``finally`` still run."""
        self._begin(now)
        run = self.run
        if run.status.terminal or run.status is RunStatus.QUEUED or run.timed_out:
            return self._commit()
        run.timed_out = True
        run.error = run.error or "the run timed out"
        self._tx.run_changed = True
        if self._g.phase_open["main"]:
            self._stop_active(("main",), S.TIMED_OUT, "the run timed out")
            if "main" not in run.failed_phases:
                run.failed_phases.append("main")
            self._halt("main", S.SKIPPED, "skipped: the run timed out", everything=True)
        return self._commit()

    # ------------------------------------------------------------------- scope

    def scope(self, key: str) -> dict[str, Any]:
        """What an expression of step (or item) ``key`` sees."""
        step = self.steps[key]
        return self._scope.for_step(step, self._nodes[step.node])

    def run_scope(self) -> dict[str, Any]:
        """What the run's ``outputs:`` see: no item, no step env."""
        return self._scope.for_run()

    # ----------------------------------------------------------- transitions

    def _begin(self, now: float) -> None:
        self._now = now
        self._tx = Transition()
        # A fresh run's pending steps are created with its first event.
        self._changed = {s.key: s for s in self._unreported}
        self._unreported = []

    def _commit(self) -> Transition:
        while self._ended:
            self._after_end(self._ended.popleft())
        if not self.run.status.terminal and self.run.status is not RunStatus.QUEUED:
            self._update_run_status()
        self._tx.steps = list(self._changed.values())
        return self._tx

    def _touch(self, step: StepState) -> None:
        self._changed[step.key] = step

    def _step_event(self, step: StepState, **extra: Any) -> None:
        data = {"attempt": step.attempt}
        for name, value in extra.items():
            if value is not None:
                data[name] = value
        event = Event(self.run.id, "step." + step.status, step.key, data, at=self._now)
        self._tx.events.append(event)

    def _run_event(self, type_: str, **data: Any) -> None:
        self._tx.run_changed = True
        data = {k: v for k, v in data.items() if v is not None}
        self._tx.events.append(Event(self.run.id, type_, None, data, at=self._now))

    def _set_status(self, step: StepState, status: StepStatus) -> None:
        """The one place a status changes, so every index stays right."""
        if step.status is not status:
            self._g.moved(step, step.status, status)
            step.status = status
            if step.parent is None:
                self._scope.update(step)
        self._touch(step)

    def _update_run_status(self) -> None:
        """Rule 11: RUNNING while a step is queued, running or retrying, else WAITING."""
        run = self.run
        waiting = not self._g.busy and bool(self._g.waiting)
        status = RunStatus.WAITING if waiting else RunStatus.RUNNING
        reason = run.reason  # a cancelled run keeps saying why it was cancelled
        if not run.cancel_requested:
            reason = self._waiting_reason() if waiting else None
        if status is not run.status:
            run.status, run.reason = status, reason
            self._run_event(f"run.{status}", reason=reason)
        elif reason != run.reason:
            run.reason = reason
            self._tx.run_changed = True

    def _waiting_reason(self) -> str | None:
        # The first in plan order, so the reason is the same after a rebuild.
        first = min(self._g.waiting, key=lambda k: self._g.position(self.steps[k]))
        return self.steps[first].reason

    # ----------------------------------------------------------- step endings

    def _finish(
        self,
        step: StepState,
        status: StepStatus,
        *,
        error: str | None = None,
        reason: str | None = None,
    ) -> None:
        """End a step; what it unblocks is worked out after, in :meth:`_commit`'s loop."""
        if error is not None:
            step.error = error
        step.reason = reason
        step.available_at = None
        step.finished_at = self._now
        self._set_status(step, status)
        self._step_event(step, error=error, reason=reason)
        self._ended.append(step.key)

    def _after_end(self, key: str) -> None:
        step = self.steps[key]
        if step.parent is not None:
            self._item_ended(step.parent)
            return
        node = self._nodes[key]
        if step.status in _FAILED and node.on_error != "continue":
            self._fail_phase(node.phase, step)
        if self._g.open_children[key]:  # a group that never ran takes its children with it
            self._end_unstarted_children(node, step.status)
        for dependent in self._g.dependents[key]:
            self._dep_done(dependent, key)
        if node.parent is not None:
            self._g.open_children[node.parent] -= 1
            if not self._g.open_children[node.parent]:
                self._maybe_end_group(node.parent)
        self._g.phase_open[node.phase] -= 1
        if not self._g.phase_open[node.phase] and node.phase in self._g.started:
            self._phase_done(node.phase)

    def _dep_done(self, key: str, dep: str) -> None:
        waiting_for = self._g.unfinished[key]
        waiting_for.pop(dep, None)
        step = self.steps[key]
        if step.status is not S.PENDING:
            return
        if waiting_for:
            step.reason = waiting_reason(waiting_for)
            self._touch(step)
        else:
            self._maybe_consider(key)

    def _end_unstarted_children(self, node: StepPlan, status: StepStatus) -> None:
        child_status = S.CANCELLED if status is S.CANCELLED else S.SKIPPED
        reason = f"{child_status}: group {node.key!r} did not run"
        for child in node.children:
            if not self.steps[child].status.terminal:
                self._finish(self.steps[child], child_status, reason=reason)

    def _fail_phase(self, phase: Phase, step: StepState) -> None:
        run = self.run
        if phase in run.failed_phases:
            return
        run.failed_phases.append(phase)
        if run.error is None:
            run.error = f"step {step.key!r} {step.status}: {step.error or 'no error message'}"
        self._tx.run_changed = True
        self._halt(phase, S.SKIPPED, "skipped: an earlier step failed")

    def _halt(
        self,
        phase: Phase,
        status: StepStatus,
        reason: str,
        *,
        everything: bool = False,
        all_items: bool = False,
    ) -> None:
        """Failing mode: nothing new starts in ``phase``; what has not started ends now.

        Nodes whose ``if`` checks the status (``failure()``, ``always()`` …) stay pending
        and are still considered, unless ``everything`` (the run's deadline passed). Their
        pending items keep starting after a failure, but not after a cancel
        (``all_items``): what was running when the run was stopped is stopped.
        """
        for node in self._g.phase_nodes[phase]:
            step = self.steps[node.key]
            if step.status is S.PENDING and (everything or not node.if_checks_status):
                self._finish(step, status, reason=reason)
        for parent in list(self._g.item_pending):
            node = self._nodes[parent]
            if node.phase == phase and (everything or all_items or not node.if_checks_status):
                pending = self._g.item_pending.pop(parent)
                for key in pending:
                    self._finish(self.steps[key], status, reason=reason)

    def _stop_active(self, phases: tuple[Phase, ...], status: StepStatus, reason: str) -> None:
        """Running attempts are killed by the runtime; the others end here with ``status``."""
        for key in self._g.in_plan_order(self._g.active, self.steps):
            step = self.steps[key]
            if self._nodes[step.node].phase not in phases:
                continue
            if step.status is S.RUNNING:
                if key not in self._tx.cancel:
                    self._tx.cancel.append(key)
            else:
                error = reason if status is S.TIMED_OUT else None
                self._finish(step, status, error=error, reason=reason)

    # ----------------------------------------------------------- considering nodes

    def _maybe_consider(self, key: str) -> None:
        node = self._nodes[key]
        step = self.steps[key]
        if step.status is not S.PENDING or self._g.unfinished[key]:
            return
        if node.phase not in self._g.started:
            return
        if node.parent is not None and self.steps[node.parent].status is not S.RUNNING:
            return
        self._consider(step, node)

    def _consider(self, step: StepState, node: StepPlan) -> None:
        if not node.if_checks_status and not implicit_condition(self.run, node.phase):
            status, reason = turned_away(self.run, node.phase)
            self._finish(step, status, reason=reason)
            return
        if node.if_ is not None:
            try:
                ok = evaluate(node.if_, self.scope(node.key))
            except ExpressionError as exc:
                self._finish(step, S.FAILED, error=str(exc))
                return
            if not ok:
                self._finish(step, S.SKIPPED, reason=f"skipped: if {node.if_} was false")
                return
        if node.is_group:
            self._start_group(step, node)
        elif node.for_each is not None:
            self._fan_out(step, node)
        else:
            self._queue(step)

    def _queue(self, step: StepState) -> None:
        step.reason = "waiting for a free worker"
        step.available_at = None
        self._set_status(step, S.QUEUED)
        self._step_event(step)

    def _start_group(self, step: StepState, node: StepPlan) -> None:
        step.started_at = self._now
        step.reason = None
        self._set_status(step, S.RUNNING)
        self._step_event(step)
        if not self._g.open_children[node.key]:
            self._maybe_end_group(node.key)
            return
        for child in node.children:
            self._maybe_consider(child)

    def _maybe_end_group(self, key: str) -> None:
        """Rule 7: a running group ends with its last child."""
        step = self.steps[key]
        if step.status is not S.RUNNING:
            return
        node = self._nodes[key]
        children = [(self._nodes[c], self.steps[c]) for c in node.children]
        failed = [s.key for n, s in children if s.status in _FAILED and n.on_error != "continue"]
        if failed:
            self._finish(step, S.FAILED, error=f"step {failed[0]!r} failed")
        elif any(s.status is S.CANCELLED for _, s in children):
            self._finish(step, S.CANCELLED, reason="a step in the group was cancelled")
        elif children and all(s.status is S.SKIPPED for _, s in children):
            self._finish(step, S.SKIPPED, reason="every step in the group was skipped")
        else:
            step.outputs = {}
            self._finish(step, S.SUCCEEDED)

    def _start_phase(self, phase: Phase) -> None:
        self._g.started.add(phase)
        run = self.run
        if phase == "on_failure" and not ("main" in run.failed_phases or run.timed_out):
            for node in self._g.phase_nodes[phase]:
                step = self.steps[node.key]
                if not step.status.terminal:
                    self._finish(step, S.SKIPPED, reason="skipped: the run did not fail")
        if not self._g.phase_open[phase]:
            self._phase_done(phase)
            return
        for key in self._g.top[phase]:
            self._maybe_consider(key)

    def _phase_done(self, phase: Phase) -> None:
        if phase == "main":
            self._start_phase("on_failure")
        elif phase == "on_failure":
            self._start_phase("finally")
        else:
            self._finish_run()

    def _finish_run(self) -> None:
        run = self.run
        if run.cancel_requested:
            status = RunStatus.CANCELLED
        elif run.timed_out:
            status = RunStatus.TIMED_OUT
        elif run.failed_phases:
            status = RunStatus.FAILED
        else:
            status = RunStatus.SUCCEEDED
        try:
            run.outputs = self._scope.mask(dict(render(self.plan.outputs, self.run_scope())))
        except ExpressionError as exc:
            run.outputs = None
            # A run that already failed or stopped keeps its own reason.
            if status is RunStatus.SUCCEEDED:
                status, run.error = RunStatus.FAILED, f"outputs: {exc}"
        run.status = status
        run.finished_at = self._now
        if status is not RunStatus.CANCELLED:
            run.reason = None
        error = None if status is RunStatus.SUCCEEDED else run.error
        self._run_event(f"run.{status}", error=error)

    # ----------------------------------------------------------- for_each items

    def _fan_out(self, step: StepState, node: StepPlan) -> None:
        try:
            value = render(node.for_each, self.scope(node.key))
        except ExpressionError as exc:
            self._finish(step, S.FAILED, error=f"for_each: {exc}")
            return
        value = items_of(value)
        if isinstance(value, str):
            self._finish(step, S.FAILED, error=value)
            return
        step.items = len(value)
        step.started_at = self._now
        if not value:
            step.outputs = {}
            self._finish(step, S.SUCCEEDED, reason="for_each gave an empty list")
            return
        keys = [self._new_item(step, node, i, item) for i, item in enumerate(value)]
        self._g.add_items(node.key, keys)
        step.reason = None
        self._set_status(step, S.RUNNING)
        self._step_event(step, items=len(keys))
        self._start_items(node.key)

    def _new_item(self, parent: StepState, node: StepPlan, index: int, value: Any) -> str:
        key = item_key(parent.key, index)
        item = new_step(node, key, parent=parent.key, item=value, index=index)
        if node.max_parallel:
            item.reason = f"waiting: at most {node.max_parallel} items run at once"
        self.steps[key] = item
        self._touch(item)
        return key

    def _start_items(self, parent: str) -> None:
        for key in self._g.items_to_start(parent, self._nodes[parent].max_parallel):
            self._queue(self.steps[key])

    def _item_ended(self, parent: str) -> None:
        if self._g.item_ended(parent):
            self._end_fan_out(self.steps[parent])
        else:
            self._start_items(parent)

    def _end_fan_out(self, step: StepState) -> None:
        """Rule 6: the parent of the items ends with the last of them."""
        items = [self.steps[item_key(step.key, i)] for i in range(step.items or 0)]
        step.outputs, step.sealed_outputs = collect_outputs(items)
        status, why = ending(items)
        self._finish(step, status, **why)

    # ----------------------------------------------------------- attempts

    def _claimable(self, step: StepState, attempt: int) -> bool:
        """Whether a claim of ``attempt`` is current: never an old or a repeated one."""
        if not self._g.is_leaf(step):
            return False
        if step.status is S.WAITING:  # resuming the suspended attempt, or a new one
            return attempt >= step.attempt
        return step.status in BUSY and attempt > step.attempt

    def _apply_outcome(self, step: StepState, outcome: Outcome) -> None:
        kind = outcome.kind
        if kind == "succeeded":
            step.outputs = dict(outcome.outputs or {})
            step.sealed_outputs = outcome.sealed_outputs
            step.error = None
            self._finish(step, S.SUCCEEDED)
        elif kind == "suspended" and (stop := stopping(self.run, self._nodes[step.node].phase)):
            self._finish(step, stop, reason="suspended while the run was stopping")
        elif kind == "suspended":
            step.available_at = outcome.resume_at
            step.reason = outcome.reason
            self._set_status(step, S.WAITING)
            self._step_event(step, reason=outcome.reason, resume_at=outcome.resume_at)
        elif kind == "interrupted":
            self._interrupted(step)
        elif kind == "cancelled":
            status = S.TIMED_OUT if self.run.timed_out else S.CANCELLED
            error = "the run timed out" if status is S.TIMED_OUT else None
            self._finish(step, status, error=error, reason=outcome.reason or outcome.error)
        else:
            self._failed(step, outcome)

    def _interrupted(self, step: StepState) -> None:
        step.interruptions += 1
        if step.interruptions >= MAX_INTERRUPTIONS:
            times = step.interruptions
            error = f"interrupted {times} times; the step may be what kills the process"
            self._finish(step, S.FAILED, error=error)
            return
        stop = stopping(self.run, self._nodes[step.node].phase)
        if stop is not None:  # do not start again what the run is stopping
            self._finish(step, stop, reason="interrupted while the run was stopping")
            return
        step.reason = "interrupted; starting again"
        step.available_at = None
        self._set_status(step, S.QUEUED)
        self._step_event(step, interrupted=True)

    def _failed(self, step: StepState, outcome: Outcome) -> None:
        node = self._nodes[step.node]
        policy = node.retry
        counted = step.attempt - step.attempt_base - step.interruptions
        status = S.TIMED_OUT if outcome.kind == "timed_out" else S.FAILED
        error = outcome.error or f"the step {status}"
        step.error = error
        if not outcome.retryable or counted > policy.max or stopping(self.run, node.phase):
            self._finish(step, status, error=error)
            return
        seed = jitter_seed(self.run.id, step.key, step.attempt)
        delay = honour_retry_after(retry_delay(policy, counted, seed=seed), outcome.retry_after)
        step.available_at = self._now + delay
        step.reason = f"retry {counted} of {policy.max} at {format_time(step.available_at)}"
        self._set_status(step, S.RETRYING)
        self._step_event(step, error=error, delay=delay)

    def _cancel_unstarted(self, reason: str) -> Transition:
        run = self.run
        run.cancel_requested, run.reason = True, reason
        run.status, run.finished_at = RunStatus.CANCELLED, self._now
        for step in [s for s in self.steps.values() if not s.status.terminal]:
            self._finish(step, S.CANCELLED, reason=f"cancelled: {reason}")
        self._ended.clear()  # no phase started, so there is nothing to propagate
        self._run_event("run.cancelled", reason=reason)
        return self._commit()
