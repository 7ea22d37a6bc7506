"""Routes: workers — the worker registry (``GET /workers``), and why a queued step waits.

A worker process registers itself, beats every few seconds and says when it drains or
stops (:mod:`plait.store.server_workers`); this lists them with their heartbeat age,
state, queues, tags and load. The registry belongs to no namespace: anyone who may
read runs somewhere may see it (it names hosts and queues, never a run's data).

:func:`explain_waits` is what the run detail calls to say why a queued step is not
running: no live worker serves its queue, none has the tags it needs, or the queue is
long. It reads the registry and the queue at most every :data:`VIEW_TTL` seconds per
API process (a run page is polled often; the answer changes slowly).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from plait.engine.state import StepState
from plait.errors import PlaitError
from plait.server.deps import Principal, allowed_namespaces, check, principal
from plait.server.routes.runs_views import RunDetail
from plait.server.services import Services, get_services
from plait.store.server_workers import LOST_AFTER, WorkerRecord

log = logging.getLogger(__name__)
router = APIRouter(tags=["workers"])

ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(principal)]

#: How long one API process reuses what it read of the registry and the queues.
VIEW_TTL = 2.0
#: From this many queued steps on, a queued step's reason names the backlog.
BACKLOG_SHOWN = 100
#: Backlogs are counted up to this (the count reads that many index entries).
BACKLOG_CAP = 10_000
#: The reason the engine gives a queued step; replaced by a more precise one here.
FREE_WORKER = "waiting for a free worker"
WorkerState = Literal["running", "draining", "stopped", "lost"]


class WorkerOut(BaseModel):
    id: str = Field(description="`host:pid:nonce`; attempts name the worker that ran them.")
    host: str
    pid: int
    state: WorkerState = Field(
        description="`running` (claims work), `draining` (stopping: finishes what it runs, "
        "takes nothing new), `stopped`, or `lost`: its heartbeat is older than "
        f"{LOST_AFTER:g} s without a stop (the process died; its steps are retried)."
    )
    queues: list[str] = Field(description="The queues it takes steps from.")
    tags: dict[str, str] = Field(description="Its tags, matched against steps' `runs_on`.")
    running: int = Field(description="Steps it runs now (as of its last heartbeat).")
    concurrency: int = Field(description="Steps it runs at most at once.")
    load: float = Field(description="`running / concurrency`, from 0 to 1.")
    heartbeat_at: dt.datetime
    heartbeat_age: float = Field(description="Seconds since its last heartbeat.")
    started_at: dt.datetime
    stopped_at: dt.datetime | None
    version: str = Field(description="The Plait version it runs.")


class WorkerList(BaseModel):
    items: list[WorkerOut]


def _when(stamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(stamp, dt.UTC)


def worker_out(record: WorkerRecord, now: float) -> WorkerOut:
    """The API's view of a registered worker at ``now``."""
    return WorkerOut(
        id=record.id,
        host=record.host,
        pid=record.pid,
        state=record.status(now),
        queues=list(record.queues),
        tags=dict(record.tags),
        running=record.running,
        concurrency=record.concurrency,
        load=round(record.running / record.concurrency, 4) if record.concurrency else 0.0,
        heartbeat_at=_when(record.heartbeat_at),
        heartbeat_age=round(max(0.0, now - record.heartbeat_at), 3),
        started_at=_when(record.started_at),
        stopped_at=_when(record.stopped_at) if record.stopped_at is not None else None,
        version=record.version,
    )


def list_of(records: Iterable[WorkerRecord], now: float, state: str | None) -> WorkerList:
    items = [worker_out(r, now) for r in records]
    return WorkerList(items=[w for w in items if state is None or w.state == state])


@router.get("/workers", response_model=WorkerList, summary="List workers")
def list_workers(
    services: ServicesDep,
    who: PrincipalDep,
    state: Annotated[WorkerState | None, Query(description="Only workers in this state.")] = None,
) -> WorkerList:
    """Every registered worker process — live ones first, then those that stopped or
    were lost in the last day — with its state, heartbeat age, queues, tags and load
    (needs `runs:read` in some namespace)."""
    if allowed_namespaces(who, "runs:read") == frozenset():
        check(who, "runs:read", None)
    return list_of(services.server_store.list_workers(), services.clock(), state)


# -- why a queued step waits ----------------------------------------------------------------
@dataclass
class _View:
    """What one API process last read of the registry and the queues."""

    read_at: float = -1e18
    live: list[WorkerRecord] = field(default_factory=list)
    backlog: dict[str, tuple[float, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _view(services: Services) -> _View:
    found = services.extras.get("worker_view")
    if found is None:
        found = services.extras.setdefault("worker_view", _View())
    assert isinstance(found, _View)
    return found


def _live(services: Services, view: _View, now: float) -> list[WorkerRecord]:
    with view.lock:
        if time.monotonic() - view.read_at > VIEW_TTL:
            view.live = services.server_store.live_workers(now)
            view.read_at = time.monotonic()
        return view.live


def _backlog(services: Services, view: _View, queue: str) -> int:
    with view.lock:
        read_at, count = view.backlog.get(queue, (-1e18, 0))
        if time.monotonic() - read_at > VIEW_TTL:
            count = services.server_store.queue_backlog(queue, BACKLOG_CAP)
            view.backlog[queue] = (time.monotonic(), count)
        return count


def wait_reason(
    queue: str, runs_on: Mapping[str, str], live: Iterable[WorkerRecord], backlog: int
) -> str | None:
    """Why a step of ``queue`` needing ``runs_on`` is still queued, when the registry
    can tell (None: it waits for a free worker like any other)."""
    serving = [w for w in live if queue in w.queues]
    if not serving:
        return f"no worker serves queue {queue!r}"
    if not any(w.serves(queue, runs_on) for w in serving):
        # name the tags no serving worker has; if each is somewhere but never all
        # together on one worker, name them all
        missing = [k for k, v in runs_on.items() if all(w.tags.get(k) != v for w in serving)]
        named = [f"{k}={v}" for k, v in sorted(runs_on.items()) if k in missing or not missing]
        word = "tag" if len(named) == 1 else "tags"
        where = "" if queue == "default" else f" serves queue {queue!r}"
        return f"no worker with {word} {', '.join(named)}{where}"
    if backlog >= BACKLOG_SHOWN:
        more = "+" if backlog >= BACKLOG_CAP else ""
        return f"{FREE_WORKER}: queue backlog {backlog:,}{more}"
    return None


def explain_waits(services: Services, steps: Iterable[StepState]) -> dict[str, str]:
    """The precise reason of each queued step that has one, by step key."""
    queued = [s for s in steps if s.status == "queued"]
    if not queued:
        return {}
    view = _view(services)
    live = _live(services, view, services.clock())
    found: dict[str, str] = {}
    for step in queued:
        serving = any(w.serves(step.queue, step.runs_on) for w in live)
        backlog = _backlog(services, view, step.queue) if serving else 0
        reason = wait_reason(step.queue, step.runs_on, live, backlog)
        if reason is not None and (serving is False or step.reason in (None, FREE_WORKER)):
            found[step.key] = reason
    return found


def with_wait_reasons(
    services: Services, detail: RunDetail, steps: Iterable[StepState]
) -> RunDetail:
    """``detail`` with the precise reason of its queued steps (see :func:`explain_waits`);
    unchanged if the registry cannot be read: the reason is a courtesy, the run is not."""
    try:
        reasons = explain_waits(services, steps)
    except PlaitError:
        log.exception("cannot read the worker registry")
        return detail
    for out in detail.steps:
        if out.id in reasons:
            out.reason = reasons[out.id]
    return detail
