"""Routes: ``/health`` (liveness), ``/ready`` (readiness) and ``/metrics`` (Prometheus).

No authentication: load balancers, orchestrators and Prometheus call these, and they
reveal nothing about workflows or runs beyond aggregate counts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from plait.errors import PlaitError
from plait.server import metrics
from plait.server.services import Services, get_services

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    reason: str | None = None


@router.get("/health", response_model=Health, summary="Liveness")
async def health() -> Health:
    """The process answers. Touches nothing else, so a slow database does not get a
    healthy process restarted."""
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "Not ready, with the reason."}},
    summary="Readiness",
)
def ready(services: Annotated[Services, Depends(get_services)]) -> Response:
    """Ready to serve: the store answers and its schema is at the newest migration.
    503 with the reason otherwise (run `plait db upgrade` for an old schema)."""
    from plait.store import migrate

    try:
        revision = migrate.current(services.settings.database_url)
    except PlaitError as exc:
        return _not_ready(f"the store is not reachable: {exc}")
    except Exception as exc:  # a driver error: report it, never a 500
        return _not_ready(f"the store is not reachable: {type(exc).__name__}")
    if revision != migrate.HEAD:
        shown = revision or "empty"
        return _not_ready(
            f"the store's schema is at {shown}, not {migrate.HEAD}: run `plait db upgrade`"
        )
    return JSONResponse(Ready(status="ready").model_dump())


def _not_ready(reason: str) -> Response:
    return JSONResponse(Ready(status="unavailable", reason=reason).model_dump(), status_code=503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    summary="Prometheus metrics",
)
def prometheus(request: Request) -> Response:
    """Runs by workflow and status, steps by status, queue depth and age, worker
    heartbeats, HTTP requests and latency — all prefixed `plait_`."""
    body = generate_latest(metrics.registry_of(request.app))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
