"""Routes: administration of users, API tokens and role bindings.

* ``/users`` — ``users:manage`` (global admins). A user may read their own record and
  change their own password with the current one.
* ``/tokens`` — anyone manages their own API tokens (a token never exceeds its owner);
  ``tokens:manage`` (global admins) manages everyone's. A request made with an API
  token can only create tokens with scopes it holds itself.
* ``/roles`` — ``roles:manage`` where the binding applies, and nobody grants or revokes
  a role above their own there (:func:`plait.security.rbac.can_grant`). The last
  enabled global admin cannot be removed, disabled or deleted: that would lock
  everyone out of administration.

Times are epoch seconds, as everywhere in the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from plait.errors import NotFound
from plait.security.passwords import hash_password, verify_password
from plait.security.rbac import ROLES, can_grant
from plait.security.tokens import expand_scopes, new_api_token, scope_allows, validate_scopes
from plait.server import bootstrap
from plait.server.deps import Authenticated, Principal, check, invalidate_principals, require
from plait.server.errors import ApiError
from plait.server.services import Services, get_services
from plait.store.accounts import ApiToken, Binding, SubjectKind, User

router = APIRouter()

ServicesDep = Annotated[Services, Depends(get_services)]
UserAdmin = Annotated[Principal, Depends(require("users:manage"))]
DEFAULT_SCOPES = ("workflows:read", "runs:read")


# -- models ----------------------------------------------------------------------------
class BindingOut(BaseModel):
    id: int
    subject: str = Field(description="`user:NAME` or `token:ID`.")
    role: str
    namespace: str | None = Field(description="None: the role holds in every namespace.")
    created_at: float
    created_by: str | None


class RoleGrant(BaseModel):
    subject: str = Field(
        min_length=1, max_length=120, description="`user:NAME` (or just `NAME`) or `token:ID`."
    )
    role: str = Field(description="viewer, operator, editor or admin")
    namespace: str | None = Field(default=None, description="None: every namespace.")


class UserOut(BaseModel):
    id: int
    name: str
    disabled: bool
    created_at: float
    last_login_at: float | None
    roles: list[BindingOut]


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None = None


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    password: str = Field(max_length=4096)
    role: str | None = Field(default=None, description="viewer, operator, editor or admin")
    namespace: str | None = Field(default=None, description="Where the role holds; none: all")
    admin: bool = Field(default=False, description="Shorthand for role admin, globally.")


class UserPatch(BaseModel):
    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=4096)
    current_password: str | None = Field(
        default=None, max_length=4096, description="Needed to change one's own password."
    )


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The first characters, to tell tokens apart.")
    user: str
    scopes: list[str]
    expires_at: float | None
    revoked_at: float | None
    created_at: float
    last_used_at: float | None


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself: shown this once, never again.")


class TokenPage(BaseModel):
    items: list[TokenOut]
    next_cursor: str | None = None


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(default=list(DEFAULT_SCOPES), max_length=20)
    expires_in: int | None = Field(
        default=None, gt=0, le=10 * 365 * 86400, description="Seconds; none: no expiry."
    )
    user: str | None = Field(default=None, description="Owner (tokens:manage); default: you.")


# -- users -----------------------------------------------------------------------------
def _user_out(services: Services, user: User) -> UserOut:
    bound = services.accounts.list_bindings("user", user.id)
    return UserOut(
        id=user.id,
        name=user.name,
        disabled=user.disabled,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
        roles=[binding_out(b) for b in bound],
    )


def find_user(services: Services, name: str) -> User:
    user = services.accounts.find_user(name)
    if user is None:
        raise NotFound(f"user {name!r} not found")
    return user


@router.get("/users", response_model=UserPage, tags=["users"], summary="List users")
def list_users(
    services: ServicesDep,
    who: UserAdmin,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> UserPage:
    """Users in creation order, with their roles. Needs ``users:manage``."""
    page = services.accounts.list_users(cursor, limit)
    return UserPage(
        items=[_user_out(services, u) for u in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/users", response_model=UserOut, status_code=201, tags=["users"], summary="Create a user"
)
def create_user(body: UserCreate, services: ServicesDep, who: UserAdmin) -> UserOut:
    """A new user, optionally with a role (``roles:manage`` rules apply to it).
    422 for a weak password or a bad name; 409 if the name is taken."""
    role = "admin" if body.admin else body.role
    if role is not None:
        _guard_grant(who, role, body.namespace)
    try:
        user_id = bootstrap.create_user(
            services,
            body.name,
            body.password,
            role=role,
            namespace=body.namespace,
            created_by=who.actor,
        )
    except bootstrap.AccountError as exc:
        raise ApiError(422, str(exc), code="invalid") from None
    return _user_out(services, services.accounts.get_user(user_id))


@router.get("/users/{name}", response_model=UserOut, tags=["users"], summary="One user")
def get_user(name: str, services: ServicesDep, who: Authenticated) -> UserOut:
    """A user and their roles: ``users:manage``, or the user themselves."""
    if who.subject != name:
        check(who, "users:manage", None)
    return _user_out(services, find_user(services, name))


@router.patch("/users/{name}", response_model=UserOut, tags=["users"], summary="Change a user")
def patch_user(name: str, body: UserPatch, services: ServicesDep, who: Authenticated) -> UserOut:
    """Disable or enable a user, or set a password; either ends the user's sessions.
    Users change their own password with ``current_password``; the rest needs
    ``users:manage``."""
    user = find_user(services, name)
    own = who.kind == "user" and who.user_id == user.id
    if not (own and body.disabled is None):
        check(who, "users:manage", None)
    if body.password is not None:
        _set_password(services, user, body, needs_current=own and not who.can("users:manage", None))
    if body.disabled is not None and body.disabled != user.disabled:
        if body.disabled:
            protect_last_admin(services, user.id, "disable")
        services.accounts.disable_user(user.id, body.disabled, now=services.clock())
        invalidate_principals(services)
    return _user_out(services, services.accounts.get_user(user.id))


def _set_password(services: Services, user: User, body: UserPatch, needs_current: bool) -> None:
    assert body.password is not None
    if needs_current and not verify_password(user.password_hash, body.current_password or ""):
        raise ApiError(403, "the current password is wrong")
    weak = bootstrap.password_problems(user.name, body.password)
    if weak:
        raise ApiError(422, weak, code="invalid")
    services.accounts.set_password(user.id, hash_password(body.password))
    services.accounts.revoke_sessions(user.id, services.clock())
    invalidate_principals(services)


@router.delete("/users/{name}", status_code=204, tags=["users"], summary="Delete a user")
def delete_user(name: str, services: ServicesDep, who: UserAdmin) -> Response:
    """Delete a user with their tokens, sessions and roles. Needs ``users:manage``."""
    user = find_user(services, name)
    protect_last_admin(services, user.id, "delete")
    services.accounts.delete_user(user.id)
    invalidate_principals(services)
    return Response(status_code=204)


def _guard_grant(who: Principal, role: str, namespace: str | None) -> None:
    """403 unless ``who`` may bind ``role`` in ``namespace`` (also via a token's owner)."""
    check(who, "roles:manage", namespace)
    for bindings in (who.bindings, who.owner_bindings):
        if bindings is not None and not can_grant(bindings, role, namespace):
            raise ApiError(403, f"you may not grant role {role!r} there: it exceeds your own")


# -- API tokens ------------------------------------------------------------------------
def _token_out(token: ApiToken) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        user=token.user,
        scopes=list(token.scopes),
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
    )


