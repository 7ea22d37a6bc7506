"""Routes: log in, refresh, log out, and who am I (``/api/v1/auth/…``).

``POST /auth/token`` takes the OAuth2 password form and gives a short-lived access JWT
and a refresh token. The refresh token is valid once: ``POST /auth/refresh`` exchanges
it for a new pair, and presenting an already used one revokes the whole login session
(someone else holds a copy). Access tokens name their session, so ``POST /auth/logout``
ends them too, at once.

Every login and refresh attempt is audited here, with the reason for a refusal; the
client gets one message for an unknown user and a wrong password alike, and both take
the time of one argon2 verification, so neither answers nor timings reveal who exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Request, Response
from pydantic import BaseModel, Field

from plait.errors import NotFound
from plait.security.passwords import hash_password, needs_rehash, verify_password
from plait.security.rbac import RoleBinding
from plait.security.tokens import RefreshFamily, hash_token
from plait.server import audit
from plait.server.deps import (
    Authenticated,
    Principal,
    check,
    invalidate_principals,
    maybe_principal,
    unauthorized,
)
from plait.server.errors import ApiError
from plait.server.ratelimit import client_address, rate_limit, record_failure, take
from plait.server.routes import mfa
from plait.server.routes.mfa import check_factor
from plait.server.services import Services, get_services
from plait.store.accounts import LoginSession, User

router = APIRouter(tags=["auth"])

LOGIN_FAILED = "invalid username or password"
LOGIN_PATH = "/api/v1/auth/token"
#: The refresh rules: the composition root may put other ones in ``services.extras``.
DEFAULT_REFRESH = RefreshFamily()

ServicesDep = Annotated[Services, Depends(get_services)]


class TokenPair(BaseModel):
    """What a login or a refresh returns."""

    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutRequest(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=512)


class RoleOut(BaseModel):
    role: str
    namespace: str | None = Field(description="None: the role holds in every namespace.")


class Me(BaseModel):
    """The caller: a user's session, or an API token acting for its owner."""

    name: str
    kind: str = Field(description="`user` (a login session) or `token` (an API token).")
    user_id: int
    token_id: int | None = None
    roles: list[RoleOut]
    owner_roles: list[RoleOut] | None = Field(
        default=None, description="For a token with roles of its own: its owner's roles."
    )
    scopes: list[str] | None = Field(default=None, description="An API token's scopes.")


def refresh_rules(services: Services) -> RefreshFamily:
    rules = services.extras.get("refresh_family")
    return rules if isinstance(rules, RefreshFamily) else DEFAULT_REFRESH


def _roles(bindings: list[RoleBinding]) -> list[RoleOut]:
    return [RoleOut(role=b.role, namespace=b.namespace) for b in bindings]


def issue_pair(
    services: Services,
    user: User,
    now: float,
    request: Request | None = None,
    second_factor: str | None = None,
) -> TokenPair:
    """A new login session for ``user``: its first refresh token and an access token.
    With ``request``, the session remembers the client's user agent and address."""
    token, record = refresh_rules(services).start(str(user.id), now)
    services.accounts.save_refresh(record)
    if request is not None:
        services.accounts.sessions.record(
            record.family_id,
            user.id,
            now,
            user_agent=request.headers.get("user-agent"),
            source_ip=client_address(request),
            second_factor=second_factor,
        )
    return _pair(services, user.id, token, record.family_id, now)


def _pair(services: Services, user_id: int, refresh: str, family: str, now: float) -> TokenPair:
    roles = [b.role for b in services.accounts.bindings_for("user", user_id)]
    access, _ = services.tokens.issue_access(str(user_id), now=now, roles=roles, session=family)
    return TokenPair(
        access_token=access, refresh_token=refresh, expires_in=services.tokens.access_ttl
    )


@dataclass(frozen=True, slots=True)
class _Denied:
    """A refused login: ``reason`` for the audit only, ``error`` for the client."""

    reason: str
    error: ApiError = field(default_factory=lambda: unauthorized(LOGIN_FAILED))


def _check_login(
    services: Services, request: Request, username: str, password: str, now: float
) -> User | _Denied:
    """The user if the password is good and the account may log in, else the refusal.

    The password is verified first whatever happens next, so every refusal takes the
    time of one argon2 verification. A locked account gets the wrong-password answer —
    even for the right password — and its refusals do not extend the lock.
    """
    accounts = services.accounts
    user = accounts.find_user(username)
    good = verify_password(None if user is None else user.password_hash, password)
    if user is None:
        return _Denied("unknown user")
    if user.locked_until is not None and user.locked_until > now:
        return _Denied("account locked")
    if not good:
        record_failure(services, request, user, now, "wrong password")
        return _Denied("wrong password")
    if user.disabled:
        return _Denied("account disabled")
    if needs_rehash(user.password_hash):
        accounts.set_password(user.id, hash_password(password))
    return user


