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

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from pydantic import BaseModel, Field

from plait.security.passwords import hash_password, needs_rehash, verify_password
from plait.security.rbac import RoleBinding
from plait.security.tokens import RefreshFamily, hash_token
from plait.server import audit
from plait.server.deps import Authenticated, Principal, maybe_principal, unauthorized
from plait.server.services import Services, get_services
from plait.store.accounts import User

router = APIRouter(tags=["auth"])

LOGIN_FAILED = "invalid username or password"
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


def issue_pair(services: Services, user: User, now: float) -> TokenPair:
    """A new login session for ``user``: its first refresh token and an access token."""
    token, record = refresh_rules(services).start(str(user.id), now)
    services.accounts.save_refresh(record)
    return _pair(services, user.id, token, record.family_id, now)


def _pair(services: Services, user_id: int, refresh: str, family: str, now: float) -> TokenPair:
    roles = [b.role for b in services.accounts.bindings_for("user", user_id)]
    access, _ = services.tokens.issue_access(str(user_id), now=now, roles=roles, session=family)
    return TokenPair(
        access_token=access, refresh_token=refresh, expires_in=services.tokens.access_ttl
    )


def _check_login(services: Services, username: str, password: str, now: float) -> User | str:
    """The user if the credentials are good, else the reason (for the audit only)."""
    accounts = services.accounts
    user = accounts.find_user(username)
    good = verify_password(None if user is None else user.password_hash, password)
    if user is None:
        return "unknown user"
    if not good:
        accounts.record_login_failure(user.id)
        return "wrong password"
    if user.disabled:
        return "account disabled"
    if user.locked_until is not None and user.locked_until > now:
        return "account locked"
    if needs_rehash(user.password_hash):
        accounts.set_password(user.id, hash_password(password))
    return user


@router.post(
    "/auth/token",
    response_model=TokenPair,
    summary="Log in",
    responses={401: {"description": "Wrong user name or password."}},
)
def login(
    request: Request,
    services: ServicesDep,
    username: Annotated[str, Form(min_length=1, max_length=200)],
    password: Annotated[str, Form(max_length=4096)],
    otp: Annotated[str | None, Form(max_length=16, description="TOTP code, if enrolled")] = None,
) -> TokenPair:
    """OAuth2 password grant: ``username`` and ``password`` as a form. Needs no token.

    ``otp`` is accepted for accounts with a second factor (not enrolled by any account
    yet: TOTP enrolment comes with the security release) and ignored otherwise.
    """
    now = services.clock()
    found = _check_login(services, username, password, now)
    resource = "/api/v1/auth/token"
    if isinstance(found, str):
        details = {"user": username[:200], "reason": found}
        audit.record(services, request, "login", resource, "denied", details, actor=username)
        raise unauthorized(LOGIN_FAILED)
    services.accounts.record_login_success(found.id, now)
    pair = issue_pair(services, found, now)
    audit.record(services, request, "login", resource, "success", actor=found.name)
    return pair


@router.post(
    "/auth/refresh",
    response_model=TokenPair,
    summary="Exchange a refresh token",
    responses={401: {"description": "Unknown, used, expired or revoked refresh token."}},
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