@router.post(
    "/tokens",
    response_model=TokenCreated,
    status_code=201,
    tags=["tokens"],
    summary="Create an API token",
)
def create_token(body: TokenCreate, services: ServicesDep, who: Authenticated) -> TokenCreated:
    """A new API token, returned once. Default scopes: read-only. Creating one for
    another user needs ``tokens:manage``."""
    _tokens_need_a_login(who)
    owner = find_user(services, body.user) if body.user else services.accounts.get_user(who.user_id)
    if owner.id != who.user_id:
        check(who, "tokens:manage", None)
    problems = validate_scopes(body.scopes)
    if problems or not body.scopes:
        raise ApiError(422, "; ".join(problems) or "a token needs at least one scope")
    if who.scopes is not None and not set(body.scopes) <= expand_scopes(who.scopes):
        raise ApiError(403, "a token cannot create a token with scopes it does not have")
    now = services.clock()
    token, token_hash, prefix = new_api_token()
    expires = None if body.expires_in is None else now + body.expires_in
    record = services.accounts.create_api_token(
        owner.id, body.name, token_hash, prefix, body.scopes, expires, now=now
    )
    return TokenCreated(**_token_out(record).model_dump(), token=token)


@router.get("/tokens", response_model=TokenPage, tags=["tokens"], summary="List API tokens")
def list_tokens(
    services: ServicesDep,
    who: Authenticated,
    user: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> TokenPage:
    """Your tokens; with ``tokens:manage``, everyone's (or one ``user``'s)."""
    manager = who.can("tokens:manage", None)
    if user is not None and user != who.subject and not manager:
        check(who, "tokens:manage", None)
    if user is not None:
        owner_id: int | None = find_user(services, user).id
    else:
        owner_id = None if manager else who.user_id
    page = services.accounts.list_api_tokens(owner_id, cursor, limit)
    return TokenPage(items=[_token_out(t) for t in page.items], next_cursor=page.next_cursor)


@router.delete(
    "/tokens/{token_id}", status_code=204, tags=["tokens"], summary="Revoke an API token"
)
def revoke_token(token_id: int, services: ServicesDep, who: Authenticated) -> Response:
    """Revoke one of your tokens, or anyone's with ``tokens:manage``. Idempotent."""
    _tokens_need_a_login(who)
    try:
        token = services.accounts.get_api_token(token_id)
    except NotFound:
        check(who, "tokens:manage", None)  # do not tell others which ids exist
        raise
    if token.user_id != who.user_id:
        check(who, "tokens:manage", None)
    services.accounts.revoke_api_token(token_id, now=services.clock())
    invalidate_principals(services)
    return Response(status_code=204)


def _tokens_need_a_login(who: Principal) -> None:
    """An API token manages tokens only with the ``admin`` scope: otherwise a leaked
    short-lived read token could mint itself a token that never expires, or revoke its
    owner's other tokens."""
    if who.kind == "token" and not scope_allows(who.scopes or (), "admin"):
        raise ApiError(
            403,
            "managing API tokens with an API token needs the admin scope; "
            "log in as the user instead",
        )


# -- role bindings ---------------------------------------------------------------------
def binding_out(binding: Binding) -> BindingOut:
    return BindingOut(
        id=binding.id,
        subject=binding.subject,
        role=binding.role,
        namespace=binding.namespace,
        created_at=binding.created_at,
        created_by=binding.created_by,
    )


def protect_last_admin(services: Services, user_id: int, doing: str) -> None:
    """409 if ``user_id`` is the last enabled global admin: without one, nobody could
    manage users or roles any more (short of the CLI on the server's machine)."""
    if services.accounts.global_admins() == [user_id]:
        raise ApiError(409, f"cannot {doing} the last global admin; make another admin first")


def _subject(services: Services, subject: str) -> tuple[SubjectKind, int]:
    """``user:NAME`` / ``NAME`` / ``token:ID`` → the stored subject; 404 if unknown."""
    kind, _, rest = subject.partition(":")
    if not rest:
        kind, rest = "user", subject
    if kind == "user":
        return "user", find_user(services, rest).id
    if kind == "token" and rest.isdigit():
        return "token", services.accounts.get_api_token(int(rest)).id
    raise ApiError(422, f"subject {subject!r} is not user:NAME or token:ID")


@router.get("/roles", response_model=list[BindingOut], tags=["roles"], summary="Role bindings")
def list_roles(
    services: ServicesDep,
    who: Authenticated,
    subject: str | None = None,
    namespace: str | None = None,
) -> list[BindingOut]:
    """Bindings, optionally of one ``subject`` or in one ``namespace`` (then
    ``roles:manage`` there suffices; otherwise it is needed globally)."""
    check(who, "roles:manage", namespace)
    kind, subject_id = _subject(services, subject) if subject else (None, None)
    found = services.accounts.list_bindings(kind, subject_id, namespace)
    return [binding_out(b) for b in found]


@router.post(
    "/roles", response_model=BindingOut, status_code=201, tags=["roles"], summary="Grant a role"
)
def grant_role(body: RoleGrant, services: ServicesDep, who: Authenticated) -> BindingOut:
    """Bind a role to a user or token in a namespace or globally. Needs ``roles:manage``
    there and a role at least as high as the one granted; 409 if already bound."""
    problems = bootstrap.check_namespace(body.namespace) if body.namespace is not None else []
    if body.role not in ROLES:
        problems.append(f"unknown role {body.role!r} (known: {', '.join(ROLES)})")
    if problems:
        raise ApiError(422, "; ".join(problems))
    _guard_grant(who, body.role, body.namespace)
    kind, subject_id = _subject(services, body.subject)
    binding = services.accounts.grant(
        kind, subject_id, body.role, body.namespace, who.actor, now=services.clock()
    )
    invalidate_principals(services)
    return binding_out(binding)


@router.delete(
    "/roles/{binding_id}", status_code=204, tags=["roles"], summary="Revoke a role binding"
)
def revoke_role(binding_id: int, services: ServicesDep, who: Authenticated) -> Response:
    """Remove a binding; the same rule as granting it applies."""
    try:
        binding = services.accounts.get_binding(binding_id)
    except NotFound:
        check(who, "roles:manage", None)
        raise
    _guard_grant(who, binding.role, binding.namespace)
    if binding.subject_kind == "user" and binding.role == "admin" and binding.namespace is None:
        protect_last_admin(services, binding.subject_id, "remove the role of")
    services.accounts.revoke(binding_id)
    invalidate_principals(services)
    return Response(status_code=204)
