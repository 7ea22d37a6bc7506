"""Helpers for the engine tests: plans built by hand and a tiny simulated runtime.

Plans are built here directly (not from YAML) so the engine tests depend only on the
compiled :class:`Plan`. The ordering rules follow the plan module's docstring: a node
waits for the one before it in a sequence (or at the top of a phase) unless it names
``needs``; children of a parallel group wait for nothing but their group.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from plait.engine.api import Outcome, OutcomeKind, Transition
from plait.engine.machine import RunMachine
from plait.engine.state import RunState, RunStatus, StepState, StepStatus
from plait.expr import analyze
from plait.model.plan import (
    NO_RETRY,
    PHASES,
    STATUS_FUNCTIONS,
    NodeKind,
    OnError,
    Phase,
    Plan,
    RetryPolicy,
    StepPlan,
)

S = StepStatus
T0 = 1_000_000.0


@dataclass
class N:
    """A node as a test writes it; :func:`plan` compiles a tree of these."""

    key: str
    kind: NodeKind = "action"
    children: list[N] = field(default_factory=list)
    needs: list[str] | None = None
    if_: str | None = None
    on_error: OnError = "fail"
    retry: RetryPolicy = NO_RETRY
    for_each: Any = None
    max_parallel: int | None = None
    env: dict[str, str] = field(default_factory=dict)


def step(key: str, **kw: Any) -> N:
    if isinstance(kw.get("retry"), int):
        kw["retry"] = RetryPolicy(max=kw["retry"], backoff="constant", initial=1.0)
    return N(key, **kw)


def par(key: str, *children: N, **kw: Any) -> N:
    return N(key, "parallel", list(children), **kw)


def seq(key: str, *children: N, **kw: Any) -> N:
    return N(key, "sequence", list(children), **kw)


def plan(
    *main: N,
    on_failure: Sequence[N] = (),
    finally_: Sequence[N] = (),
    timeout: float | None = None,
    outputs: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Plan:
    nodes: dict[str, StepPlan] = {}
    roots: dict[Phase, tuple[str, ...]] = {}
    for phase, top in zip(PHASES, (main, on_failure, finally_), strict=True):
        _add_all(nodes, list(top), phase, None, sequential=True)
        roots[phase] = tuple(n.key for n in top)
    dependents: dict[str, list[str]] = {k: [] for k in nodes}
    for node in nodes.values():
        for dep in node.deps:
            dependents[dep].append(node.key)
    return Plan(
        name="test",
        nodes=nodes,
        roots=roots,
        dependents={k: tuple(v) for k, v in dependents.items()},
        timeout=timeout,
        outputs=outputs or {},
        env=env or {},
    )


def _add_all(
    nodes: dict[str, StepPlan], group: list[N], phase: Phase, parent: str | None, sequential: bool
) -> None:
    previous: str | None = None
    for n in group:
        if n.needs is not None:
            deps = tuple(n.needs)
        else:
            deps = (previous,) if sequential and previous else ()
        calls = analyze(n.if_, bare=True).calls if n.if_ else frozenset()
        nodes[n.key] = StepPlan(
            key=n.key,
            kind=n.kind,
            phase=phase,
            name=n.key,
            parent=parent,
            children=tuple(c.key for c in n.children),
            deps=deps,
            uses=None if n.children or n.kind != "action" else "test",
            env=n.env,
            if_=n.if_,
            if_checks_status=bool(calls & STATUS_FUNCTIONS),
            retry=n.retry,
            on_error=n.on_error,
            for_each=n.for_each,
            max_parallel=n.max_parallel,
        )
        _add_all(nodes, n.children, phase, n.key, sequential=n.kind == "sequence")
        previous = n.key


def new_run(**kw: Any) -> RunState:
    return RunState(id=kw.pop("id", "run-1"), workflow="test", **kw)


def machine(p: Plan, **kw: Any) -> RunMachine:
    secrets = kw.pop("secrets", None)
    return RunMachine(p, new_run(**kw), secrets=secrets)


def ok(**outputs: Any) -> Outcome:
    return Outcome("succeeded", outputs=outputs)


def fail(error: str = "boom", **kw: Any) -> Outcome:
    return Outcome("failed", error=error, **kw)


def statuses(m: RunMachine) -> dict[str, str]:
    return {k: str(s.status) for k, s in m.steps.items()}


def queued(m: RunMachine) -> list[str]:
    return [k for k, s in m.steps.items() if s.status is S.QUEUED]


def status(m: RunMachine, key: str) -> StepStatus:
    """A step's status, read through a call so each check sees the current value."""
    return m.steps[key].status


