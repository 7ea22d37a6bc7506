"""Routes: drafts — a workflow drafted from a sentence by an LLM connection.

``POST /api/v1/drafts`` asks the model of an ``llm`` connection (the namespace's, then
a global one) for a workflow, validates it as a deploy would, sends the errors back
once for a repair, and answers with the YAML and whatever errors remain. Nothing is
deployed: the UI shows the draft in its editor and the author deploys it. Drafting
needs ``workflows:deploy`` in the namespace (an editor: drafting spends the
connection's tokens on behalf of whoever will deploy the result).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from plait.actions.connection_admin import NAME
from plait.actions.connections import ConnectionSource, UnknownConnection
from plait.ai.draft import MAX_PROMPT_CHARS, DraftInputError, check_prompt, draft_workflow
from plait.ai.llm import LlmError, config_of
from plait.errors import PlaitError
from plait.security.masking import Masker
from plait.server.deps import Principal, allowed_namespaces, check, principal
from plait.server.errors import ApiError
from plait.server.routes.secrets import NAMESPACE
from plait.server.services import Services, get_services

router = APIRouter(tags=["drafts"])

ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(principal)]

PERMISSION = "workflows:deploy"


def may_draft(who: PrincipalDep) -> Principal:
    """403 unless ``who`` may deploy somewhere — checked before the body is read, so a
    viewer is refused whatever it sends; the body's namespace is checked after."""
    if allowed_namespaces(who, PERMISSION) == frozenset():
        check(who, PERMISSION, None)
    return who


DrafterDep = Annotated[Principal, Depends(may_draft)]


class DraftBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        description=f"What the workflow should do, in a sentence or a few "
        f"(at most {MAX_PROMPT_CHARS} characters)."
    )
    connection: str = Field(
        min_length=1, max_length=200, description="The `llm` connection to draft with."
    )
    namespace: str = Field(
        "default",
        max_length=200,
        description="Where the connection is looked up (then the global namespace `*`).",
    )
    model: str | None = Field(
        None, max_length=200, description="A model instead of the connection's default."
    )


class DraftProblem(BaseModel):
    line: int | None = Field(description="1-based line in `source`, null if unknown.")
    column: int | None = Field(description="1-based column, null if unknown.")
    message: str


class DraftUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None = Field(description="USD, when the connection has prices.")


class DraftOut(BaseModel):
    source: str = Field(description="The drafted workflow (YAML text).")
    valid: bool = Field(description="Whether it passes validation as it is.")
    errors: list[DraftProblem] = Field(description="What is still wrong with it.")
    model: str = Field(description="The model that wrote it.")
    usage: DraftUsage = Field(description="Tokens of both calls (draft and repair).")


@router.post(
    "/drafts",
    response_model=DraftOut,
    summary="Draft a workflow from a sentence",
    responses={
        400: {"description": "The connection is not an `llm` one, or lacks a model."},
        404: {"description": "No such connection in the namespace or the global one."},
        422: {"description": "The prompt is empty or too long; an invalid namespace."},
        502: {"description": "The model's provider failed (its message is given)."},
    },
)
async def create_draft(body: DraftBody, services: ServicesDep, who: DrafterDep) -> DraftOut:
    """Ask the model of an `llm` connection for a workflow that does what `prompt`
    says. The answer is validated like a deploy (errors with line and column); when
    invalid, the errors go back to the model once for a repair. Returns the YAML with
    any errors left, the model and the tokens used. Nothing is deployed. Needs
    `workflows:deploy` in `namespace`."""
    if not NAMESPACE.match(body.namespace):
        raise ApiError(422, f"invalid namespace {body.namespace!r}")
    if not NAME.match(body.connection):
        raise ApiError(422, f"invalid connection name {body.connection!r}")
    check(who, PERMISSION, body.namespace)
    try:
        prompt = check_prompt(body.prompt)
    except DraftInputError as exc:
        raise ApiError(422, str(exc), details=[{"loc": ["prompt"], "message": str(exc)}]) from None
    source: ConnectionSource = services.extras["connections"]
    try:
        conn = await run_in_threadpool(source.get, body.namespace, body.connection)
    except UnknownConnection as exc:
        raise ApiError(404, str(exc)) from None
    except PlaitError as exc:
        raise ApiError(400, str(exc)) from None
    try:
        config = config_of(conn)
    except LlmError as exc:
        raise ApiError(400, str(exc)) from None
    if not (body.model or config.model):
        raise ApiError(400, f"connection {body.connection!r} has no default model: give `model`")
    try:
        draft = await draft_workflow(conn, prompt, actions=services.registry, model=body.model)
    except LlmError as exc:
        message = Masker(conn.secrets).mask(str(exc))
        raise ApiError(
            502, f"the model's provider failed: {message}", code="provider_error"
        ) from None
    return DraftOut.model_validate(draft.as_output())
