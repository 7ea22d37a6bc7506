"""Plait's engine: the pure rules of a run (DESIGN §3).

The records and messages are re-exported here. :class:`~plait.engine.machine.RunMachine`
itself is imported from :mod:`plait.engine.machine` on purpose: the server may use these
types, but an import-linter contract forbids it the run rules, and re-exporting the
machine here would make every ``from plait.engine import ...`` reach them.
"""

from plait.engine.api import Outcome, OutcomeKind, Transition
from plait.engine.retry import base_delay, delay_bounds, retry_delay
from plait.engine.state import (
    STEP_ACTIVE,
    STEP_TERMINAL,
    AttemptRecord,
    AttemptStatus,
    Event,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
)

__all__ = [
    "STEP_ACTIVE",
    "STEP_TERMINAL",
    "AttemptRecord",
    "AttemptStatus",
    "Event",
    "Outcome",
    "OutcomeKind",
    "RunState",
    "RunStatus",
    "StepState",
    "StepStatus",
    "Transition",
    "base_delay",
    "delay_bounds",
    "retry_delay",
]
