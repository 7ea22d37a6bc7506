"""The FastAPI application: ``/api/v1`` routes, OpenAPI, health, metrics and the UI.

``create_app(services)`` is pure wiring: every route reaches storage and run rules only
through the objects in :class:`~plait.server.services.Services`, which the composition
root (:mod:`plait.server.compose`) builds.
"""

from __future__ import annotations

from types import ModuleType

from fastapi import FastAPI

from plait import __version__
from plait.server import errors
from plait.server.limits import BodySizeLimit, RequestContext
from plait.server.services import Services

API_PREFIX = "/api/v1"

DESCRIPTION = """Plait's HTTP API. Authenticate with `POST /api/v1/auth/token` (OAuth2 password
form) and send `Authorization: Bearer <access_token>`, or use an API token. Errors are
`{"error": {"code", "message", "details"}}`."""


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Plait",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    errors.install(app)
    from plait.server.fastpath import FastRunReads

    app.add_middleware(FastRunReads, services=services)  # innermost: see its docstring
    app.add_middleware(BodySizeLimit, max_bytes=services.max_body_bytes)
    app.add_middleware(RequestContext)
    from plait.server import audit as audit_log
    from plait.server import metrics

    metrics.install(app)
    audit_log.install(app)  # refusals (401, 413) are recorded too
    from plait.server import headers

    headers.install(app, services)  # outermost: every response, refusals included

    from plait.server.routes import (
        accounts,
        actions,
        alerts,
        audit,
        auth,
        connections,
        events,
        health,
        hooks,
        logs,
        runs,
        secrets,
        workers,
        workflows,
    )

    app.include_router(health.router)
    api: tuple[ModuleType, ...] = (
        runs,
        workflows,
        hooks,
        events,
        auth,
        accounts,
        audit,
        secrets,
        connections,
        actions,
        alerts,
    )
    api += (workers,)
    api += (logs,)
    from plait.server.routes import drafts

    api += (drafts,)
    from plait.server.routes import insights

    api += (insights,)
    for module in api:
        app.include_router(module.router, prefix=API_PREFIX)
    from plait.server import ui

    ui.install(app)  # last: its catch-all must not shadow the API
    return app
