"""Routes: actions — what ``uses:`` can name, with the JSON Schemas of inputs and
outputs (the editor's palette and its step forms are generated from them).

The list is the server's own :class:`~plait.actions.registry.ActionRegistry`: built-in
actions and those of installed plugin packages (``plait.actions`` entry points). It
belongs to no namespace: any caller who may read workflows somewhere may read it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from plait.server.deps import Principal, principal
from plait.server.errors import ApiError
from plait.server.routes.connections import require_reader
from plait.server.services import Services, get_services

router = APIRouter(tags=["actions"])

ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(principal)]


class ActionOut(BaseModel):
    name: str = Field(description="What a step writes after `uses:`.")
    version: str
    description: str
    source: str = Field(description="`builtin`, or the package that provides the action.")
    input_schema: dict[str, Any] = Field(description="JSON Schema of the step's `with:`.")
    output_schema: dict[str, Any] | None = Field(
        description="JSON Schema of the step's outputs (null: not declared)."
    )


class ActionList(BaseModel):
    items: list[ActionOut]


def _described(services: Services) -> list[dict[str, Any]]:
    return services.registry.describe()


@router.get("/actions", response_model=ActionList, summary="List actions")
def list_actions(services: ServicesDep, who: PrincipalDep) -> ActionList:
    """Every action this server can run, sorted by name, with its version, description,
    source and the JSON Schemas of its input and output (needs `workflows:read` in some
    namespace)."""
    require_reader(who)
    return ActionList(items=[ActionOut(**d) for d in _described(services)])


@router.get("/actions/{name}", response_model=ActionOut, summary="One action")
def get_action(name: str, services: ServicesDep, who: PrincipalDep) -> ActionOut:
    """One action in the shape of the list's items; 404 if no installed action has
    this name."""
    require_reader(who)
    for described in _described(services):
        if described["name"] == name:
            return ActionOut(**described)
    broken = services.registry.broken.get(name)
    if broken is not None:
        raise ApiError(404, f"action {name!r} is installed but failed to load: {broken}")
    raise ApiError(404, f"unknown action {name!r}")
