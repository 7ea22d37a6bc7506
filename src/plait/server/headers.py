"""Secure response headers and CORS: what a browser is told about every response.

``install(app, services)`` adds both; it belongs in :func:`plait.server.app.create_app`.

Decisions:

* Every response carries ``X-Content-Type-Options: nosniff``, ``X-Frame-Options:
  DENY`` (with ``frame-ancestors 'none'`` in the CSP for browsers that prefer it),
  ``Referrer-Policy: no-referrer`` and a Content-Security-Policy. The policy fits the
  single-page UI served from the same origin: scripts, styles, images, fonts and API
  calls from ``'self'`` only, no plugins, no ``<base>`` rewriting.
* ``/docs`` (Swagger UI) is the one page with a relaxed policy, on that path only:
  FastAPI loads Swagger UI from the jsDelivr CDN and starts it with an inline script,
  so that page allows ``https://cdn.jsdelivr.net`` and ``'unsafe-inline'`` scripts.
  The page shows no user data besides the API description, and it still cannot be
  framed nor send data anywhere but this origin (``connect-src 'self'``). Deployments
  that want no CDN turn ``/docs`` off at the proxy; the JSON document at
  ``/api/v1/openapi.json`` stays available.
* ``Strict-Transport-Security`` only when the request came over HTTPS (``scope
  ["scheme"]``, which uvicorn sets from ``X-Forwarded-Proto`` only for trusted
  proxies): sent over plain HTTP it would be ignored, and on a test server it would
  pin a browser to HTTPS for a year.
* API responses are ``Cache-Control: no-store`` unless a route set its own: they
  carry tokens, run data and audit entries that no shared cache should keep.
* CORS is closed by default: no ``Access-Control-Allow-Origin`` at all. Origins listed
  in ``PLAIT_CORS_ORIGINS`` (comma-separated, exact ``scheme://host[:port]``; ``*`` is
  refused because the API takes bearer tokens and browsers must not hand them to any
  site) get Starlette's CORS middleware with the ``Authorization`` header allowed and
  no cookies (``allow_credentials`` is off: Plait authenticates by bearer token).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plait.server.services import Services

log = logging.getLogger(__name__)

CORS_ENV = "PLAIT_CORS_ORIGINS"
HSTS = "max-age=31536000; includeSubDomains"

#: The policy for the UI and the API: everything from this origin and no inline script.
#: Inline *styles* are allowed: the canvas (React Flow) and the editor (CodeMirror)
#: position elements with style attributes, and styles cannot run code.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

#: The policy for ``/docs`` only: Swagger UI from jsDelivr, started by an inline script.
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = "; ".join(
    [
        "default-src 'self'",
        f"script-src 'self' 'unsafe-inline' {DOCS_CDN}",
        f"style-src 'self' 'unsafe-inline' {DOCS_CDN}",
        "img-src 'self' data: https://fastapi.tiangolo.com",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

_COMMON: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)


def csp_for(path: str, docs_path: str | None) -> str:
    """The Content-Security-Policy for a request path."""
    if docs_path and (path == docs_path or path.startswith(docs_path + "/")):
        return DOCS_CSP
    return CSP


class SecureHeaders:
    """ASGI middleware adding the secure headers to every HTTP response, including
    errors answered by inner middleware (413, 401) — a header a route set wins."""

    def __init__(
        self, app: ASGIApp, docs_path: str | None = "/docs", api_prefix: str = "/api/"
    ) -> None:
        self.app = app
        self.docs_path = docs_path
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        extra = list(_COMMON)
        extra.append((b"content-security-policy", csp_for(path, self.docs_path).encode()))
        if scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", HSTS.encode()))
        if path.startswith(self.api_prefix):
            extra.append((b"cache-control", b"no-store"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                present = {bytes(k).lower() for k, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def cors_origins(environ: Mapping[str, str] | None = None) -> list[str]:
    """The origins allowed by ``PLAIT_CORS_ORIGINS``; empty (CORS closed) by default.

    ``*`` and values that are not ``http(s)://host[:port]`` are dropped with a warning:
    a wildcard would let every web site call the API with a user's token.
    """
    env = os.environ if environ is None else environ
    found: list[str] = []
    for raw in env.get(CORS_ENV, "").split(","):
        origin = raw.strip().rstrip("/")
        if not origin:
            continue
        scheme, sep, rest = origin.partition("://")
        if origin == "*" or not sep or scheme not in ("http", "https") or not rest:
            log.warning(
                "%s: ignoring %r (give exact origins like https://ui.example)", CORS_ENV, raw
            )
            continue
        if "/" in rest or "*" in rest:
            log.warning("%s: ignoring %r (an origin has no path or wildcard)", CORS_ENV, raw)
            continue
        found.append(origin)
    return found


def install(app: FastAPI, services: Services, environ: Mapping[str, str] | None = None) -> None:
    """Add CORS (only if origins are configured) and the secure headers to ``app``.

    Call after the other middleware so the headers also reach their refusals: Starlette
    runs the middleware added last first.
    """
    origins = cors_origins(environ)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Last-Event-ID",
                "X-Request-Id",
            ],
            expose_headers=["X-Request-Id", "Location", "Retry-After"],
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(SecureHeaders, docs_path=app.docs_url)
    services.extras["cors_origins"] = origins