def _second_factor(
    services: Services, request: Request, user: User, otp: str | None, now: float
) -> str | _Denied | None:
    """How the second factor was given (None: the account has none), or the refusal."""
    mfa = services.accounts.mfa
    state = mfa.get(user.id) if mfa.is_active(user.id) else None  # unseal only if needed
    if state is None or not state.active:
        return None
    if not otp:
        message = "a second factor is required: send otp (a TOTP or recovery code)"
        return _Denied("second factor missing", _mfa_error("mfa_required", message))
    factor = check_factor(services, state, otp, now)
    if factor is None:
        record_failure(services, request, user, now, "wrong second factor")
        message = "wrong or already used one-time code"
        return _Denied("wrong second factor", _mfa_error("mfa_invalid", message))
    return factor


def _mfa_error(code: str, message: str) -> ApiError:
    return ApiError(401, message, code=code, headers={"WWW-Authenticate": "Bearer"})


def _limit_username(services: Services, request: Request, username: str) -> None:
    refusal = take(services, "login_user", username.casefold()[:200])
    if refusal is None:
        return
    if refusal.first:
        details = {"user": username[:200], "reason": "rate limited", "limit": refusal.limit}
        audit.record(services, request, "login", LOGIN_PATH, "denied", details, actor=username)
    raise refusal.error()


@router.post(
    "/auth/token",
    response_model=TokenPair,
    summary="Log in",
    dependencies=[Depends(rate_limit("login"))],
    responses={
        401: {
            "description": "Wrong user name or password (or a locked account); `mfa_required`"
            " or `mfa_invalid` for the second factor."
        },
        429: {"description": "Too many attempts; see `Retry-After`."},
    },
)
def login(
    request: Request,
    services: ServicesDep,
    username: Annotated[str, Form(min_length=1, max_length=200)],
    password: Annotated[str, Form(max_length=4096)],
    otp: Annotated[
        str | None, Form(max_length=32, description="TOTP or recovery code, if enrolled")
    ] = None,
) -> TokenPair:
    """OAuth2 password grant: ``username`` and ``password`` as a form. Needs no token.

    An account with a second factor also needs ``otp``: a current TOTP code or an
    unused recovery code. Without it the answer is 401 with code ``mfa_required``.
    """
    _limit_username(services, request, username)
    now = services.clock()
    found = _check_login(services, request, username, password, now)
    factor = (
        None if isinstance(found, _Denied) else _second_factor(services, request, found, otp, now)
    )
    denied = found if isinstance(found, _Denied) else factor
    if isinstance(denied, _Denied):
        details = {"user": username[:200], "reason": denied.reason}
        audit.record(services, request, "login", LOGIN_PATH, "denied", details, actor=username)
        raise denied.error
    assert isinstance(found, User)
    assert not isinstance(factor, _Denied)
    services.accounts.record_login_success(found.id, now)
    pair = issue_pair(services, found, now, request, factor)
    extra = None if factor is None else {"second_factor": factor}
    audit.record(services, request, "login", LOGIN_PATH, "success", extra, actor=found.name)
    return pair


@router.post(
    "/auth/refresh",
    response_model=TokenPair,
    summary="Exchange a refresh token",
    dependencies=[Depends(rate_limit("refresh"))],
    responses={
        401: {"description": "Unknown, used, expired or revoked refresh token."},
        429: {"description": "Too many attempts; see `Retry-After`."},
    },
)
def refresh(request: Request, body: RefreshRequest, services: ServicesDep) -> TokenPair:
    """A new access and refresh token for a refresh token, which is then used up.
    Presenting a used refresh token again revokes its whole session. Needs no token."""
    now = services.clock()
    accounts = services.accounts
    result = accounts.rotate_refresh(hash_token(body.refresh_token), now, refresh_rules(services))
    resource = "/api/v1/auth/refresh"
    new = result.new_record
    found = accounts.user_with_bindings(int(new.subject)) if result.ok and new else None
    if new is None or found is None or found[0].disabled:
        reason = result.reason if not result.ok else "account disabled or deleted"
        if new is not None:
            accounts.revoke_family(new.family_id, now)
        audit.record(services, request, "refresh", resource, "denied", {"reason": reason})
        invalidate_principals(services)
        if reason == "reused":
            raise unauthorized("refresh token reused: the session was revoked; log in again")
        raise unauthorized("invalid refresh token", invalid=True)
    user = found[0]
    assert result.token is not None  # set whenever ok
    pair = _pair(services, user.id, result.token, new.family_id, now)
    audit.record(services, request, "refresh", resource, "success", actor=user.name)
    return pair


