"""Routes: workflows — deploy, list, detail, versions, diff, rollback, schedules.

Deploying validates the whole file first (every problem as ``line:col: message`` in a
422) and then makes it the current version in one store transaction that also syncs
the workflow's schedules; unchanged text answers 200 and changes nothing. Versions are
immutable: a run is pinned to the version it started on, and a rollback only moves the
"current" pointer.

A workflow in a namespace the caller cannot read is reported missing, not forbidden,
so names do not reveal which namespaces exist. Store calls block, so handlers are plain
``def`` (FastAPI runs them in its thread pool) or hand the work to the pool.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from plait.errors import NotFound, Problem, ValidationError
from plait.model.plan import Plan
from plait.server.deps import Principal, allowed_namespaces, check, principal
from plait.server.errors import ApiError
from plait.server.services import Services, get_services
from plait.store.base import VersionRecord
from plait.store.server_records import FireRecord, ScheduleRecord, WorkflowRecord

router = APIRouter(tags=["workflows"])

ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(principal)]

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
#: Labels the UI filters by (DESIGN §5); any other label key filters the same way.
KNOWN_LABELS = ("stage", "service", "automation", "trigger")


def when(stamp: float | None) -> dt.datetime | None:
    return None if stamp is None else dt.datetime.fromtimestamp(stamp, dt.UTC)


# -- views ---------------------------------------------------------------------------------
class Deployed(BaseModel):
    name: str
    namespace: str
    version: int
    checksum: str
    created: bool = Field(description="False when the text equals the current version.")


class SourceBody(BaseModel):
    source: str = Field(description="The workflow's YAML text.")


class RollbackBody(BaseModel):
    version: int = Field(ge=1, description="The version to make current again.")


class LastRun(BaseModel):
    id: str
    status: str | None
    created_at: dt.datetime | None


class WorkflowOut(BaseModel):
    name: str
    namespace: str
    description: str
    labels: dict[str, str]
    version: int
    checksum: str
    author: str | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    last_run: LastRun | None
    next_fire: dt.datetime | None


class WorkflowPage(BaseModel):
    items: list[WorkflowOut]
    next_cursor: str | None


class InputOut(BaseModel):
    name: str
    type: str
    required: bool
    default: Any = None
    enum: list[Any] | None = None
    secret: bool = False
    description: str | None = None


class WorkflowDetail(WorkflowOut):
    source: str
    inputs: list[InputOut]
    triggers: list[dict[str, Any]]
    steps: int = Field(description="How many action steps the workflow has (all phases).")


class VersionOut(BaseModel):
    version: int
    checksum: str
    author: str | None
    created_at: dt.datetime | None
    current: bool


class VersionSource(VersionOut):
    source: str


class ScheduleOut(BaseModel):
    id: str
    cron: str
    timezone: str
    catch_up: str
    max_catch_up: int
    inputs: dict[str, Any]
    version: int | None
    next_fire: dt.datetime | None
    last_fire: dt.datetime | None
    missed_count: int
    last_missed: dt.datetime | None


class FireOut(BaseModel):
    schedule_id: str
    fire_time: dt.datetime | None
    status: str = Field(description="fired (with its run) or missed")
    run_id: str | None
    recorded_at: dt.datetime | None


class Schedules(BaseModel):
    schedules: list[ScheduleOut]
    fires: list[FireOut] = Field(description="The newest fires and misses, newest first.")


def workflow_out(w: WorkflowRecord) -> dict[str, Any]:
    last = None
    if w.last_run_id is not None:
        last = LastRun(id=w.last_run_id, status=w.last_run_status, created_at=when(w.last_run_at))
    return {
        "name": w.name,
        "namespace": w.namespace,
        "description": w.description,
        "labels": dict(w.labels),
        "version": w.version,
        "checksum": w.checksum,
        "author": w.author,
        "created_at": when(w.created_at),
        "updated_at": when(w.updated_at),
        "last_run": last,
        "next_fire": when(w.next_fire),
    }


def _triggers(plan: Plan) -> list[dict[str, Any]]:
    """The triggers, with a webhook's secret left out and a broker URL's password
    hidden (either may be a literal)."""
    out = []
    for trigger in plan.triggers:
        shown = {k: v for k, v in trigger.items() if k != "secret"}
        if trigger.get("kind") == "webhook":
            shown["signed"] = bool(trigger.get("secret"))
        if isinstance(shown.get("url"), str):
            shown["url"] = _without_password(shown["url"])
        out.append(shown)
    return out


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _inputs(plan: Plan) -> list[InputOut]:
    return [
        InputOut(
            name=i.name,
            type=i.type,
            required=i.required,
            default=None if i.secret else i.default,
            enum=list(i.enum) if i.enum is not None else None,
            secret=i.secret,
            description=i.description,
        )
        for i in plan.inputs.values()
    ]


# -- deploy --------------------------------------------------------------------------------
async def _source(request: Request) -> str:
    """The YAML text: the raw body for YAML/text types, ``{"source"}`` for JSON."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    body = await request.body()
    if media == "application/json":
        try:
            return SourceBody.model_validate(json.loads(body)).source
        except (ValueError, RecursionError) as exc:  # bad or too deeply nested JSON, no "source"
            raise ApiError(422, 'the body must be JSON {"source": "<YAML text>"}') from exc
    if media not in YAML_TYPES:
        raise ApiError(415, 'send the YAML text as application/yaml, or JSON {"source": ...}')
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "the workflow text is not valid UTF-8") from exc


