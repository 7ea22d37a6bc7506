"""Routes: connections — named, typed credential sets that steps use by name.

A connection is answered with its public config and which credentials are set
(``"secrets": {"password": true}``), never with a credential: those are sealed by the
store (:mod:`plait.store.server_connections`) and only a run or a test unseals them.
Writing validates the config against its type's ``Config`` model (422 naming each
field) and keeps every stored credential the body leaves out (see
:mod:`plait.actions.connection_admin`).

Permissions follow secrets, which connections hold: reading needs ``workflows:read``
(a viewer: the editor's connection picker shows names and hosts), writing needs
``secrets:write`` (an editor, like writing a secret) and testing needs ``runs:start``
(an operator: a test reaches out to the other side, as a run would). The namespace
``*`` holds global connections, used by every namespace after its own; it needs a
global role binding.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from plait.actions.connection_admin import (
    NAME,
    TEST_TIMEOUT,
    ConnectionConfigError,
    check_connection,
    describe_types,
    prepare,
    secret_status,
)
from plait.actions.connections import ConnectionTypes, default_types
from plait.errors import NotFound, PlaitError
from plait.server.audit import record
from plait.server.deps import Principal, allowed_namespaces, check, principal, require
from plait.server.errors import ApiError
from plait.server.routes.secrets import NAMESPACE
from plait.server.services import Services, get_services
from plait.store.server_connections import ConnectionRecord
from plait.store.server_records import GLOBAL_NAMESPACE

router = APIRouter(tags=["connections"])

ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(principal)]

READ, WRITE, TEST = "workflows:read", "secrets:write", "runs:start"


def _rbac_namespace(request: Request) -> str | None:
    """The RBAC namespace of a connection path (None for ``*``: a global binding)."""
    value = str(request.path_params.get("namespace", ""))
    return None if value == GLOBAL_NAMESPACE else value


Reader = Annotated[Principal, Depends(require(READ, _rbac_namespace))]
Writer = Annotated[Principal, Depends(require(WRITE, _rbac_namespace))]
Tester = Annotated[Principal, Depends(require(TEST, _rbac_namespace))]


class ConnectionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        min_length=1,
        max_length=100,
        description="The connection type (see `GET /api/v1/connection-types`).",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="The type's fields, credentials included. A credential left out keeps "
        "the stored one (same type); `null` clears it.",
    )


class ConnectionOut(BaseModel):
    namespace: str
    name: str
    type: str
    config: dict[str, Any] = Field(description="The public fields (never a credential).")
    secrets: dict[str, bool] = Field(
        description="Each credential field of the type and whether it is set."
    )
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str | None
    updated_by: str | None


class ConnectionPage(BaseModel):
    items: list[ConnectionOut]
    next_cursor: str | None


class ConnectionTypeOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    description: str
    json_schema: dict[str, Any] = Field(
        alias="schema", description="JSON Schema of the type's config."
    )
    secret_fields: list[str] = Field(description="The fields stored encrypted, never shown.")


class ConnectionTypeList(BaseModel):
    items: list[ConnectionTypeOut]
    unavailable: dict[str, str] = Field(
        description="Types that are known but cannot be loaded, and why."
    )


class TestOut(BaseModel):
    ok: bool = Field(description="Whether the other side answered as expected.")
    message: str = Field(description="What answered, or why the test failed (masked).")


def types_of(services: Services) -> ConnectionTypes:
    """The composition root's connection types (the process-wide default otherwise)."""
    found = services.extras.get("connection_types")
    return found if isinstance(found, ConnectionTypes) else default_types()


def _check_path(namespace: str, name: str | None = None) -> None:
    if namespace != GLOBAL_NAMESPACE and not NAMESPACE.match(namespace):
        raise ApiError(
            422, f"invalid namespace {namespace!r}: lower-case letters, digits, - and _, or *"
        )
    if name is not None and not NAME.match(name):
        raise ApiError(
            422,
            f"invalid connection name {name!r}: letters, digits, _, - and ., "
            "starting with a letter or digit",
        )


def _unstorable(value: Any) -> bool:
    """Text no database stores as given: a lone surrogate or a NUL character."""
    if isinstance(value, str):
        return "\x00" in value or (not value.isascii() and _has_surrogate(value))
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _out(record: ConnectionRecord, types: ConnectionTypes) -> ConnectionOut:
    return ConnectionOut(
        namespace=record.namespace,
        name=record.name,
        type=record.type,
        config=dict(record.config),
        secrets=secret_status(types, record.type, record.secret_fields),
        created_at=dt.datetime.fromtimestamp(record.created_at, dt.UTC),
        updated_at=dt.datetime.fromtimestamp(record.updated_at, dt.UTC),
        created_by=record.created_by,
        updated_by=record.updated_by,
    )


def require_reader(who: Principal) -> None:
    """403 unless ``who`` may read workflows in some namespace (a viewer anywhere):
    for catalogues that belong to no namespace (connection types, actions)."""
    if allowed_namespaces(who, READ) == frozenset():
        check(who, READ, None)


