"""``for_each``: what a step's expression must give to fan out, and how the parent of
the items ends once they have (DESIGN §3, rule 6). Pure functions of values and states;
:class:`~plait.engine.machine.RunMachine` applies them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plait.engine.state import StepState, StepStatus

S = StepStatus
_FAILED = frozenset({S.FAILED, S.TIMED_OUT})


def items_of(value: Any) -> list[Any] | str:
    """The items ``for_each`` rendered to, or why they are not a list."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, list):
        return value
    return f"for_each must give a list, got {type(value).__name__}"


def ending(items: Sequence[StepState]) -> tuple[StepStatus, dict[str, str]]:
    """The status the parent ends in, with its ``error`` or ``reason``: failed if an item
    failed, cancelled if one was cancelled, skipped if all were, failed if only some were
    (they did not run), succeeded otherwise."""
    n = len(items)
    failed = sum(i.status in _FAILED for i in items)
    cancelled = sum(i.status is S.CANCELLED for i in items)
    skipped = sum(i.status is S.SKIPPED for i in items)
    if failed:
        return S.FAILED, {"error": f"{failed} of {n} items failed"}
    if cancelled:
        return S.CANCELLED, {"reason": f"{cancelled} of {n} items cancelled"}
    if skipped == n:
        return S.SKIPPED, {"reason": "every item was skipped"}
    if skipped:
        return S.FAILED, {"error": f"{skipped} of {n} items did not run"}
    return S.SUCCEEDED, {}