def check_schedules(plan: Plan) -> None:
    """Refuse a schedule the scheduler could not run (croniter accepts more than it)."""
    from plait.triggers.schedule import Schedule

    problems = []
    for index, trigger in enumerate(plan.triggers):
        if trigger.get("kind") != "schedule":
            continue
        try:
            Schedule(
                str(trigger["cron"]),
                str(trigger.get("timezone") or "UTC"),
                trigger.get("catch_up") or "latest",
                int(trigger.get("max_catch_up") or 100),
            )
        except ValueError as exc:
            problems.append(Problem(str(exc), path=("triggers", index, "schedule")))
    if problems:
        raise ValidationError(problems)


def _deploy(services: Services, who: Principal, source: str) -> tuple[Deployed, bool]:
    from plait.model import load_workflow

    if allowed_namespaces(who, "workflows:deploy") == frozenset():  # 403 before 422
        check(who, "workflows:deploy", None)
    loaded = load_workflow(source, "workflow.yaml", services.registry.input_models())
    plan = loaded.plan
    check(who, "workflows:deploy", plan.namespace)
    check_schedules(plan)
    version, created = services.server_store.deploy(
        plan.namespace,
        plan.name,
        source,
        loaded.checksum,
        who.subject,
        description=plan.description,
        labels=plan.labels,
        schedules=plan.triggers,
    )
    out = Deployed(
        name=plan.name,
        namespace=plan.namespace,
        version=version.version,
        checksum=version.checksum,
        created=created,
    )
    return out, created


@router.post(
    "/workflows",
    response_model=Deployed,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": Deployed, "description": "The text equals the current version."},
        409: {"description": "The name is taken in another namespace."},
        422: {"description": "The workflow is not valid: `details` lists every problem."},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {"schema": SourceBody.model_json_schema()},
            },
            "required": True,
        }
    },
    summary="Deploy a workflow",
)
async def deploy(
    request: Request, response: Response, services: ServicesDep, who: PrincipalDep
) -> Deployed:
    """Validate the YAML and make it the workflow's current version (needs
    `workflows:deploy` in the workflow's namespace). 201 with the new version; 200 when
    the text equals the current version. 422 lists every problem as
    `{line, col, message, text}`."""
    source = await _source(request)
    out, created = await run_in_threadpool(_deploy, services, who, source)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"{request.url.path.rstrip('/')}/{out.name}"
    return out


