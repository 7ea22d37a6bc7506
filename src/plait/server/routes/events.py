"""Routes: events — publish an event for ``event`` triggers.

A published event goes to the same outbox as run lifecycle events (with no run), where
the trigger service matches it against every deployed workflow's ``event`` triggers.
Publishing is not tied to a namespace: it needs ``events:publish`` (operator) in any
namespace, since the event may start workflows in several.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field

from plait.server.deps import Principal, allowed_namespaces, check, principal
from plait.server.errors import ApiError
from plait.server.services import Services, get_services

router = APIRouter(tags=["events"])

ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(principal)]

#: Largest payload kept in the outbox, in bytes of JSON.
MAX_PAYLOAD = 256 * 1024


class PublishBody(BaseModel):
    type: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The event type, e.g. `deploy.finished`; triggers match it exactly "
        "or by prefix (`deploy.*`).",
    )
    source: str | None = Field(
        None, max_length=200, description="Who emits it, e.g. `github` (in `event.source`)."
    )
    payload: Any = Field(None, description="Any JSON; `event.payload` in trigger conditions.")


class Published(BaseModel):
    id: int = Field(description="The event's id in the outbox.")


@router.post(
    "/events",
    response_model=Published,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Publish an event",
)
def publish(body: PublishBody, services: ServicesDep, who: PrincipalDep) -> Published:
    """Record an event; workflows whose `event` trigger matches start shortly after
    (needs `events:publish`). 202: matching happens in the scheduler."""
    if allowed_namespaces(who, "events:publish") == frozenset():
        check(who, "events:publish", None)
    if body.type.startswith("run.") or body.type.startswith("step."):
        raise ApiError(422, "run.* and step.* events are emitted by Plait itself")
    from plait.model.inputs import has_lone_surrogate

    if has_lone_surrogate(body.payload) or has_lone_surrogate(body.source or ""):
        raise ApiError(422, "the event contains a lone UTF-16 surrogate, which is not text")
    if len(json.dumps(body.payload)) > MAX_PAYLOAD:
        raise ApiError(413, f"the payload is larger than {MAX_PAYLOAD} bytes of JSON")
    event_id = services.server_store.publish_event(body.type, body.source, body.payload, who.actor)
    return Published(id=event_id)
