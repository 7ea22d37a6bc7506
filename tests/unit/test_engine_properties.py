"""Property tests: random plans, random outcomes, random crashes — the rules always hold."""

from __future__ import annotations

import itertools
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.engine.api import Outcome
from plait.engine.machine import RunMachine
from plait.engine.state import RunStatus
from plait.model.plan import NodeKind, Plan, RetryPolicy
from tests.unit.test_engine_support import N, S, Sim, machine, plan

IFS = [None, None, None, "failure()", "always()", "false", "success()", "cancelled()"]
FOR_EACH: list[Any] = [None, None, None, [1, 2, 3], "${{ [1, 2] }}", [], "${{ 'x' }}"]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    counter = itertools.count()

    def nodes(depth: int, least: int, most: int) -> list[N]:
        out: list[N] = []
        for _ in range(draw(st.integers(least, most))):
            key = f"n{next(counter)}"
            earlier = [n.key for n in out]
            needs: list[str] | None = None
            named: bool = draw(st.booleans())
            if earlier and named:
                needs = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2))
            common: dict[str, Any] = {
                "needs": needs,
                "if_": draw(st.sampled_from(IFS)),
                "on_error": draw(st.sampled_from(["fail", "fail", "continue", "retry"])),
            }
            if depth < 3 and draw(st.integers(0, 3)) == 0:
                kind: NodeKind = draw(st.sampled_from(["parallel", "sequence"]))
                out.append(N(key, kind, nodes(depth + 1, 0, 3), **common))
                continue
            retry = RetryPolicy(max=draw(st.integers(0, 2)), backoff="constant", initial=1.0)
            for_each = draw(st.sampled_from(FOR_EACH))
            max_parallel = draw(st.sampled_from([None, 1, 2])) if for_each else None
            out.append(N(key, retry=retry, for_each=for_each, max_parallel=max_parallel, **common))
        return out

    return plan(
        *nodes(0, 1, 5),
        on_failure=nodes(0, 0, 2),
        finally_=nodes(0, 0, 2),
        timeout=draw(st.sampled_from([None, None, 3.0, 30.0])),
    )


def unconditional(p: Plan, key: str) -> bool:
    """No ``if`` on the node or any group around it."""
    node = p.nodes[key]
    while True:
        if node.if_ is not None:
            return False
        if node.parent is None:
            return True
        node = p.nodes[node.parent]


def check_end(m: RunMachine) -> None:
    run, p = m.run, m.plan
    assert run.status.terminal
    assert run.finished_at is not None
    for step in m.steps.values():
        assert step.status.terminal, f"{step.key} left {step.status}"
        node = p.nodes[step.node]
        assert step.attempt <= node.retry.max + 1 + step.interruptions
        assert step.interruptions < 3 or step.status is S.FAILED
    if "finally" not in run.failed_phases:
        for key, node in p.nodes.items():
            if node.phase == "finally" and node.kind == "action" and unconditional(p, key):
                assert m.steps[key].status not in (S.SKIPPED, S.CANCELLED), key
    if run.cancel_requested:
        assert run.status is RunStatus.CANCELLED
    elif run.timed_out:
        assert run.status is RunStatus.TIMED_OUT
    elif run.failed_phases:
        assert run.status is RunStatus.FAILED


@given(p=plans(), rnd=st.randoms(use_true_random=False))
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_runs_always_end_well_even_across_crashes(p: Plan, rnd: random.Random) -> None:
    check_end(Sim(machine(p), rnd).run())


@given(p=plans(), rnd=st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_calm_run_succeeds_when_every_step_does(p: Plan, rnd: random.Random) -> None:
    sim = Sim(machine(p), rnd, chaos=False)
    sim.outcome = lambda key: Outcome("succeeded", outputs={"v": key})  # type: ignore[method-assign]
    m = sim.run()
    check_end(m)
    if not any(s.status is S.FAILED for s in m.steps.values()):
        assert m.run.status in (RunStatus.SUCCEEDED, RunStatus.TIMED_OUT)
