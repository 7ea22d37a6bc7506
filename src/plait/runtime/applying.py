"""Small builders of engine events for the runner: each returns the function
:meth:`Runner._transact` applies to a run's machine (again, after a reload, when another
process changed the run first)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plait.engine.api import Outcome, Transition
from plait.engine.machine import RunMachine
from plait.engine.state import AttemptRecord

Apply = Callable[[RunMachine], Transition]


def finish(
    key: str, attempt: int, outcome: Outcome, now: float
) -> Callable[[RunMachine], Transition]:
    return lambda m: m.attempt_finished(key, attempt, outcome, now)


@dataclass
class Finished:
    """An attempt's result waiting for the group commit of this loop turn."""

    run: Any  # the runner's TrackedRun
    key: str
    attempt: int
    outcome: Outcome
    record: AttemptRecord
    now: float


def finish_all(items: list[Finished]) -> Callable[[RunMachine], Transition]:
    def apply(machine: RunMachine) -> Transition:
        transition = Transition()
        for item in items:
            transition.merge(
                machine.attempt_finished(item.key, item.attempt, item.outcome, item.now)
            )
        return transition

    return apply


def start_one(key: str, attempt: int, now: float) -> Callable[[RunMachine], Transition]:
    return lambda m: m.attempt_started(key, attempt, now)


def start_all(starts: list[tuple[str, int]], now: float) -> Callable[[RunMachine], Transition]:
    def apply(m: RunMachine) -> Transition:
        merged = Transition()
        for key, attempt in starts:
            merged.merge(m.attempt_started(key, attempt, now))
        return merged

    return apply
