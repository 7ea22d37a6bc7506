"""What the runs API answers: pydantic models (so the OpenAPI document is exact) and the
functions that build them from the store's records.

Only public values leave the server: run inputs and step outputs are the masked
copies the engine keeps (``***`` for secrets); the ``sealed_*`` fields never appear
here. Times are ISO 8601 in UTC, durations seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from plait.engine.state import AttemptRecord, RunState, StepState
from plait.local import build_result
from plait.model.plan import Plan
from plait.store.base import LogLine


def when(stamp: float | None) -> dt.datetime | None:
    return None if stamp is None else dt.datetime.fromtimestamp(stamp, dt.UTC)


def took(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 4)


class StartRunBody(BaseModel):
    inputs: dict[str, Any] = Field(default_factory=dict, description="The run's inputs.")
    version: int | None = Field(
        None, ge=1, description="Run this version of the workflow (default: the current one)."
    )
    coerce: bool = Field(
        False,
        description="Inputs are given as text (as on a command line) and are converted to "
        'their declared types: `"3"` for an integer input becomes 3.',
    )


class RetryBody(BaseModel):
    version: Literal["original", "current"] = Field(
        "original",
        description="Re-run on the version the run started on, or on the workflow's "
        "current version.",
    )


class DecisionBody(BaseModel):
    comment: str = Field("", max_length=4000, description="Why; recorded with the decision.")


class AttemptOut(BaseModel):
    attempt: int
    status: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration: float | None
    error: str | None
    worker: str | None


class StepOut(BaseModel):
    id: str = Field(description="The step's key: its id, or `id[index]` for a for_each item.")
    name: str
    node: str = Field(description="The plan node (the step id without an item index).")
    uses: str | None = Field(description="The action, or null for a group.")
    status: str
    attempt: int = Field(description="How many attempts started.")
    attempts: list[AttemptOut]
    outputs: dict[str, Any] | None
    error: str | None
    reason: str | None = Field(description="Why the step is not running, when it is not.")
    parent: str | None
    index: int | None
    available_at: dt.datetime | None = Field(description="When a retry or a wait comes due.")
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration: float | None


class RunOut(BaseModel):
    id: str
    workflow: str
    namespace: str
    version: int | None = Field(description="The workflow version the run is pinned to.")
    version_id: int | None
    status: str
    success: bool
    attempt: int = Field(description="1, plus one for every retry from failure.")
    trigger_type: str
    inputs: dict[str, Any] = Field(description="Secret inputs are shown as `***`.")
    outputs: dict[str, Any] | None
    error: str | None
    reason: str | None = Field(description="Why the run is not running, when it is not.")
    cancel_requested: bool
    parent_run_id: str | None
    concurrency_key: str | None = Field(
        None, description="The run's rendered `concurrency.key`, when its workflow has one."
    )
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration: float | None


class RunAnomalyOut(BaseModel):
    """A run whose duration is far outside its workflow's history (see
    ``GET /api/v1/insights/anomalies``)."""

    score: float = Field(description="Robust z-score of the run's duration; negative: faster.")
    duration: float = Field(description="Seconds the run took.")
    median: float = Field(description="Median seconds of its workflow's recent successful runs.")
    direction: Literal["slow", "fast"]


class RunDetail(RunOut):
    trigger: dict[str, Any]
    steps: list[StepOut]
    anomaly: RunAnomalyOut | None = Field(
        None,
        description="Set when the run succeeded far slower or faster than its workflow "
        "usually does (robust z-score of 3.5 or more); null otherwise and while it runs.",
    )


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None = Field(description="Pass as `?cursor=` for the next page.")


class LogLineOut(BaseModel):
    id: int
    step: str | None
    attempt: int
    stream: str
    line: str
    at: dt.datetime | None


class LogPage(BaseModel):
    items: list[LogLineOut]
    next_after: int = Field(description="Pass as `?after=` to read on from here.")
    more: bool = Field(description="True when the page was full: read on at once.")
    status: str = Field(description="The run's status when the page was read.")


def run_fields(run: RunState, version: int | None) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow": run.workflow,
        "namespace": run.namespace,
        "version": version,
        "version_id": run.version_id,
        "status": str(run.status),
        "success": run.status == "succeeded",
        "attempt": run.attempt,
        "trigger_type": str(run.trigger.get("type", "manual")),
        "inputs": dict(run.inputs),
        "outputs": run.outputs,
        "error": run.error,
        "reason": run.reason,
        "cancel_requested": run.cancel_requested,
        "parent_run_id": run.parent_run_id,
        "concurrency_key": run.concurrency_key,
        "created_at": when(run.created_at),
        "started_at": when(run.started_at),
        "finished_at": when(run.finished_at),
        "duration": took(run.started_at, run.finished_at),
    }


def run_out(run: RunState, version: int | None) -> RunOut:
    return RunOut(**run_fields(run, version))


def run_detail(
    plan: Plan,
    run: RunState,
    steps: Iterable[StepState],
    attempts: Iterable[AttemptRecord],
    version: int | None,
) -> RunDetail:
    """The run with its steps in definition order (``for_each`` items after their
    step, as in the result file of ``plait run``), each with its attempt history."""
    by_key = {s.key: s for s in steps}
    history: dict[str, list[AttemptOut]] = {}
    for a in attempts:
        history.setdefault(a.step, []).append(_attempt_out(a))
    ordered = build_result(plan, run, by_key).steps
    out = [
        _step_out(plan, by_key[r.id], r.name, history.get(r.id, []))
        for r in ordered
        if r.id in by_key
    ]
    return RunDetail(**run_fields(run, version), trigger=dict(run.trigger), steps=out)


def _attempt_out(a: AttemptRecord) -> AttemptOut:
    return AttemptOut(
        attempt=a.attempt,
        status=str(a.status),
        started_at=when(a.started_at),
        finished_at=when(a.finished_at),
        duration=took(a.started_at, a.finished_at),
        error=a.error,
        worker=a.worker,
    )


def _step_out(plan: Plan, s: StepState, name: str, attempts: list[AttemptOut]) -> StepOut:
    node = plan.nodes.get(s.node)
    return StepOut(
        id=s.key,
        name=name,
        node=s.node,
        uses=node.uses if node is not None else None,
        status=str(s.status),
        attempt=s.attempt,
        attempts=sorted(attempts, key=lambda a: a.attempt),
        outputs=s.outputs,
        error=s.error,
        reason=s.reason,
        parent=s.parent,
        index=s.index,
        available_at=when(s.available_at),
        started_at=when(s.started_at),
        finished_at=when(s.finished_at),
        duration=took(s.started_at, s.finished_at),
    )


def log_out(line: LogLine) -> LogLineOut:
    return LogLineOut(
        id=line.id,
        step=line.step,
        attempt=line.attempt,
        stream=line.stream,
        line=line.line,
        at=when(line.at),
    )


def step_statuses(steps: Iterable[StepState]) -> Mapping[str, str]:
    return {s.key: str(s.status) for s in steps}
