"""The indexes the run machine keeps so each event costs O(nodes affected).

:class:`RunGraph` holds static facts about a plan (phases, top-level nodes, dependents)
and counters derived from the step statuses — unfinished dependencies per node, open
children per group, open nodes per phase, active steps, items per ``for_each`` step.
Everything here can be recomputed from the statuses alone, which is what makes a run
loaded from the store after a crash continue exactly as if it had never stopped.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from plait.engine.state import STEP_ACTIVE, RunState, RunStatus, StepState, StepStatus
from plait.model.plan import PHASES, Phase, Plan, StepPlan

S = StepStatus
BUSY = frozenset({S.QUEUED, S.RUNNING, S.RETRYING})


def item_key(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


def waiting_reason(waiting_for: Mapping[str, None]) -> str:
    """``waiting for a, b`` — at most three names, so a wide fan-in stays O(1)."""
    names = list(itertools.islice(waiting_for, 3))
    more = len(waiting_for) - len(names)
    return "waiting for " + ", ".join(names) + (f" and {more} more" if more > 0 else "")


class RunGraph:
    """Plan structure and live counters; the machine updates them on every change."""

    def __init__(self, plan: Plan) -> None:
        self.nodes = plan.nodes
        self.phase_nodes: dict[Phase, list[StepPlan]] = {p: [] for p in PHASES}
        self.top: dict[Phase, list[str]] = {p: [] for p in PHASES}
        self.dependents: dict[str, list[str]] = {k: [] for k in plan.nodes}
        self.order = {k: i for i, k in enumerate(plan.nodes)}
        self.leaves = frozenset(
            n.key for n in plan.nodes.values() if n.kind == "action" and n.for_each is None
        )
        # Derived from the plan itself, not from Plan.roots/dependents, so the engine
        # does not depend on how the compiler chose to fill those in.
        for node in plan.nodes.values():
            self.phase_nodes[node.phase].append(node)
            if node.parent is None:
                self.top[node.phase].append(node.key)
            for dep in node.deps:
                self.dependents[dep].append(node.key)
        #: per node: its deps not yet terminal (an ordered set)
        self.unfinished: dict[str, dict[str, None]] = {}
        #: per group: children not yet terminal
        self.open_children: dict[str, int] = {}
        #: per phase: plan nodes not yet terminal
        self.phase_open: dict[Phase, int] = dict.fromkeys(PHASES, 0)
        #: phases whose nodes may be considered
        self.started: set[Phase] = set()
        #: leaf steps queued, running or retrying (the run is RUNNING while any are)
        self.busy = 0
        #: leaf steps that are active, and those of them that are waiting
        self.active: dict[str, None] = {}
        self.waiting: dict[str, None] = {}
        #: per running ``for_each`` step: items not started, items not ended, items active
        self.item_pending: dict[str, deque[str]] = {}
        self.item_open: dict[str, int] = {}
        self.item_active: dict[str, int] = {}

    def is_leaf(self, step: StepState) -> bool:
        """An item, or an action without ``for_each``: what workers actually run."""
        return step.parent is not None or step.node in self.leaves

    def in_plan_order(self, keys: Iterable[str], steps: Mapping[str, StepState]) -> list[str]:
        """``keys`` sorted by plan node, then item index: the same order after a rebuild."""
        return sorted(keys, key=lambda k: self.position(steps[k]))

    def position(self, step: StepState) -> tuple[int, int]:
        return self.order[step.node], step.index or 0

    def moved(self, step: StepState, old: StepStatus, new: StepStatus) -> None:
        """Keep the counters right as ``step`` goes from ``old`` to ``new``.

        The hot path of the engine (three calls per step), hence written out flat.
        """
        if step.parent is None and step.node not in self.leaves:
            return
        was, now = old in STEP_ACTIVE, new in STEP_ACTIVE
        if was:
            if old is S.WAITING:
                del self.waiting[step.key]
            else:
                self.busy -= 1
        if now:
            if new is S.WAITING:
                self.waiting[step.key] = None
            else:
                self.busy += 1
        if was != now:
            _mark(self.active, step.key, 1 if now else -1)
            if step.parent is not None:
                self.item_active[step.parent] = self.item_active.get(step.parent, 0) + (
                    1 if now else -1
                )

    def _count(self, step: StepState, status: StepStatus, delta: int) -> None:
        if status not in STEP_ACTIVE:  # pending or terminal: counted nowhere
            return
        if status is S.WAITING:
            _mark(self.waiting, step.key, delta)
        else:
            self.busy += delta
        _mark(self.active, step.key, delta)
        if step.parent is not None:
            self.item_active[step.parent] = self.item_active.get(step.parent, 0) + delta

    def add_items(self, parent: str, keys: list[str]) -> None:
        self.item_pending[parent] = deque(keys)
        self.item_open[parent] = len(keys)
        self.item_active.setdefault(parent, 0)

    def items_to_start(self, parent: str, max_parallel: int | None) -> list[str]:
        """Pending items of ``parent`` that may start now, taken off the pending queue."""
        pending = self.item_pending.get(parent)
        if not pending:
            return []
        room = (max_parallel or len(pending)) - self.item_active.get(parent, 0)
        keys = [pending.popleft() for _ in range(min(room, len(pending)))]
        if not pending:
            del self.item_pending[parent]
        return keys

    def item_ended(self, parent: str) -> bool:
        """Count an item of ``parent`` as ended; True when it was the last one."""
        self.item_open[parent] -= 1
        if self.item_open[parent]:
            return False
        del self.item_open[parent]
        self.item_active.pop(parent, None)
        return True

    def rebuild(self, run: RunState, steps: Mapping[str, StepState]) -> None:
        """Derive every counter from the statuses alone."""
        for key, node in self.nodes.items():
            step = steps[key]
            self.unfinished[key] = {d: None for d in node.deps if not steps[d].status.terminal}
            self.open_children[key] = sum(not steps[c].status.terminal for c in node.children)
            if not step.status.terminal:
                self.phase_open[node.phase] += 1
            if node.for_each is not None and step.status is S.RUNNING and step.items:
                self._rebuild_items(step, steps)
            if step.status is S.PENDING and self.unfinished[key]:
                step.reason = step.reason or waiting_reason(self.unfinished[key])
        for step in steps.values():
            if self.is_leaf(step):
                self._count(step, step.status, +1)
        self.started = self._phases_started(run)

    def _rebuild_items(self, parent: StepState, steps: Mapping[str, StepState]) -> None:
        key = parent.key
        items = [steps[item_key(key, i)] for i in range(parent.items or 0)]
        self.item_pending[key] = deque(i.key for i in items if i.status is S.PENDING)
        self.item_open[key] = sum(not i.status.terminal for i in items)
        self.item_active[key] = 0  # the active ones are counted with the other leaves

    def _phases_started(self, run: RunState) -> set[Phase]:
        """A phase starts when the one before it ends, so this follows from the counters."""
        started: set[Phase] = set()
        if run.status is RunStatus.QUEUED:
            return started
        for phase in PHASES:
            started.add(phase)
            if self.phase_open[phase]:
                break
        return started


def _mark(keys: dict[str, None], key: str, delta: int) -> None:
    if delta > 0:
        keys[key] = None
    else:
        keys.pop(key, None)


def new_step(node: StepPlan, key: str, **fields: Any) -> StepState:
    """A new step of ``node``, routed as its plan says (the store's claim reads it)."""
    return StepState(
        key=key,
        node=node.key,
        queue=node.queue,
        runs_on=dict(node.runs_on),
        priority=node.priority,
        **fields,
    )
