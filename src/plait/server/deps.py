"""Who is calling, and may they: the authentication and authorisation dependencies.

Every route takes its caller from one of these, so no route can forget a check::

    @router.get("/workflows/{namespace}/{name}")
    def detail(who: Principal = Depends(require("workflows:read", path_param("namespace")))):
        ...

    @router.post("/runs/{id}/cancel")
    def cancel(id: str, who: Principal = Depends(principal)) -> ...:
        run = load(id)                                  # the namespace is known only now
        check(who, "runs:cancel", run.namespace)

* :func:`principal` authenticates ``Authorization: Bearer …`` — an access JWT from
  ``POST /api/v1/auth/token`` or an API token (``plt_…``) — and answers 401 (with
  ``WWW-Authenticate: Bearer``) for anything missing, malformed, expired, revoked or
  belonging to a disabled account. Role bindings are read from the store, never from
  the JWT. The caller found for a token is remembered for :data:`PRINCIPAL_TTL`
  seconds (:class:`PrincipalCache`), so a burst of requests costs one store lookup;
  every route that ends a session, revokes a token, disables or deletes a user or
  changes a role calls :func:`invalidate_principals`, so in this process a logout or
  a revoked role takes effect at once. **Another API replica** (several ``plait serve``
  processes on one PostgreSQL store) does not see that call: it may honour a revoked
  session or token, a disabled account or a removed role for up to ``PRINCIPAL_TTL``
  seconds. Never beyond a token's own expiry: an entry lives no longer than its token.
* :func:`require` builds a dependency that also checks one permission (names in
  :mod:`plait.security.rbac`) in a namespace given literally, taken from the request,
  or ``None`` for resources outside namespaces (users, audit, roles) — which need a
  global binding. It answers 403 with the reason from :func:`~plait.security.rbac.explain`.
* :func:`check` is the same test for routes that learn the namespace only after loading
  the resource; :func:`allowed_namespaces` filters listings.

Both put the caller on ``request.state.principal``, where the audit middleware finds
the actor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from plait.security import rbac
from plait.security.rbac import RoleBinding
from plait.security.tokens import (
    TokenError,
    api_token_usable,
    hash_token,
    is_api_token,
    scope_allows,
)
from plait.server.errors import ApiError
from plait.server.services import Services

log = logging.getLogger(__name__)

#: How often a token's ``last_used_at`` is written: a write per request would make
#: every read a write on SQLite's single writer.
TOUCH_EVERY = 60.0

#: Seconds an authenticated caller is remembered per token (see the module docstring:
#: the bound on how late another replica sees a revocation).
PRINCIPAL_TTL = 2.0
#: Tokens remembered at most (least recently used first out).
PRINCIPAL_CACHE_SIZE = 4096

_bearer = HTTPBearer(
    auto_error=False,
    description="An access token from POST /api/v1/auth/token, or an API token (plt_…).",
)

NamespaceSource = str | Callable[[Request], str | None] | None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``subject`` is the user's name — also for an API token, which acts for its owner —
    and ``id`` the user id or the token id, by ``kind``. ``scopes`` is None for an
    interactive session and the token's scopes for an API token. When a token has
    bindings of its own, ``bindings`` are the token's and ``owner_bindings`` its
    owner's (the token may never exceed its owner); otherwise ``bindings`` are the
    owner's. ``session`` is the login session (refresh family) of an access token.
    """

    subject: str
    kind: Literal["user", "token"]
    id: int
    bindings: list[RoleBinding]
    scopes: frozenset[str] | None = None
    user_id: int = 0
    owner_bindings: list[RoleBinding] | None = None
    session: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller: ``alice`` or ``alice/token:7``."""
        return self.subject if self.kind == "user" else f"{self.subject}/token:{self.id}"

    def can(self, permission: str, namespace: str | None) -> bool:
        """True if this caller may do ``permission`` in ``namespace`` (None: global)."""
        return rbac.allowed(
            self.bindings,
            permission,
            namespace,
            scopes=self.scopes,
            owner_bindings=self.owner_bindings,
        )

    def explain(self, permission: str, namespace: str | None) -> str:
        """Why :meth:`can` answers as it does, for a 403 message."""
        return rbac.explain(
            self.bindings,
            permission,
            namespace,
            scopes=self.scopes,
            owner_bindings=self.owner_bindings,
        )


def unauthorized(message: str = "authentication required", invalid: bool = False) -> ApiError:
    """A 401 in the JSON error shape with the RFC 6750 challenge header."""
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return ApiError(401, message, headers={"WWW-Authenticate": challenge})


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller of this request, or 401. Answered on the event loop
    when the token was seen within :data:`PRINCIPAL_TTL`; otherwise the store's
    blocking reads run in the thread pool."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    if credentials is None or not credentials.credentials:
        raise unauthorized("authentication required: send Authorization: Bearer <token>")
    services: Services = request.app.state.services
    token = credentials.credentials
    cache = principal_cache(services)
    key = hash_token(token)
    now = services.clock()
    who = cache.get(key, now)
    if who is None:
        generation = cache.generation
        found, until = await run_in_threadpool(authenticate, services, token, now)
        cache.put(key, found, until, generation)
        who = found
    request.state.principal = who
    return who


def authenticate(services: Services, token: str, now: float) -> tuple[Principal, float | None]:
    """The caller a bearer token stands for (blocking: reads the store), and when the
    token expires (None: never), or 401."""
    if is_api_token(token):
        return _from_api_token(services, token, now)
    return _from_access_token(services, token, now)


class PrincipalCache:
    """Callers by token hash, each for :data:`PRINCIPAL_TTL` seconds (monotonic) and
    never past its token's expiry (the services' clock); bounded, least recently used
    out. :meth:`invalidate` forgets everyone: the routes that revoke anything call it
    (through :func:`invalidate_principals`), and a lookup that began before it is not
    stored (``generation``), so a revocation cannot be undone by a request in flight."""

    def __init__(self, ttl: float = PRINCIPAL_TTL, size: int = PRINCIPAL_CACHE_SIZE) -> None:
        self.ttl = ttl
        self.size = size
        self.generation = 0
        self._entries: OrderedDict[str, tuple[float, float | None, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, now: float) -> Principal | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            fresh_until, expires, who = entry
            if time.monotonic() >= fresh_until or (expires is not None and now >= expires):
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return who

    def put(self, key: str, who: Principal, expires: float | None, generation: int) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if generation != self.generation:
                return
            self._entries[key] = (time.monotonic() + self.ttl, expires, who)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def invalidate(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()


_cache_lock = threading.Lock()


def principal_cache(services: Services) -> PrincipalCache:
    """The services' cache of callers (one per app, created on first use)."""
    cache = services.extras.get("principal_cache")
    if cache is None:
        with _cache_lock:
            cache = services.extras.setdefault("principal_cache", PrincipalCache())
    assert isinstance(cache, PrincipalCache)
    return cache


