"""The status poll, answered without FastAPI's routing and dependency solving.

``GET /api/v1/runs/{run_id}`` is what every client polling a run calls, many times a
second. Finding the route among a hundred (FastAPI matches included routers one by
one) and solving its dependencies costs several times the read itself, so this ASGI
layer, just inside the app's middleware (headers, metrics, request ids and limits still
apply), answers that one request directly when it is the common case: a GET with no
query, a bearer token already known to the principal cache, a run the caller may read.
Every other case — no token, an unknown or expired one, a run that is missing or
forbidden, any error — goes on to the FastAPI route unchanged, which gives the usual
answer (401, 403, 404) and fills the cache. So the route stays the one definition of
the behaviour and of the OpenAPI document; this only skips work when nothing can go
wrong, and its answer is byte for byte the route's (a test compares them).
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import TYPE_CHECKING

from plait.security.tokens import hash_token
from plait.server.deps import principal_cache

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from plait.server.services import Services

_RUN = re.compile(r"/api/v1/runs/([A-Za-z0-9_.:-]{1,200})")
#: what the metrics and the audit see as the matched route
_ROUTE = SimpleNamespace(path="/api/v1/runs/{run_id}", path_format="/api/v1/runs/{run_id}")


class FastRunReads:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            found = _RUN.fullmatch(scope["path"])
            if found is not None and await self._answer(scope, send, found.group(1)):
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send, run_id: str) -> bool:
        from plait.server.routes.runs import _read_run

        token = _bearer(scope)
        if token is None:
            return False
        services = self.services
        who = principal_cache(services).get(hash_token(token), services.clock())
        if who is None:
            return False
        try:
            body = await services.read(_read_run, services, who, run_id)
        except Exception:  # the route answers it, with the proper status and body
            return False
        scope["route"] = _ROUTE
        scope.setdefault("state", {})["principal"] = who
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True


def _bearer(scope: Scope) -> str | None:
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None
