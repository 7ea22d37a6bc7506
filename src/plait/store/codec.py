"""Domain records to table rows and back, sealing secret fields on the way in.

The SQL store and nothing else uses this: it is the one place that knows both the
records of :mod:`plait.engine.state` and the columns of :mod:`plait.store.tables`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from plait.engine.state import (
    AttemptRecord,
    AttemptStatus,
    Event,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
)
from plait.errors import StoreError
from plait.store.base import LogLine, Sealer, StoredEvent

Row = Mapping[Any, Any]

#: An empty secret mapping needs no key; it is kept as empty bytes so that it loads as
#: ``{}`` (not ``None``) even on a store without a sealer.
_EMPTY = b""


def seal_json(value: dict[str, Any] | None, sealer: Sealer | None, name: str) -> bytes | None:
    """``value`` as JSON bytes encrypted by ``sealer``; never plain text at rest."""
    if value is None:
        return None
    if sealer is None:
        if not value:
            return _EMPTY
        raise StoreError(f"{name} holds secret values but the store has no sealer (no key)")
    return sealer.seal(json.dumps(value, separators=(",", ":")).encode())


def unseal_json(data: bytes | None, sealer: Sealer | None, name: str) -> dict[str, Any] | None:
    if data is None:
        return None
    if not data:
        return {}
    if sealer is None:
        raise StoreError(f"{name} is encrypted but the store has no sealer (no key)")
    try:
        value: dict[str, Any] = json.loads(sealer.unseal(bytes(data)))
    except StoreError:
        raise
    except Exception as exc:  # a wrong key or corrupt data: the sealer's own error types
        raise StoreError(f"cannot decrypt {name}: {exc}") from exc
    return value


def run_row(run: RunState, sealer: Sealer | None) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow": run.workflow,
        "namespace": run.namespace,
        "version_id": run.version_id,
        "status": str(run.status),
        "inputs": run.inputs,
        "sealed_inputs": seal_json(run.sealed_inputs, sealer, "sealed_inputs"),
        "trigger": run.trigger,
        "failed_phases": list(run.failed_phases),
        "cancel_requested": run.cancel_requested,
        "timed_out": run.timed_out,
        "outputs": run.outputs,
        "error": run.error,
        "reason": run.reason,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "deadline": run.deadline,
        "attempt": run.attempt,
        "version": run.version,
        "parent_run_id": run.parent_run_id,
        "concurrency_key": run.concurrency_key,
    }


def run_from_row(row: Row, sealer: Sealer | None) -> RunState:
    return RunState(
        id=row["id"],
        workflow=row["workflow"],
        namespace=row["namespace"],
        version_id=row["version_id"],
        status=RunStatus(row["status"]),
        inputs=row["inputs"],
        sealed_inputs=unseal_json(row["sealed_inputs"], sealer, "sealed_inputs"),
        trigger=row["trigger"],
        failed_phases=row["failed_phases"],
        cancel_requested=bool(row["cancel_requested"]),
        timed_out=bool(row["timed_out"]),
        outputs=row["outputs"],
        error=row["error"],
        reason=row["reason"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        deadline=row["deadline"],
        attempt=row["attempt"],
        version=row["version"],
        parent_run_id=row["parent_run_id"],
        concurrency_key=row["concurrency_key"],
    )


def step_row(run_id: str, step: StepState, sealer: Sealer | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "key": step.key,
        "node": step.node,
        "status": str(step.status),
        "attempt": step.attempt,
        "interruptions": step.interruptions,
        "attempt_base": step.attempt_base,
        "parent": step.parent,
        "item": step.item,
        "idx": step.index,
        "items": step.items,
        "outputs": step.outputs,
        "sealed_outputs": seal_json(step.sealed_outputs, sealer, "sealed_outputs"),
        "error": step.error,
        "reason": step.reason,
        "available_at": step.available_at,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "queue": step.queue,
        "runs_on": step.runs_on,
        "priority": step.priority,
    }


def step_from_row(row: Row, sealer: Sealer | None) -> StepState:
    return StepState(
        key=row["key"],
        node=row["node"],
        status=StepStatus(row["status"]),
        attempt=row["attempt"],
        interruptions=row["interruptions"],
        attempt_base=row["attempt_base"],
        parent=row["parent"],
        item=row["item"],
        index=row["idx"],
        items=row["items"],
        outputs=row["outputs"],
        sealed_outputs=unseal_json(row["sealed_outputs"], sealer, "sealed_outputs"),
        error=row["error"],
        reason=row["reason"],
        available_at=row["available_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        queue=row["queue"],
        runs_on=row["runs_on"] or {},
        priority=row["priority"],
    )


def attempt_row(a: AttemptRecord) -> dict[str, Any]:
    return {
        "run_id": a.run_id,
        "step": a.step,
        "attempt": a.attempt,
        "status": str(a.status),
        "started_at": a.started_at,
        "finished_at": a.finished_at,
        "error": a.error,
        "worker": a.worker,
        "lease_until": a.lease_until,
    }


def attempt_from_row(row: Row) -> AttemptRecord:
    return AttemptRecord(
        run_id=row["run_id"],
        step=row["step"],
        attempt=row["attempt"],
        status=AttemptStatus(row["status"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        worker=row["worker"],
        lease_until=row["lease_until"],
    )


def event_row(e: Event) -> dict[str, Any]:
    return {"run_id": e.run_id, "type": e.type, "step": e.step, "data": e.data, "at": e.at}


def event_from_row(row: Row) -> StoredEvent:
    event = Event(
        run_id=row["run_id"], type=row["type"], step=row["step"], data=row["data"], at=row["at"]
    )
    return StoredEvent(id=row["id"], event=event)


def log_row(line: LogLine) -> dict[str, Any]:
    return {
        "run_id": line.run_id,
        "step": line.step,
        "attempt": line.attempt,
        "stream": line.stream,
        "line": line.line,
        "at": line.at,
    }


def log_from_row(row: Row) -> LogLine:
    return LogLine(
        id=row["id"],
        run_id=row["run_id"],
        step=row["step"],
        attempt=row["attempt"],
        stream=row["stream"],
        line=row["line"],
        at=row["at"],
    )


def encode_cursor(created_at: float, run_id: str) -> str:
    """An opaque cursor: the sort key of the last item of a page."""
    raw = json.dumps([created_at, run_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, run_id = json.loads(raw)
        if not isinstance(run_id, str):
            raise TypeError("run id is not a string")
        return float(created_at), run_id
    except (binascii.Error, ValueError, TypeError) as exc:
        raise StoreError(f"invalid cursor {cursor!r}") from exc