def invalidate_principals(services: Services) -> None:
    """Forget every remembered caller, so the next request of each token reads the
    store again. Call after ending a session, revoking a token, disabling or deleting
    a user, or changing a role binding."""
    principal_cache(services).invalidate()


def _from_access_token(
    services: Services, token: str, now: float
) -> tuple[Principal, float | None]:
    try:
        claims = services.tokens.decode_access(token, now)
    except TokenError as exc:
        log.info("access token refused: %s", exc.reason)
        message = "the token has expired" if exc.reason == "expired" else "invalid token"
        raise unauthorized(message, invalid=True) from None
    if not claims.sub.isdigit():
        raise unauthorized("invalid token", invalid=True)
    found = services.accounts.user_with_bindings(int(claims.sub))
    if found is None:
        raise unauthorized("invalid token", invalid=True)
    user, bindings = found
    if user.disabled:
        raise unauthorized("the account is disabled", invalid=True)
    if claims.session is not None and not services.accounts.session_active(claims.session, now):
        raise unauthorized("the session has ended; log in again", invalid=True)
    who = Principal(
        subject=user.name,
        kind="user",
        id=user.id,
        bindings=bindings,
        user_id=user.id,
        session=claims.session,
    )
    return who, float(claims.exp + services.tokens.leeway)


