"""The state of a run and of its steps, as the engine sees it and the store keeps it.

These are the domain records: the engine transforms them, the store persists them
field by field, and a run can be rebuilt from them after any crash. Fields named
``sealed_*`` hold real secret values; a store encrypts them at rest and they never
appear in the API, logs or results (their public counterparts are masked with ``***``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from plait.model.plan import Phase


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in _RUN_TERMINAL


_RUN_TERMINAL = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT}
)


class StepStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in STEP_TERMINAL

    @property
    def active(self) -> bool:
        """Started and not finished: queued, running, retrying or waiting."""
        return self in STEP_ACTIVE


STEP_TERMINAL = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.TIMED_OUT,
        StepStatus.SKIPPED,
        StepStatus.CANCELLED,
    }
)
STEP_ACTIVE = frozenset(
    {StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.RETRYING, StepStatus.WAITING}
)


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    #: the process running it died; the step runs again without using a retry
    INTERRUPTED = "interrupted"
    #: the action asked to wait (sleep, approval); the step is ``waiting``
    SUSPENDED = "suspended"


@dataclass(slots=True)
class StepState:
    """One node of a run: an action step, a group, or one item of a ``for_each``.

    ``key`` is unique in the run; ``node`` is the plan node it comes from (they differ
    only for ``for_each`` items, keyed ``node[index]``). ``attempt`` counts attempts
    started, ``interruptions`` those of them lost to a dead process: retries used are
    ``attempt - attempt_base - interruptions - 1`` once an attempt has finished, where
    ``attempt_base`` is the attempt count when the run was last retried from failure
    (attempt numbers keep growing across such retries, so history is never overwritten).
    Times are seconds since the epoch.
    """

    key: str
    node: str
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    interruptions: int = 0
    attempt_base: int = 0
    #: for ``for_each`` items: the parent's key, the item and its index
    parent: str | None = None
    item: Any = None
    index: int | None = None
    #: for a ``for_each`` step: how many items it fanned out to
    items: int | None = None
    outputs: dict[str, Any] | None = None
    #: the real outputs when ``outputs`` had secrets masked (encrypted at rest)
    sealed_outputs: dict[str, Any] | None = None
    error: str | None = None
    #: why the step is not running (waiting for needs, backoff until …, approval …)
    reason: str | None = None
    #: when a retrying step may start again, or a waiting step's timer is due
    available_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: routing, copied from the plan node when the step is created: only a worker that
    #: serves ``queue`` and has every ``runs_on`` tag claims it, higher ``priority`` first
    queue: str = "default"
    runs_on: dict[str, str] = field(default_factory=dict)
    priority: int = 0


@dataclass(slots=True)
class RunState:
    """A run as a whole. ``version`` increases with every committed transition."""

    id: str
    workflow: str
    namespace: str = "default"
    version_id: int | None = None
    status: RunStatus = RunStatus.QUEUED
    #: inputs with secret values masked; the real ones are in ``sealed_inputs``
    inputs: dict[str, Any] = field(default_factory=dict)
    sealed_inputs: dict[str, Any] | None = None
    trigger: dict[str, Any] = field(default_factory=dict)
    failed_phases: list[Phase] = field(default_factory=list)
    cancel_requested: bool = False
    timed_out: bool = False
    outputs: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float | None = None
    #: 1 for a new run; a retry from failure increases it (``run.attempt`` in scope)
    attempt: int = 1
    version: int = 0
    parent_run_id: str | None = None
    #: the rendered ``concurrency.key`` (server runs of a workflow that declares one)
    concurrency_key: str | None = None


@dataclass(slots=True)
class AttemptRecord:
    """One attempt of a step, kept as history (the step holds the current state)."""

    run_id: str
    step: str
    attempt: int
    status: AttemptStatus = AttemptStatus.RUNNING
    started_at: float = 0.0
    finished_at: float | None = None
    error: str | None = None
    worker: str | None = None
    lease_until: float | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A lifecycle event for the outbox: ``run.started``, ``step.failed`` … Published
    events (``POST /api/v1/events``) belong to no run: their ``run_id`` is ``None``."""

    run_id: str | None
    type: str
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0
