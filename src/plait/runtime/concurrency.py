"""Concurrency limits (DESIGN §1 ``concurrency: {key, limit, on_conflict}``): the rules.

How many runs with one key may be active at once, and what a new run does when the
key is full. All of it is pure — what the store saw in, a decision and the records to
write out — so it is tested without a database; the store applies it atomically
(:mod:`plait.store.server_concurrency`) and :class:`~plait.runtime.service.RunService`
wires the two.

* The key is rendered once, when the run is created, with the run's scope (``inputs``,
  ``trigger``, ``run``, ``env``; secrets show as ``***``) and is scoped to the
  workflow's namespace. It defaults to the workflow's name.
* Active runs hold a slot: ``running`` and ``waiting`` ones, including those being
  cancelled (their ``finally`` still runs). A run held for a slot is ``queued``.
* ``queue``: a new run starts if the key has a free slot and nobody is held before it
  (first come, first served); otherwise it is held with a reason. When an active run
  ends, the oldest held runs start while there is room.
* ``cancel_running``: the new run always starts at once; the oldest active runs not
  already being cancelled are cancelled ("superseded by run …") until, counting the new
  one, no more than ``limit`` remain. Their ``finally`` steps may overlap the new run.
* ``skip``: when the key is full the new run is recorded and ends ``cancelled`` at once
  ("skipped: …"), without running anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from plait.engine.machine import RunMachine
from plait.engine.state import Event, RunState, StepState
from plait.expr import render_string
from plait.model.plan import ConcurrencyPlan
from plait.security.masking import Masker
from plait.store.base import RunSnapshot

#: the ``runs.concurrency_key`` column's width; longer keys keep a prefix and a hash
MAX_KEY_LENGTH = 300
_HASH_CHARS = 16

Action = Literal["start", "hold", "skip"]


@dataclass(frozen=True, slots=True)
class KeyRuns:
    """A key's runs as one admission transaction saw them: the active ones (running
    or waiting) oldest first, those of them already asked to cancel, and how many runs
    are held waiting for a slot."""

    active: tuple[str, ...] = ()
    cancelling: frozenset[str] = frozenset()
    held: int = 0

    def admitted(self, run_id: str) -> KeyRuns:
        """The same after a held run was started."""
        return KeyRuns((*self.active, run_id), self.cancelling, max(0, self.held - 1))


@dataclass(slots=True)
class RunRecords:
    """What admission writes for one run: the run row, its step rows and events."""

    run: RunState
    steps: Sequence[StepState] = ()
    events: Sequence[Event] = field(default_factory=list)


#: ``build(seen) -> records`` of the new run, given the key's runs
BuildNew = Callable[[KeyRuns], RunRecords]
#: ``admit(held run, seen) -> records`` of its start, or None when it must keep waiting
AdmitHeld = Callable[[RunSnapshot, KeyRuns], RunRecords | None]


class SlotStore(Protocol):
    """The store's side of admission (:class:`plait.store.server_concurrency.
    ConcurrencyStore`): each call counts a key's runs and writes what the callback made
    of them in one transaction, under a lock on the key."""

    def create_limited_run(self, namespace: str, key: str, build: BuildNew) -> RunRecords:
        """Insert the new run ``build`` makes of the key's runs (ConflictError: its id
        exists already)."""
        ...

    def start_held_runs(
        self, namespace: str, key: str, admit: AdmitHeld, batch: int = 50
    ) -> list[RunState]:
        """Start held runs oldest first while ``admit`` gives their start."""
        ...

    def held_keys(self, limit: int = 500) -> list[tuple[str, str]]:
        """``(namespace, key)`` of the keys that have held runs."""
        ...


@dataclass(frozen=True, slots=True)
class Decision:
    """What a new run does: ``start``, ``hold`` (wait for a slot) or ``skip``; the
    reason shown on the run; the active runs to cancel to make room for it."""

    action: Action
    reason: str | None = None
    supersede: tuple[str, ...] = ()


def render_key(template: str, scope: Mapping[str, Any], masker: Masker | None = None) -> str:
    """The run's key: ``template`` rendered with its scope, secrets masked, bounded."""
    value = render_string(template, scope)
    key = str(value) if not isinstance(value, str) else value
    if masker is not None:
        key = str(masker.mask_value(key))
    return fit_key(key)


def fit_key(key: str) -> str:
    """``key`` itself when it fits the column, else a prefix and a hash of all of it
    (distinct long keys stay distinct)."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:_HASH_CHARS]
    return f"{key[: MAX_KEY_LENGTH - _HASH_CHARS - 1]}#{digest}"


def held_reason(key: str, limit: int) -> str:
    return f"waiting for a concurrency slot: {key} (limit {limit})"


def skipped_reason(key: str, active: int) -> str:
    return f"skipped: {key} already has {active} active run(s)"


def superseded_reason(run_id: str) -> str:
    return f"superseded by run {run_id}"


def has_room(limit: int, seen: KeyRuns) -> bool:
    """Whether one more run of the key may become active."""
    return len(seen.active) < limit


def decide(policy: ConcurrencyPlan, key: str, seen: KeyRuns) -> Decision:
    """What a new run with ``key`` does, given the key's runs (see the module rules)."""
    if policy.on_conflict == "cancel_running":
        running = [r for r in seen.active if r not in seen.cancelling]
        excess = len(running) + 1 - policy.limit
        return Decision("start", supersede=tuple(running[:excess]) if excess > 0 else ())
    if policy.on_conflict == "skip":
        if has_room(policy.limit, seen):
            return Decision("start")
        return Decision("skip", skipped_reason(key, len(seen.active)))
    if has_room(policy.limit, seen) and not seen.held:
        return Decision("start")
    return Decision("hold", held_reason(key, policy.limit))


def new_run_records(machine: RunMachine, decision: Decision, now: float) -> RunRecords:
    """The records of a new run that ``decision`` admits, holds or skips.

    A started run is written with its first transition, so it is never seen ``queued``
    without a slot; a held run keeps every step ``pending`` and says why it waits.
    """
    run = machine.run
    if decision.action == "start":
        transition = machine.start(now)
        return RunRecords(run, transition.steps, transition.events)
    if decision.action == "skip":
        transition = machine.cancel(now, decision.reason or "skipped")
        return RunRecords(run, transition.steps, transition.events)
    run.reason = decision.reason
    data = {"reason": decision.reason, "concurrency_key": run.concurrency_key}
    event = Event(run.id, "run.queued", None, data, at=now)
    return RunRecords(run, list(machine.steps.values()), [event])


__all__ = [
    "MAX_KEY_LENGTH",
    "AdmitHeld",
    "BuildNew",
    "Decision",
    "KeyRuns",
    "RunRecords",
    "SlotStore",
    "decide",
    "fit_key",
    "has_room",
    "held_reason",
    "new_run_records",
    "render_key",
    "skipped_reason",
    "superseded_reason",
]