def _from_api_token(services: Services, token: str, now: float) -> tuple[Principal, float | None]:
    found = services.accounts.token_identity(hash_token(token))
    if found is None:
        raise unauthorized("invalid token", invalid=True)
    record, owner = found.token, found.owner
    if not api_token_usable(_whole(record.expires_at), _whole(record.revoked_at), now):
        reason = "revoked" if record.revoked_at is not None else "expired"
        raise unauthorized(f"the API token is {reason}", invalid=True)
    if owner.disabled:
        raise unauthorized("the account is disabled", invalid=True)
    if record.last_used_at is None or now - record.last_used_at >= TOUCH_EVERY:
        services.accounts.touch_api_token(record.id, now)
    own = found.token_bindings
    who = Principal(
        subject=owner.name,
        kind="token",
        id=record.id,
        bindings=own or found.owner_bindings,
        scopes=frozenset(record.scopes),
        user_id=owner.id,
        owner_bindings=found.owner_bindings if own else None,
    )
    return who, record.expires_at


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)


def check(who: Principal, permission: str, namespace: str | None) -> None:
    """Raise 403 unless ``who`` may do ``permission`` in ``namespace`` (None: global)."""
    if not who.can(permission, namespace):
        raise ApiError(
            403,
            who.explain(permission, namespace),
            details={"permission": permission, "namespace": namespace},
        )


def allowed_namespaces(who: Principal, permission: str) -> frozenset[str] | None:
    """The namespaces where ``who`` holds ``permission``; None means every namespace.

    For listings: filter rows by this set instead of checking each one. Token scopes
    and a token owner's own roles narrow it as they narrow :func:`check`.
    """
    if permission not in rbac.PERMISSIONS:
        return frozenset()
    if who.scopes is not None and not scope_allows(who.scopes, rbac.required_scope(permission)):
        return frozenset()
    mine = rbac.namespaces_allowed(who.bindings, permission)
    if who.owner_bindings is None:
        return mine
    owner = rbac.namespaces_allowed(who.owner_bindings, permission)
    if mine is None:
        return owner
    return mine if owner is None else mine & owner


def require(
    permission: str, namespace: NamespaceSource = None
) -> Callable[[Request, Principal], Awaitable[Principal]]:
    """A dependency yielding the caller if they hold ``permission``, else 403.

    ``namespace`` is a literal, a function of the request (see :func:`path_param` and
    :func:`query_param`), or None for resources outside namespaces. An unknown
    permission name is a programming error, refused when the route is defined.
    """
    if permission not in rbac.PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    async def dependency(
        request: Request, who: Annotated[Principal, Depends(principal)]
    ) -> Principal:
        where = namespace(request) if callable(namespace) else namespace
        check(who, permission, where)
        return who

    # Lets a test walk the routes and find what each one requires.
    dependency.__dict__["permission"] = permission
    dependency.__name__ = f"require_{permission.replace(':', '_')}"
    return dependency


def path_param(name: str) -> Callable[[Request], str | None]:
    """The namespace from a path parameter, e.g. ``require("secrets:write",
    path_param("namespace"))`` on ``/secrets/{namespace}/{name}``."""

    def read(request: Request) -> str | None:
        value = request.path_params.get(name)
        return None if value is None else str(value)

    return read


def query_param(name: str, default: str | None = None) -> Callable[[Request], str | None]:
    """The namespace from a query parameter, or ``default`` when it is absent."""

    def read(request: Request) -> str | None:
        return request.query_params.get(name, default)

    return read


Authenticated = Annotated[Principal, Depends(principal)]
"""Annotation for a route parameter that needs a caller but no particular permission."""


async def maybe_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """The caller if the request carries credentials (401 if they are bad), else None:
    for routes that also serve anonymous callers, such as logout by refresh token."""
    if credentials is None or not credentials.credentials:
        return None
    return await principal(request, credentials)
