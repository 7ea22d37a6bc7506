"""Retrying a finished run from its failures (``POST /runs/{id}/retry``).

Pure: the run's records in, the records of the run to continue out. Steps that
succeeded keep their status and outputs; every other node goes back to ``pending`` so
the engine considers it again. Attempt numbers keep growing (the attempt history is
never overwritten) while the retry budget starts afresh (``attempt_base``).
"""

from __future__ import annotations

from plait.engine.state import Event, RunState, RunStatus, StepState, StepStatus
from plait.model.plan import Plan


def _keeps(plan: Plan, step: StepState, by_key: dict[str, StepState]) -> bool:
    """A node keeps its result when it succeeded and, for a group, so did everything in
    it (a group with a failed child must run that child again)."""
    if step.status is not StepStatus.SUCCEEDED:
        return False
    node = plan.nodes.get(step.node)
    if node is None or step.parent is not None:
        return True
    return all(_keeps(plan, by_key[c], by_key) for c in node.children if c in by_key)


def prepare_rerun(
    plan: Plan, run: RunState, steps: list[StepState], now: float
) -> tuple[RunState, list[StepState], list[Event]]:
    """Reset ``run`` and ``steps`` for another attempt of the run (mutates and returns
    them, without the items of fan-outs that must run again)."""
    by_key = {s.key: s for s in steps}
    drop = {
        s.key for s in steps if s.parent is not None and not _keeps(plan, by_key[s.parent], by_key)
    }
    kept: list[StepState] = []
    for step in steps:
        if step.key in drop:
            continue
        if not _keeps(plan, step, by_key):
            _reset(step)
        kept.append(step)
    run.attempt += 1
    run.status = RunStatus.QUEUED
    run.failed_phases = []
    run.cancel_requested = False
    run.timed_out = False
    run.outputs = None
    run.error = None
    run.reason = f"retried from failure (attempt {run.attempt})"
    run.finished_at = None
    run.deadline = None
    event = Event(run.id, "run.retried", None, {"attempt": run.attempt}, now)
    return run, kept, [event]


def _reset(step: StepState) -> None:
    step.status = StepStatus.PENDING
    step.attempt_base = step.attempt
    step.interruptions = 0
    step.items = None
    step.outputs = None
    step.sealed_outputs = None
    step.error = None
    step.reason = None
    step.available_at = None
    step.started_at = None
    step.finished_at = None
