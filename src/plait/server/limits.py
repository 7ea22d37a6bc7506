"""Request-level guards: a body size limit (413) and a request id on every request."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plait.ops import logging as logctx
from plait.ops.tracing import current as current_tracing
from plait.server.errors import error_response


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with 413, by ``Content-Length`` or while reading
    a chunked body, before a route sees any of it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        too_big = False

        async def limited() -> Message:
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_big = True
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, f"request body is larger than {self.max_bytes} bytes", code="payload_too_large"
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class RequestContext:
    """Give every request an id (``X-Request-Id``, taken from the client when sane) that
    logs, audit entries and error bodies carry; with tracing on, a server span too (see
    :mod:`plait.ops.tracing`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if 0 < len(given) <= 64 and given.isprintable() else None
        request_id = request_id or secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id

        tracing = current_tracing()
        status: Callable[[int], None] = _ignore

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
                status(int(message["status"]))
            await send(message)

        logged = logctx.bind(request_id=request_id)  # JSON logs name the request
        try:
            if tracing is None:
                await self.app(scope, receive, with_id)
                return
            with tracing.server_span(scope, lambda: _span_name(scope)) as status:
                await self.app(scope, receive, with_id)
        finally:
            logctx.reset(logged)


def _ignore(status: int) -> None:
    pass


def _span_name(scope: Scope) -> str:
    """``GET /api/v1/runs/{run_id}``: the route template keeps span names few."""
    from plait.server.metrics import route_template

    return f"{scope.get('method', 'GET')} {route_template(scope)}"