# -- read ----------------------------------------------------------------------------------
def _labels(given: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in given:
        key, sep, value = item.replace("=", ":", 1).partition(":")
        if not sep or not key.strip():
            raise ApiError(400, f"label filter {item!r} must be key:value, e.g. stage:production")
        found[key.strip()] = value.strip()
    return found


@router.get("/workflows", response_model=WorkflowPage, summary="List workflows")
def list_workflows(
    services: ServicesDep,
    who: PrincipalDep,
    namespace: str | None = None,
    label: Annotated[list[str], Query(description="key:value, e.g. stage:production")] = [],  # noqa: B006
    q: Annotated[str | None, Query(max_length=200, description="Search name, description")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> WorkflowPage:
    """Deployed workflows in the namespaces the caller may read, by name, with their
    last run and next scheduled fire. Filter by `namespace`, labels (`label=stage:production`,
    repeatable: all must match) and `q`; page with `cursor`."""
    allowed = allowed_namespaces(who, "workflows:read")
    page = services.server_store.list_workflows(
        namespace, _labels(label), q, cursor, limit, namespaces=allowed
    )
    items = [WorkflowOut(**workflow_out(w)) for w in page.items]
    return WorkflowPage(items=items, next_cursor=page.next_cursor)


def readable(services: Services, who: Principal, name: str) -> WorkflowRecord:
    """The deployed workflow if the caller may read it; missing otherwise."""
    workflow = services.server_store.get_workflow(name)
    allowed = allowed_namespaces(who, "workflows:read")
    if allowed is not None and workflow.namespace not in allowed:
        raise NotFound(f"workflow {name!r} not found")
    return workflow


@router.get("/workflows/{name}", response_model=WorkflowDetail, summary="One workflow")
def workflow_detail(name: str, services: ServicesDep, who: PrincipalDep) -> WorkflowDetail:
    """The workflow with its current version's source, inputs, triggers (webhook
    secrets left out), number of steps, last run and next scheduled fire."""
    workflow = readable(services, who, name)
    version = services.store.get_version(workflow.version_id)
    plan = services.runs.plan(workflow.version_id)
    steps = sum(1 for n in plan.nodes.values() if n.kind == "action")
    return WorkflowDetail(
        **workflow_out(workflow),
        source=version.source,
        inputs=_inputs(plan),
        triggers=_triggers(plan),
        steps=steps,
    )


def _version_out(v: VersionRecord, current: int) -> dict[str, Any]:
    return {
        "version": v.version,
        "checksum": v.checksum,
        "author": v.author,
        "created_at": when(v.created_at),
        "current": v.id == current,
    }


@router.get(
    "/workflows/{name}/versions", response_model=list[VersionOut], summary="Version history"
)
def versions(name: str, services: ServicesDep, who: PrincipalDep) -> list[VersionOut]:
    """Every version, newest first, with its author and checksum."""
    workflow = readable(services, who, name)
    return [
        VersionOut(**_version_out(v, workflow.version_id))
        for v in services.server_store.versions(name)
    ]


@router.get(
    "/workflows/{name}/versions/{number}", response_model=VersionSource, summary="One version"
)
def version_source(
    name: str, number: int, services: ServicesDep, who: PrincipalDep
) -> VersionSource:
    workflow = readable(services, who, name)
    v = services.server_store.version(name, number)
    return VersionSource(**_version_out(v, workflow.version_id), source=v.source)


@router.get(
    "/workflows/{name}/diff",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "A unified diff."}},
    summary="Diff two versions",
)
def diff(
    name: str,
    services: ServicesDep,
    who: PrincipalDep,
    from_: Annotated[int | None, Query(alias="from", ge=1)] = None,
    to: Annotated[int | None, Query(ge=1)] = None,
) -> PlainTextResponse:
    """The unified diff from version `from` to version `to` (default: the current
    version and the one before it). Empty when the two are the same."""
    workflow = readable(services, who, name)
    to = to or workflow.version
    from_ = from_ or max(1, to - 1)
    old, new = services.server_store.version(name, from_), services.server_store.version(name, to)
    lines = difflib.unified_diff(
        old.source.splitlines(keepends=True),
        new.source.splitlines(keepends=True),
        fromfile=f"{name}@v{old.version}",
        tofile=f"{name}@v{new.version}",
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return PlainTextResponse(text, media_type="text/x-diff; charset=utf-8")


# -- rollback ------------------------------------------------------------------------------
@router.post("/workflows/{name}/rollback", response_model=Deployed, summary="Roll back")
def rollback(name: str, body: RollbackBody, services: ServicesDep, who: PrincipalDep) -> Deployed:
    """Make an older version current again (needs `workflows:rollback`). No version is
    written: new runs start on that version, running ones keep theirs. Its schedules,
    labels and description come back with it."""
    workflow = readable(services, who, name)
    check(who, "workflows:rollback", workflow.namespace)
    target = services.server_store.version(name, body.version)
    plan = services.runs.plan(target.id)
    check_schedules(plan)
    version = services.server_store.rollback(
        name,
        body.version,
        description=plan.description,
        labels=plan.labels,
        schedules=plan.triggers,
    )
    return Deployed(
        name=name,
        namespace=workflow.namespace,
        version=version.version,
        checksum=version.checksum,
        created=False,
    )


# -- schedules -----------------------------------------------------------------------------
def _schedule_out(s: ScheduleRecord, numbers: Mapping[int, int]) -> ScheduleOut:
    return ScheduleOut(
        id=s.id,
        cron=s.cron,
        timezone=s.timezone,
        catch_up=s.catch_up,
        max_catch_up=s.max_catch_up,
        inputs=dict(s.inputs),
        version=numbers.get(s.version_id),
        next_fire=when(s.next_fire),
        last_fire=when(s.last_fire),
        missed_count=s.missed_count,
        last_missed=when(s.last_missed),
    )


def _fire_out(f: FireRecord) -> FireOut:
    return FireOut(
        schedule_id=f.schedule_id,
        fire_time=when(f.fire_time),
        status=f.status,
        run_id=f.run_id,
        recorded_at=when(f.recorded_at),
    )


@router.get("/workflows/{name}/schedules", response_model=Schedules, summary="Schedules")
def workflow_schedules(
    name: str,
    services: ServicesDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Schedules:
    """The workflow's schedules with their next fire, and its recent fires and
    recorded misses (downtime under `catch_up: none | latest`, or beyond
    `max_catch_up`)."""
    readable(services, who, name)
    store = services.server_store
    found = store.list_schedules(name)
    numbers = {s.version_id: services.store.get_version(s.version_id).version for s in found}
    return Schedules(
        schedules=[_schedule_out(s, numbers) for s in found],
        fires=[_fire_out(f) for f in store.schedule_fires(name, limit)],
    )
