"""Routes: secrets — written, listed and deleted; a value is never read back.

Values are sealed (AES-256-GCM) by the store before they reach the database; the API
answers with metadata only. The namespace ``*`` holds global secrets, used by every
namespace after its own (see :mod:`plait.store.server_secrets`); writing, listing or
deleting there needs a global role binding.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel, Field

from plait.server.deps import Principal, allowed_namespaces, check, principal
from plait.server.errors import ApiError
from plait.server.services import Services, get_services
from plait.store.server_records import GLOBAL_NAMESPACE, SecretRecord

router = APIRouter(tags=["secrets"])

ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(principal)]

#: ``secrets.<name>`` in an expression: an identifier.
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,199}$")
#: Largest secret value accepted, in bytes of UTF-8 (certificates and keys fit).
MAX_VALUE = 64 * 1024


class SecretValue(BaseModel):
    value: str = Field(description="The secret value; stored encrypted, never returned.")


class SecretOut(BaseModel):
    namespace: str
    name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str | None
    updated_by: str | None


class SecretPage(BaseModel):
    items: list[SecretOut]
    next_cursor: str | None


def _out(s: SecretRecord) -> SecretOut:
    return SecretOut(
        namespace=s.namespace,
        name=s.name,
        created_at=dt.datetime.fromtimestamp(s.created_at, dt.UTC),
        updated_at=dt.datetime.fromtimestamp(s.updated_at, dt.UTC),
        created_by=s.created_by,
        updated_by=s.updated_by,
    )


def _scope(namespace: str, name: str | None = None) -> str | None:
    """The RBAC namespace of a secret path (None for ``*``: a global binding)."""
    if namespace != GLOBAL_NAMESPACE and not NAMESPACE.match(namespace):
        raise ApiError(
            422, f"invalid namespace {namespace!r}: lower-case letters, digits, - and _, or *"
        )
    if name is not None and not NAME.match(name):
        raise ApiError(
            422, f"invalid secret name {name!r}: letters, digits and _, not starting with a digit"
        )
    return None if namespace == GLOBAL_NAMESPACE else namespace


@router.put(
    "/secrets/{namespace}/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Write a secret",
)
def put_secret(
    namespace: str, name: str, body: SecretValue, services: ServicesDep, who: PrincipalDep
) -> Response:
    """Create or replace a secret (needs `secrets:write`). The value is write-only."""
    check(who, "secrets:write", _scope(namespace, name))
    if len(body.value.encode()) > MAX_VALUE:
        raise ApiError(413, f"a secret value is at most {MAX_VALUE} bytes")
    services.server_store.put_secret(namespace, name, body.value, who.subject)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/secrets/{namespace}/{name}", response_model=SecretOut, summary="Secret metadata")
def get_secret(namespace: str, name: str, services: ServicesDep, who: PrincipalDep) -> SecretOut:
    """Who wrote the secret and when — never its value (needs `secrets:list`)."""
    check(who, "secrets:list", _scope(namespace, name))
    return _out(services.server_store.get_secret(namespace, name))


@router.delete(
    "/secrets/{namespace}/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a secret",
)
def delete_secret(namespace: str, name: str, services: ServicesDep, who: PrincipalDep) -> Response:
    check(who, "secrets:write", _scope(namespace, name))
    services.server_store.delete_secret(namespace, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/secrets", response_model=SecretPage, summary="List secrets")
def list_secrets(
    services: ServicesDep,
    who: PrincipalDep,
    namespace: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> SecretPage:
    """Secret names and metadata in the namespaces where the caller holds
    `secrets:list` (global secrets, namespace `*`, need a global binding)."""
    if namespace is not None:
        check(who, "secrets:list", _scope(namespace))
    allowed = allowed_namespaces(who, "secrets:list")
    page = services.server_store.list_secrets(
        namespace, namespaces=allowed, cursor=cursor, limit=limit
    )
    return SecretPage(items=[_out(s) for s in page.items], next_cursor=page.next_cursor)