def run_status(m: RunMachine) -> RunStatus:
    return m.run.status


def types(tx: Transition) -> list[str]:
    return [e.type for e in tx.events]


def run_step(
    m: RunMachine, key: str, outcome: Outcome | None = None, now: float = T0
) -> Transition:
    """Claim the next attempt of ``key`` and report ``outcome`` for it."""
    attempt = m.steps[key].attempt + 1
    m.attempt_started(key, attempt, now)
    return m.attempt_finished(key, attempt, outcome or ok(), now)


def drive(
    m: RunMachine, outcomes: dict[str, list[Outcome]] | None = None, now: float = T0
) -> RunMachine:
    """Run to the end, one attempt at a time in key order; retries happen when due.

    ``outcomes[key]`` lists what the step's attempts report in turn (then success).
    """
    outcomes = {k: list(v) for k, v in (outcomes or {}).items()}
    if m.run.started_at is None:
        m.start(now)
    for _ in range(10_000):
        if m.finished:
            return m
        ready = [
            k
            for k, s in m.steps.items()
            if s.status is S.QUEUED or (s.status is S.RETRYING and (s.available_at or 0) <= now)
        ]
        if not ready:
            due = [s.available_at for s in m.steps.values() if s.status is S.RETRYING]
            assert due, f"stuck: {statuses(m)}"
            now = max(now, min(d for d in due if d is not None))
            continue
        key = ready[0]
        todo = outcomes.get(key) or outcomes.get(m.steps[key].node) or []
        run_step(m, key, todo.pop(0) if todo else ok(v=key), now)
    raise AssertionError("the run did not end")


# ----------------------------------------------------------------- simulated runtime

KINDS: tuple[OutcomeKind, ...] = ("succeeded", "failed", "interrupted", "timed_out", "suspended")