@router.post("/auth/logout", status_code=204, summary="Log out")
def logout(
    services: ServicesDep,
    who: Annotated[Principal | None, Depends(maybe_principal)],
    body: LogoutRequest | None = None,
) -> Response:
    """End the session of the refresh token in the body and/or of the access token
    used to call. Unknown tokens are ignored: logging out twice is not an error."""
    now = services.clock()
    accounts = services.accounts
    families: set[str] = set()
    if body is not None and body.refresh_token:
        record = accounts.find_refresh(hash_token(body.refresh_token))
        if record is not None:
            families.add(record.family_id)
    if who is not None and who.session is not None:
        families.add(who.session)
    for family in families:
        accounts.revoke_family(family, now)
        invalidate_principals(services)
    return Response(status_code=204)


@router.get("/auth/me", response_model=Me, summary="Who am I")
def me(who: Authenticated) -> Me:
    """The caller's name, roles and (for an API token) scopes. Any valid token may ask."""
    return Me(
        name=who.subject,
        kind=who.kind,
        user_id=who.user_id,
        token_id=who.id if who.kind == "token" else None,
        roles=_roles(who.bindings),
        owner_roles=None if who.owner_bindings is None else _roles(who.owner_bindings),
        scopes=None if who.scopes is None else sorted(who.scopes),
    )


# -- sessions --------------------------------------------------------------------------
class SessionOut(BaseModel):
    """An active login session (a refresh-token family) of a user."""

    id: str
    user: str
    created_at: float
    last_used_at: float = Field(description="When its latest refresh token was issued.")
    expires_at: float = Field(description="When it ends, refreshed or not.")
    user_agent: str | None
    source_ip: str | None
    second_factor: str | None = Field(description="`totp`, `recovery_code` or null.")
    current: bool = Field(description="The session of the access token used to ask.")


def _session_out(session: LoginSession, who: Principal) -> SessionOut:
    return SessionOut(
        id=session.id,
        user=session.user,
        created_at=session.created_at,
        last_used_at=session.last_used_at,
        expires_at=session.expires_at,
        user_agent=session.user_agent,
        source_ip=session.source_ip,
        second_factor=session.second_factor,
        current=session.id == who.session,
    )


def _own(who: Principal, user_id: int) -> bool:
    """A user acting through a login session on their own sessions; anything else —
    another user's sessions, or any API token — needs ``users:manage``."""
    return who.kind == "user" and who.user_id == user_id


@router.get("/auth/sessions", response_model=list[SessionOut], summary="Login sessions")
def list_sessions(
    services: ServicesDep,
    who: Authenticated,
    user: Annotated[
        str | None, Query(max_length=200, description="Another user's (`users:manage`)")
    ] = None,
) -> list[SessionOut]:
    """The caller's active login sessions, most recently used first; ``?user=NAME``
    lists another user's, with ``users:manage``."""
    user_id = who.user_id
    if user is not None and not (who.kind == "user" and user == who.subject):
        check(who, "users:manage", None)
        found = services.accounts.find_user(user)
        if found is None:
            raise NotFound(f"user {user!r} not found")
        user_id = found.id
    elif not _own(who, user_id):
        check(who, "users:manage", None)
    sessions = services.accounts.sessions.active(services.clock(), user_id=user_id)
    return [_session_out(s, who) for s in sessions]


@router.delete(
    "/auth/sessions/{session_id}",
    status_code=204,
    summary="End a login session",
    responses={404: {"description": "No such active session (of yours)."}},
)
def revoke_session(
    session_id: Annotated[str, Path(max_length=64)], services: ServicesDep, who: Authenticated
) -> Response:
    """End one login session: its refresh token and its access tokens stop working at
    once. Your own sessions, or anyone's with ``users:manage``."""
    now = services.clock()
    session = services.accounts.sessions.get(session_id, now)
    if session is None or not (_own(who, session.user_id) or who.can("users:manage", None)):
        raise NotFound("session not found")  # another's session: not even its existence
    services.accounts.revoke_family(session.id, now)
    invalidate_principals(services)
    return Response(status_code=204)


router.include_router(mfa.router)
