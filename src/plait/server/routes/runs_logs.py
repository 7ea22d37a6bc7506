"""Routes: a run's log — a page of lines as JSON, or ``?follow=true`` as Server-Sent
Events until the run ends (see :mod:`plait.server.sse` for the events)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from plait.server import sse
from plait.server.deps import Principal, principal
from plait.server.routes import runs_access
from plait.server.routes.runs_views import LogPage, log_out
from plait.server.services import Services, get_services

router = APIRouter(tags=["runs"])

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get(
    "/runs/{run_id}/logs",
    response_model=LogPage,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "With `follow=true`: events `log`, `status`, `end`.",
        }
    },
    summary="A run's log lines",
)
async def run_logs(
    run_id: str,
    request: Request,
    services: Annotated[Services, Depends(get_services)],
    who: Annotated[Principal, Depends(principal)],
    after: Annotated[int, Query(ge=0, description="Only lines after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    step: Annotated[str | None, Query(description="Only this step's lines.")] = None,
    follow: Annotated[bool, Query(description="Stream as Server-Sent Events.")] = False,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Any:
    """Log lines in order, secrets masked. Without `follow`, one page: read on with
    `?after=<next_after>` while `more` is true. With `follow=true`, a text/event-stream
    that sends lines as they are written and ends when the run has ended."""
    run = await run_in_threadpool(runs_access.readable_run, services, who, run_id, "logs:read")
    if not follow:
        lines = await run_in_threadpool(services.store.read_logs, run_id, after, limit, step)
        return LogPage(
            items=[log_out(line) for line in lines],
            next_after=lines[-1].id if lines else after,
            more=len(lines) == limit,
            status=str(run.status),
        )
    if last_event_id is not None and last_event_id.isdigit():
        after = max(after, int(last_event_id))
    wakeups = services.extras.get("wakeups")  # PostgreSQL: woken by other processes
    spec = sse.Follow(services.store, run_id, after=after, step=step, wakeups=wakeups)
    stream = sse.follow(
        spec, lambda line: log_out(line).model_dump(mode="json"), request.is_disconnected
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=_SSE_HEADERS)