class Sim:
    """A runtime that claims work, reports random outcomes and may crash and recover.

    It checks the engine's invariants after every transition. After a crash the old
    machine keeps running in lockstep with one rebuilt from deep copies of the state:
    the two must agree on every later transition.
    """

    def __init__(self, m: RunMachine, rnd: random.Random, *, chaos: bool = True) -> None:
        self.m = m
        self.twin: RunMachine | None = None
        self.rnd = rnd
        self.chaos = chaos
        self.now = T0
        self.in_flight: dict[str, int] = {}
        self.killing: set[str] = set()
        self.seen: dict[str, StepStatus] = {k: s.status for k, s in m.steps.items()}
        self.crashed = False
        self.log: list[str] = []

    def call(self, name: str, *args: Any) -> Transition:
        self.log.append(f"{name}{args[:-1] if name != 'start' else ''}")
        before = {k: copy.copy(s) for k, s in self.m.steps.items()}
        run_before = copy.deepcopy(self.m.run)
        tx: Transition = getattr(self.m, name)(*args)
        self.check_complete(tx, before, run_before)
        if self.twin is not None:
            twin_tx: Transition = getattr(self.twin, name)(*args)
            assert twin_tx.events == tx.events
            assert twin_tx.cancel == tx.cancel
            assert self.twin.run == self.m.run
            assert self.twin.steps == self.m.steps
        self.check(tx)
        self.killing.update(tx.cancel)
        return tx

    def check_complete(
        self, tx: Transition, before: dict[str, StepState], run_before: RunState
    ) -> None:
        """Every step created or changed is in the transition: it is what gets persisted."""
        reported = {id(s) for s in tx.steps}
        for key, s in self.m.steps.items():
            if key not in before or before[key] != s:
                assert id(s) in reported, f"{key} changed but was not reported"
        assert tx.run_changed or run_before == self.m.run

    def check(self, tx: Transition) -> None:
        m = self.m
        for s in tx.steps:
            assert m.steps[s.key] is s or (self.twin and self.twin.steps[s.key] is s)
            before = self.seen.get(s.key, S.PENDING)
            assert not before.terminal or before is s.status, f"{s.key} ended twice"
            if before is S.PENDING and s.status in (S.QUEUED, S.RUNNING):
                self._check_may_start(s.key)
            self.seen[s.key] = s.status
            node = m.plan.nodes[s.node]
            assert s.attempt <= node.retry.max + 1 + s.interruptions
        active: dict[str, int] = {}
        for s in m.steps.values():
            if s.parent is not None and s.status.active:
                active[s.parent] = active.get(s.parent, 0) + 1
        for parent, count in active.items():
            assert count <= (m.plan.nodes[parent].max_parallel or count), parent

    def _check_may_start(self, key: str) -> None:
        m = self.m
        step = m.steps[key]
        if step.parent is not None:
            assert m.steps[step.parent].status is S.RUNNING
            return
        node = m.plan.nodes[key]
        for dep in node.deps:
            assert m.steps[dep].status.terminal, f"{key} started before {dep} ended"
        if node.parent is not None:
            assert m.steps[node.parent].status is S.RUNNING, f"{key} before its group"

    def crash(self) -> None:
        """Rebuild from copies of the state; the old machine becomes the lockstep twin."""
        self.crashed = True
        self.log.append("crash")
        old = self.m
        self.m = RunMachine(
            old.plan, copy.deepcopy(old.run), copy.deepcopy(list(old.steps.values()))
        )
        self.twin = old
        if self.rnd.random() < 0.5:  # the workers died with the process
            for key, attempt in list(self.in_flight.items()):
                del self.in_flight[key]
                self.call("attempt_finished", key, attempt, Outcome("interrupted"), self.now)

    def outcome(self, key: str) -> Outcome:
        if key in self.killing:
            self.killing.discard(key)
            if self.rnd.random() < 0.8:
                return Outcome("cancelled")
        kind = self.rnd.choice(KINDS)
        if kind == "succeeded":
            return ok(v=key)
        if kind == "suspended":
            return Outcome("suspended", resume_at=self.now + 5, reason="sleeping")
        return Outcome(kind, error=f"{kind} {key}")

    def run(self, max_events: int = 5_000) -> RunMachine:
        self.call("start", self.now)
        for _ in range(max_events):
            if self.m.finished:
                return self.m
            self.tick()
        raise AssertionError("the run did not end")

    def tick(self) -> None:
        m = self.m
        if self.chaos and self.rnd.random() < 0.02:  # possibly again and again
            self.crash()
            return
        if self.chaos and not m.run.cancel_requested and self.rnd.random() < 0.01:
            self.call("cancel", self.now, "test cancel")
            return
        deadline = m.run.deadline
        if deadline is not None and self.now >= deadline and not m.run.timed_out:
            self.call("deadline_passed", self.now)
            return
        choices: list[Callable[[], None]] = [self._claim(k) for k in self._ready()]
        choices += [self._finish(k, a) for k, a in self.in_flight.items()]
        choices += [self._resume(k) for k in self._due_waiting()]
        if choices:
            self.rnd.choice(choices)()
        else:
            self.advance()

    def _ready(self) -> list[str]:
        return [
            k
            for k, s in self.m.steps.items()
            if k not in self.in_flight
            and (
                s.status is S.QUEUED
                or (s.status is S.RETRYING and (s.available_at or 0) <= self.now)
            )
        ]

    def _due_waiting(self) -> list[str]:
        return [
            k
            for k, s in self.m.steps.items()
            if s.status is S.WAITING
            and k not in self.in_flight
            and (s.available_at or 0) <= self.now
        ]

    def _claim(self, key: str) -> Callable[[], None]:
        def claim() -> None:
            attempt = self.m.steps[key].attempt + 1
            self.in_flight[key] = attempt
            self.call("attempt_started", key, attempt, self.now)

        return claim

    def _finish(self, key: str, attempt: int) -> Callable[[], None]:
        def finish() -> None:
            del self.in_flight[key]
            self.call("attempt_finished", key, attempt, self.outcome(key), self.now)

        return finish

    def _resume(self, key: str) -> Callable[[], None]:
        def resume() -> None:
            attempt = self.m.steps[key].attempt
            self.call("attempt_finished", key, attempt, ok(v=key), self.now)

        return resume

    def advance(self) -> None:
        times = [
            s.available_at
            for s in self.m.steps.values()
            if s.status in (S.RETRYING, S.WAITING) and s.available_at is not None
        ]
        if self.m.run.deadline is not None and not self.m.run.timed_out:
            times.append(self.m.run.deadline)
        later = [t for t in times if t > self.now]
        assert later, f"stuck: {statuses(self.m)} after {self.log}"
        self.now = min(later)


def test_plan_helper_orders_sequences_and_parallel_groups() -> None:
    p = plan(step("a"), par("g", step("b"), step("c")), seq("s", step("d"), step("e")))
    assert p.nodes["g"].deps == ("a",)
    assert p.nodes["b"].deps == ()
    assert p.nodes["b"].parent == "g"
    assert p.nodes["e"].deps == ("d",)
    assert p.nodes["s"].children == ("d", "e")


def test_simulated_runtime_runs_a_plain_plan_to_success() -> None:
    m = Sim(machine(plan(step("a"), step("b"))), random.Random(1), chaos=False)
    m.outcome = lambda key: ok(v=key)  # type: ignore[method-assign]
    assert str(m.run().run.status) == "succeeded"