@router.get("/connection-types", response_model=ConnectionTypeList, summary="List connection types")
def list_types(services: ServicesDep, who: PrincipalDep) -> ConnectionTypeList:
    """Every connection type (built-in and from installed plugins) with the JSON Schema
    of its config and the names of its credential fields — what a form needs. Needs
    `workflows:read` in some namespace."""
    require_reader(who)
    found, broken = describe_types(types_of(services))
    items = [
        ConnectionTypeOut(
            name=t["name"],
            description=t["description"],
            json_schema=t["schema"],
            secret_fields=t["secret_fields"],
        )
        for t in found
    ]
    return ConnectionTypeList(items=items, unavailable=broken)


@router.get("/connections", response_model=ConnectionPage, summary="List connections")
def list_connections(
    services: ServicesDep,
    who: PrincipalDep,
    namespace: Annotated[
        str | None, Query(description="Only this namespace (`*`: global).")
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the page before.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> ConnectionPage:
    """Connections by namespace and name in the namespaces where the caller holds
    `workflows:read` (global ones, namespace `*`, need a global binding). Public config
    only; `secrets` says which credentials are set."""
    if namespace is not None:
        _check_path(namespace)
        check(who, READ, None if namespace == GLOBAL_NAMESPACE else namespace)
    allowed = allowed_namespaces(who, READ)
    page = services.server_store.list_connections(
        namespace, namespaces=allowed, cursor=cursor, limit=limit
    )
    types = types_of(services)
    return ConnectionPage(items=[_out(r, types) for r in page.items], next_cursor=page.next_cursor)


@router.get(
    "/connections/{namespace}/{name}", response_model=ConnectionOut, summary="One connection"
)
def get_connection(namespace: str, name: str, services: ServicesDep, who: Reader) -> ConnectionOut:
    """A connection's type, public config and which credentials are set — never a
    credential (needs `workflows:read`)."""
    _check_path(namespace, name)
    return _out(services.server_store.get_connection(namespace, name), types_of(services))


@router.put(
    "/connections/{namespace}/{name}",
    response_model=ConnectionOut,
    responses={201: {"model": ConnectionOut, "description": "Created"}},
    summary="Create or replace a connection",
)
def put_connection(
    namespace: str,
    name: str,
    body: ConnectionBody,
    response: Response,
    services: ServicesDep,
    who: Writer,
) -> ConnectionOut:
    """Create (201) or replace (200) a connection (needs `secrets:write`). The config is
    validated by the type's model: 422 names each bad field. Credentials are stored
    encrypted; one left out of `config` keeps its stored value."""
    _check_path(namespace, name)
    if _unstorable(body.config) or _unstorable(body.type):
        raise ApiError(422, "the config holds a NUL character or a lone surrogate")
    store = services.server_store
    types = types_of(services)
    try:
        stored = store.unsealed_connection(namespace, name)
    except NotFound:
        stored = None
    try:
        public, secrets = prepare(
            types,
            body.type,
            body.config,
            stored.record.type if stored else None,
            stored.secrets if stored else None,
        )
    except ConnectionConfigError as exc:
        details = [{"loc": ["config", *p["loc"]], "message": p["message"]} for p in exc.problems]
        raise ApiError(422, str(exc), details=details) from None
    except PlaitError as exc:
        raise ApiError(422, str(exc), details=[{"loc": ["type"], "message": str(exc)}]) from None
    created = store.put_connection(namespace, name, body.type, public, secrets, who.subject)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _out(store.get_connection(namespace, name), types)


@router.delete(
    "/connections/{namespace}/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a connection",
)
def delete_connection(namespace: str, name: str, services: ServicesDep, who: Writer) -> Response:
    """Delete a connection and its credentials (needs `secrets:write`). Steps that use
    it fail from then on with a message naming it."""
    _check_path(namespace, name)
    services.server_store.delete_connection(namespace, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/connections/{namespace}/{name}/test",
    response_model=TestOut,
    summary="Test a connection",
)
async def probe_connection(
    namespace: str, name: str, request: Request, services: ServicesDep, who: Tester
) -> TestOut:
    """Reach the other side with the stored connection (a `SELECT 1`, an SMTP `NOOP`, a
    broker handshake) and say what answered (needs `runs:start`). A failure is
    `{"ok": false}` with the reason, not an error status; the test is bounded by a
    timeout and its message never shows a credential."""
    _check_path(namespace, name)
    store = services.server_store
    stored = await run_in_threadpool(store.unsealed_connection, namespace, name)
    timeout = float(services.extras.get("connection_test_timeout", TEST_TIMEOUT))
    found = stored.record
    result = await check_connection(
        types_of(services), found.type, found.config, stored.secrets, within=timeout
    )
    await run_in_threadpool(
        record,
        services,
        request,
        "connections.test",
        f"connections/{namespace}/{name}",
        "success" if result.ok else "failed",
        {"type": found.type, "ok": result.ok},
    )
    return TestOut(ok=result.ok, message=result.message)
