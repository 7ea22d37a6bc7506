"""What goes into the engine and what comes out of it.

The engine (:class:`plait.engine.machine.RunMachine`) is the functional core: it takes
the current state of a run and an event, and returns a :class:`Transition` — the steps
and run fields that changed, the outbox events, and what the runtime must do. It does
no I/O and never reads a clock: ``now`` (seconds since the epoch) is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from plait.engine.state import Event, StepState

OutcomeKind = Literal["succeeded", "failed", "timed_out", "cancelled", "interrupted", "suspended"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt of an action step ended, as the runtime reports it.

    * ``succeeded`` — ``outputs`` are the step's outputs (already evaluated from the
      step's ``outputs:`` templates, public/masked), ``sealed_outputs`` the real values
      when masking changed them.
    * ``failed`` / ``timed_out`` — ``error`` says why; retries and ``on_error`` apply.
      ``retryable=False`` (e.g. an expression error in ``with:``) fails at once.
      ``retry_after`` (seconds) is how long the other side asked us to wait (an HTTP
      ``Retry-After``): the next retry waits at least that long.
    * ``cancelled`` — the runtime stopped it because the engine asked (cancel, run
      timeout).
    * ``interrupted`` — the process running it died; it runs again without using a
      retry, but the third interruption fails the step.
    * ``suspended`` — the action waits (sleep, approval): the step becomes ``waiting``
      until ``resume_at`` (or an external decision); ``reason`` says on what.
    """

    kind: OutcomeKind
    outputs: dict[str, Any] | None = None
    sealed_outputs: dict[str, Any] | None = None
    error: str | None = None
    retryable: bool = True
    retry_after: float | None = None
    resume_at: float | None = None
    reason: str | None = None


@dataclass(slots=True)
class Transition:
    """The result of applying one event.

    ``steps`` are the step states created or changed (to persist); ``run_changed`` says
    whether the run record changed; ``cancel`` lists keys of attempts the runtime must
    stop (their processes killed); ``events`` go to the outbox in the same commit.
    """

    steps: list[StepState] = field(default_factory=list)
    run_changed: bool = False
    cancel: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def merge(self, other: Transition) -> Transition:
        seen = {id(s) for s in self.steps}
        self.steps.extend(s for s in other.steps if id(s) not in seen)
        self.run_changed = self.run_changed or other.run_changed
        self.cancel.extend(k for k in other.cancel if k not in self.cancel)
        self.events.extend(other.events)
        return self
