"""The audit trail of the API: every state-changing request and every login attempt.

:func:`install` adds an ASGI middleware that records each ``POST``, ``PUT``, ``PATCH``
and ``DELETE`` under ``/api/v1`` with its actor, action (method and route template, e.g.
``POST /api/v1/runs/{id}/cancel``), resource (the path), outcome, time, source address
and request id. The entry is written when the response starts, before the client sees
it, so a client that got an answer can find the entry at once. Bodies are never
recorded: they may carry passwords or secret values.

Logins and token refreshes are left to their routes, which call :func:`record` with
what only they know (the attempted user name, why a login was refused).

If the audit write itself fails the request is not failed with it — it already
happened — but the failure is logged as an error for the operators.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plait.security.audit import AuditEntry, AuditEvent
from plait.server.services import Services

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Audited by their routes (as logins), not by the middleware.
EXPLICIT = frozenset({"/api/v1/auth/token", "/api/v1/auth/refresh"})
ANONYMOUS = "anonymous"
_MAX_FIELD = 200


def outcome_of(status: int) -> str:
    """``success`` below 400, ``denied`` for 401 and 403, ``failed`` otherwise."""
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    return "failed"


def _clip(text: str, limit: int = _MAX_FIELD) -> str:
    """Keep attacker-chosen text (a user name tried at login) to a bounded length and
    free of control characters, so it cannot forge lines in an exported log."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned[:limit]


def _actor_of(state: Mapping[str, Any]) -> str:
    who = state.get("principal")
    actor = getattr(who, "actor", None)
    return actor if isinstance(actor, str) else ANONYMOUS


def _event(
    scope: Scope,
    services: Services,
    action: str,
    resource: str,
    outcome: str,
    details: Mapping[str, Any] | None,
    actor: str | None,
) -> AuditEvent:
    state = scope.get("state") or {}
    client = scope.get("client")
    return AuditEvent(
        at=services.clock(),
        actor=_clip(actor) if actor is not None else _actor_of(state),
        action=action,
        resource=_clip(resource, 1000),
        outcome=outcome,
        source_ip=client[0] if client else None,
        request_id=state.get("request_id"),
        details=dict(details or {}),
    )


def _append(services: Services, event: AuditEvent) -> AuditEntry | None:
    try:
        return services.accounts.append_audit(event)
    except Exception:
        log.exception("could not write the audit entry %s %s", event.action, event.resource)
        return None


def record(
    services: Services,
    request: Request,
    action: str,
    resource: str,
    outcome: str,
    details: Mapping[str, Any] | None = None,
    *,
    actor: str | None = None,
) -> AuditEntry | None:
    """Write one explicit entry (a login, a refused login); call from a sync route or
    the thread pool. ``actor`` defaults to the request's principal, else ``anonymous``.
    """
    event = _event(request.scope, services, action, resource, outcome, details, actor)
    return _append(services, event)


class AuditMiddleware:
    """Records state-changing API requests; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _audited(scope):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # shared with the routes: they set the principal
        written = False

        async def write(status: int) -> None:
            nonlocal written
            if written:
                return
            written = True
            await run_in_threadpool(self._write, scope, status)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                await write(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            await write(500)
            raise

    @staticmethod
    def _write(scope: Scope, status: int) -> None:
        app = scope.get("app")
        services: Services | None = getattr(getattr(app, "state", None), "services", None)
        if services is None:
            log.error("no services on the app: audit entry for %s lost", scope.get("path"))
            return
        action = f"{scope['method']} {_template(scope)}"
        event = _event(
            scope, services, action, scope["path"], outcome_of(status), {"status": status}, None
        )
        _append(services, event)


def _template(scope: Scope) -> str:
    """The matched route's path template with the API prefix (FastAPI keeps the prefix
    of an included router apart from the route's own path), else the raw path."""
    template = getattr(scope.get("route"), "path", None)
    if not isinstance(template, str) or not template:
        return str(scope["path"])
    prefix = API_PREFIX.rstrip("/")
    return template if template.startswith(prefix + "/") else prefix + template


def _audited(scope: Scope) -> bool:
    if scope["type"] != "http" or scope.get("method") not in MUTATING:
        return False
    path: str = scope.get("path", "")
    return path.startswith(API_PREFIX) and path not in EXPLICIT


def install(app: FastAPI) -> None:
    """Add the audit middleware. Call after the other ``add_middleware`` calls so it is
    the outermost: then requests refused by the inner guards (413) are recorded too.
    Installing twice is harmless: the second call does nothing."""
    if any(getattr(m, "cls", None) == AuditMiddleware for m in app.user_middleware):
        return
    app.add_middleware(AuditMiddleware)
