"""A run a :class:`~plait.runtime.runner.Runner` drives: its machine and what lives only
in memory — the tasks of its attempts, its backlog and timers, and its masking (secrets,
connection credentials, outputs derived from them) — and the attempt fence."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait.actions.connections import Connection
from plait.engine.machine import RunMachine
from plait.engine.state import AttemptRecord, AttemptStatus, StepStatus
from plait.model.plan import Plan
from plait.runtime.executor import PreparedAttempt
from plait.security.masking import Masker

#: the attempt record's status for each kind of outcome
ATTEMPT_STATUS = {
    "succeeded": AttemptStatus.SUCCEEDED,
    "failed": AttemptStatus.FAILED,
    "timed_out": AttemptStatus.TIMED_OUT,
    "cancelled": AttemptStatus.CANCELLED,
    "interrupted": AttemptStatus.INTERRUPTED,
    "suspended": AttemptStatus.SUSPENDED,
}


@dataclass
class TrackedRun:
    """A run this runner drives: its machine and everything that lives only in memory."""

    plan: Plan
    machine: RunMachine
    masker: Masker
    workdir: Path
    secrets: Mapping[str, str]
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    cancelling: set[str] = field(default_factory=set)
    #: steps queued in the store that this runner has not claimed yet
    backlog: set[str] = field(default_factory=set)
    #: due times of retrying and waiting steps
    timers: dict[str, float] = field(default_factory=dict)
    #: a commit failed without saying whether it happened: reload before the next one
    stale: bool = False
    #: attempts whose action began before their start was committed (Action.prestart),
    #: until their task takes them over
    prepared: dict[str, PreparedAttempt] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.machine.run.id

    @property
    def finished(self) -> bool:
        return self.machine.finished

    def taint(self, sealed: Any) -> None:
        """An output value that contains a secret becomes a secret itself, so later
        steps that log it (or something derived from it) are masked too."""
        for leaf in _leaves(sealed):
            if self.masker.mask(leaf) != leaf:
                self.masker.add(leaf)

    def connections(self, services: MutableMapping[str, Any]) -> Callable[[str], Connection]:
        """Resolves a connection name of this run's namespace (from the services'
        source, else ``PLAIT_CONNECTION_<NAME>``); its credentials are masked from then
        on."""

        def resolve(name: str) -> Connection:
            source = services.get("connections")
            if source is None:
                from plait.actions.connections import EnvConnections

                source = services["connections"] = EnvConnections()
            found: Connection = source.get(self.plan.namespace, name)
            for value in found.secrets:
                self.masker.add(value)
            return found

        return resolve


def current_records(machine: RunMachine, records: list[AttemptRecord]) -> list[AttemptRecord]:
    """The records of attempts their step is still at (running or waiting): the fence
    that keeps a stale result from overwriting its attempt's final record."""
    kept = []
    for record in records:
        step = machine.steps.get(record.step)
        live = step is not None and step.status in (StepStatus.RUNNING, StepStatus.WAITING)
        if live and step is not None and step.attempt == record.attempt:
            kept.append(record)
    return kept


def _leaves(value: Any) -> list[str]:
    """Every string (and number) inside a nested value."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list | tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [str(value)]
