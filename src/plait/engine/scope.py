"""The names an expression sees (DESIGN §1 "Expressions"), and the run conditions behind
``success()``: whether a phase may still start steps, and how a stopped step ends.

:class:`ScopeBuilder` keeps the ``steps`` part up to date as steps change (one entry per
plan node, replaced — never mutated — on each change), so building a scope costs a
handful of dict operations however large the run is. The status functions read the run
when called, so a scope built earlier still answers for the run as it is now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from plait.engine.state import RunState, StepState, StepStatus
from plait.model.plan import PHASES, Phase, Plan, StepPlan
from plait.security.masking import Masker


def implicit_condition(run: RunState, phase: Phase) -> bool:
    """``success()`` of a phase: the condition every ``if`` without a status function adds."""
    if phase in run.failed_phases:
        return False
    if phase == "main":
        return not (run.cancel_requested or run.timed_out)
    # A cancel ends the pending on_failure nodes too, so success() there says the same.
    return phase != "on_failure" or not run.cancel_requested


def turned_away(run: RunState, phase: Phase) -> tuple[StepStatus, str]:
    """Status and reason for a node whose phase's implicit condition is false."""
    if run.cancel_requested and phase != "finally":
        return StepStatus.CANCELLED, f"cancelled: {run.reason or 'the run was cancelled'}"
    if run.timed_out and phase == "main":
        return StepStatus.SKIPPED, "skipped: the run timed out"
    return StepStatus.SKIPPED, "skipped: an earlier step failed"


def stopping(run: RunState, phase: Phase) -> StepStatus | None:
    """How a step of ``phase`` ends when the run is stopping it (no retry, no restart)."""
    if run.timed_out and phase == "main":
        return StepStatus.TIMED_OUT
    if run.cancel_requested and phase != "finally":
        return StepStatus.CANCELLED
    return None


def any_failure(run: RunState) -> bool:
    """``failure()``: some phase failed, or the run's deadline passed."""
    return bool(run.failed_phases) or run.timed_out


def merged(public: Mapping[str, Any] | None, sealed: Mapping[str, Any] | None) -> dict[str, Any]:
    """Public values overlaid with the real (sealed) ones: what expressions compute with."""
    if not sealed:
        return dict(public or {})
    return {**(public or {}), **sealed}


def collect_outputs(
    items: Sequence[StepState],
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A ``for_each`` step's outputs: ``{name: [each item's value or None]}``, and the
    same over the real values when any item has sealed ones."""
    names = dict.fromkeys(n for i in items for n in (i.outputs or {}))
    public = {n: [(i.outputs or {}).get(n) for i in items] for n in names}
    if not any(i.sealed_outputs for i in items):
        return public, None
    real = [merged(i.outputs, i.sealed_outputs) for i in items]
    return public, {n: [r.get(n) for r in real] for n in names}


def step_entry(step: StepState) -> dict[str, Any]:
    """``steps.<id>`` for one plan node."""
    return {"status": str(step.status), "outputs": merged(step.outputs, step.sealed_outputs)}


def run_entry(run: RunState) -> dict[str, Any]:
    """``run``: what an expression may know about the run itself."""
    return {
        "id": run.id,
        "workflow": run.workflow,
        "namespace": run.namespace,
        "attempt": run.attempt,
        "trigger": run.trigger.get("type", "manual"),
    }


class ScopeBuilder:
    """Builds the scope of a step, an item or the run's outputs in O(1)."""

    def __init__(
        self,
        plan: Plan,
        run: RunState,
        steps: Mapping[str, StepState],
        secrets: Mapping[str, str],
    ) -> None:
        self._plan = plan
        self._run = run
        self._secrets = dict(secrets)
        self._inputs = merged(run.inputs, run.sealed_inputs)
        self._run_entry = run_entry(run)
        #: ``steps``: shared by every scope built, brought up to date when one is built
        self.steps: dict[str, dict[str, Any]] = {k: step_entry(steps[k]) for k in plan.nodes}
        # Most changes are never looked at (no expression runs between a step's queued,
        # running and succeeded), so entries are rebuilt lazily, once per scope built.
        self._stale: dict[str, StepState] = {}
        self._functions = {p: self._status_functions(p) for p in PHASES}
        self._run_functions = {
            **self._functions["main"],
            "success": lambda: not (run.failed_phases or run.cancel_requested or run.timed_out),
        }

    def mask(self, value: Any) -> Any:
        """``value`` with every secret and secret input replaced by ``***``.

        Values rendered with the real scope (the run's outputs) go to the store and the
        API, which must never see a secret (DESIGN §1 "Secrets"); :class:`RunState` has
        no sealed field for them, so only the masked form is kept.
        """
        sealed_inputs = self._run.sealed_inputs or {}
        return Masker([*self._secrets.values(), *sealed_inputs.values()]).mask_value(value)

    def update(self, step: StepState) -> None:
        """``step`` changed; its entry is rebuilt when a scope is next asked for."""
        self._stale[step.key] = step

    def _refresh(self) -> None:
        for key, step in self._stale.items():
            self.steps[key] = step_entry(step)
        self._stale.clear()

    def for_step(self, step: StepState, node: StepPlan) -> dict[str, Any]:
        scope = self._base(self._functions[node.phase])
        if node.env:
            scope["env"] = {**self._plan.env, **node.env}
        if step.parent is not None:
            scope["item"] = step.item
            scope["index"] = step.index
        return scope

    def for_run(self) -> dict[str, Any]:
        return self._base(self._run_functions)

    def _base(self, functions: Mapping[str, Callable[[], bool]]) -> dict[str, Any]:
        if self._stale:
            self._refresh()
        run = self._run
        return {
            "inputs": self._inputs,
            "env": self._plan.env,
            "steps": self.steps,
            "run": self._run_entry,
            "trigger": run.trigger.get("payload", run.trigger),
            "secrets": self._secrets,
            **functions,
        }

    def _status_functions(self, phase: Phase) -> dict[str, Callable[[], bool]]:
        run = self._run
        return {
            "success": lambda: implicit_condition(run, phase),
            "failure": lambda: any_failure(run),
            "always": lambda: True,
            "cancelled": lambda: run.cancel_requested,
        }
