"""Routes: runs — start, list, detail, cancel, retry, approve and reject (DESIGN §5).

Every route checks its permission in the namespace of the run (or workflow) it
touches, so a role bound to one namespace sees and drives only that namespace's runs.
Store calls block, so handlers either are plain ``def`` (FastAPI runs them in its
thread pool) or hand the blocking part to the pool themselves; the event loop is shared
with the worker and must stay free.

The run rules live in :class:`~plait.runtime.service.RunService`; these handlers only
translate HTTP to its calls and its records to the views of :mod:`.runs_views`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from plait.engine.api import Outcome
from plait.engine.state import RunStatus
from plait.errors import NotFound
from plait.model.inputs import validate_inputs
from plait.runtime.ids import new_run_id
from plait.runtime.service import DecisionError
from plait.server.deps import Principal, check, principal
from plait.server.errors import ApiError
from plait.server.routes import insights, runs_access, runs_logs, workers
from plait.server.routes.runs_views import (
    DecisionBody,
    RetryBody,
    RunDetail,
    RunPage,
    StartRunBody,
    run_detail,
    run_out,
)
from plait.server.services import Services, get_services
from plait.store.base import RunFilter, RunSnapshot

router = APIRouter(tags=["runs"])
router.include_router(runs_logs.router)

ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(principal)]

#: longest accepted ``Idempotency-Key`` (Stripe and the IETF draft use similar bounds)
MAX_KEY_LENGTH = 255
_STATUSES = {str(s) for s in RunStatus}


def detail(services: Services, run_id: str) -> RunDetail:
    """The full view of one run (blocking: call from the thread pool)."""
    return _detail_of(services, services.store.load_run(run_id))


def _detail_of(services: Services, snap: RunSnapshot) -> RunDetail:
    run = snap.run
    run_id = run.id
    plan = services.runs.plan(run.version_id or 0)
    attempts = services.store.attempts(run_id)
    version = runs_access.version_number(services, run.version_id)
    detail = run_detail(plan, run, snap.steps, attempts, version)
    detail.anomaly = insights.run_anomaly(services, run)  # cached once the run has ended
    return workers.with_wait_reasons(services, detail, snap.steps)


# -- start ---------------------------------------------------------------------------------
@router.post(
    "/workflows/{name}/runs",
    response_model=RunDetail,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": RunDetail,
            "description": "The run an earlier request with the same Idempotency-Key started.",
        }
    },
    summary="Start a run",
)
async def start_run(
    name: str,
    body: StartRunBody,
    request: Request,
    response: Response,
    services: ServicesDep,
    who: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> RunDetail:
    """Start a run of the workflow's current version (or `version`). Inputs are checked
    against the declared ones: 422 lists every problem. With an `Idempotency-Key`, a
    repeated request (same workflow, same caller) answers 200 with the run the first
    one started instead of starting another."""
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
        raise ApiError(400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    run_id, created = await run_in_threadpool(_start, services, who, name, body, idempotency_key)
    services.runs.wake()  # from the loop's thread: the pool thread's call may not wake it
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"{request.url.path.split('/workflows/')[0]}/runs/{run_id}"
    return await run_in_threadpool(detail, services, run_id)


def _start(
    services: Services, who: Principal, name: str, body: StartRunBody, key: str | None
) -> tuple[str, bool]:
    """Returns the run's id and whether this request created it."""
    workflow, version = runs_access.workflow_version(services, name, body.version)
    check(who, "runs:start", workflow.namespace)
    plan = services.runs.plan(version.id)
    values = validate_inputs(plan, body.inputs, from_strings=body.coerce)
    run_id = new_run_id(services.clock())
    scope = f"runs:{workflow.namespace}/{name}:{runs_access.subject(who)}"
    if key is not None:
        earlier = services.server_store.remember_idempotency(scope, key, run_id)
        if earlier:
            try:
                services.store.load_run(earlier)
                return earlier, False
            except NotFound:  # the first request died between the two writes
                run_id = earlier
    trigger = {"type": "manual", "origin": "api", "by": runs_access.subject(who)}
    try:
        run = services.runs.start(version, values, trigger=trigger, run_id=run_id)
    except Exception:
        if key is not None:  # nothing started: let a corrected request use the key
            services.server_store.forget_idempotency(scope, key)
        raise
    return run.id, True


# -- read ----------------------------------------------------------------------------------
@router.get("/runs", response_model=RunPage, summary="List runs")
def list_runs(
    services: ServicesDep,
    who: PrincipalDep,
    workflow: Annotated[str | None, Query(description="Only runs of this workflow.")] = None,
    status_: Annotated[
        list[str] | None, Query(alias="status", description="Only these statuses (repeat).")
    ] = None,
    namespace: Annotated[str | None, Query(description="Only this namespace.")] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RunPage:
    """Runs newest first, in the namespaces the caller may read, a page at a time."""
    wanted = tuple(status_ or ())
    unknown = sorted(set(wanted) - _STATUSES)
    if unknown:
        raise ApiError(
            422, f"unknown status {unknown[0]!r}; use one of {', '.join(sorted(_STATUSES))}"
        )
    allowed = runs_access.readable_namespaces(who, "runs:read")
    flt = RunFilter(workflow=workflow, namespace=namespace, status=wanted)
    page = runs_access.list_in(services.store, flt, allowed, cursor, limit)
    items = [run_out(r, runs_access.version_number(services, r.version_id)) for r in page.items]
    return RunPage(items=items, next_cursor=page.next_cursor)


@router.get("/runs/{run_id}", response_model=RunDetail, summary="One run with its steps")
async def get_run(run_id: str, services: ServicesDep, who: PrincipalDep) -> Response:
    """The run with its steps: statuses, attempts, outputs (secrets masked), timings,
    and why each step that is not running is not."""
    # The hot read (status polling): on the loop for SQLite, else one hop to the thread
    # pool; the body is serialised from the model already built, not validated again
    # by FastAPI (``response_model`` still documents it).
    body = await services.read(_read_run, services, who, run_id)
    return Response(body, media_type="application/json")


def _read_run(services: Services, who: Principal, run_id: str) -> bytes:
    snap = services.store.load_run(run_id)
    runs_access.check_readable(who, snap.run, run_id, "runs:read")
    return _detail_of(services, snap).model_dump_json().encode()


# -- control -------------------------------------------------------------------------------
@router.post(
    "/runs/{run_id}/cancel",
    response_model=RunDetail,
    responses={202: {"model": RunDetail, "description": "Stopping: steps are being killed."}},
    summary="Cancel a run",
)
async def cancel_run(
    run_id: str, response: Response, services: ServicesDep, who: PrincipalDep
) -> RunDetail:
    """Cancel: queued and waiting steps end at once, running ones are killed (their
    whole process group), then `finally` steps run. 200 when the run has ended, 202
    while it is still stopping; 409 if it had already finished."""
    run = await run_in_threadpool(_cancel, services, who, run_id)
    services.runs.wake()
    response.status_code = 200 if run.status.terminal else 202
    return await run_in_threadpool(detail, services, run_id)


def _cancel(services: Services, who: Principal, run_id: str) -> Any:
    run = runs_access.readable_run(services, who, run_id, "runs:cancel")
    if run.status.terminal:
        raise ApiError(409, f"run {run_id} has already ended ({run.status})")
    return services.runs.cancel(run_id, f"cancelled by {runs_access.subject(who)}")


@router.post("/runs/{run_id}/retry", response_model=RunDetail, summary="Retry from failure")
async def retry_run(
    run_id: str, services: ServicesDep, who: PrincipalDep, body: RetryBody | None = None
) -> RunDetail:
    """Run a failed, cancelled or timed-out run again from its failures: succeeded steps
    keep their outputs and attempts; the rest run again, on the original version or
    the workflow's current one. 409 while the run is active or when it succeeded."""
    choice = (body or RetryBody()).version
    await run_in_threadpool(_retry, services, who, run_id, choice)
    services.runs.wake()
    return await run_in_threadpool(detail, services, run_id)


def _retry(services: Services, who: Principal, run_id: str, choice: str) -> None:
    run = runs_access.readable_run(services, who, run_id, "runs:retry")
    version_id = None
    if choice == "current":
        version_id = runs_access.workflow_version(services, run.workflow, None)[1].id
    try:
        services.runs.retry(run_id, version_id=version_id)
    except DecisionError as exc:
        raise ApiError(exc.status, str(exc)) from exc


@router.post(
    "/runs/{run_id}/steps/{step}/approve", response_model=RunDetail, summary="Approve a step"
)
async def approve(
    run_id: str,
    step: str,
    services: ServicesDep,
    who: PrincipalDep,
    body: DecisionBody | None = None,
) -> RunDetail:
    """Approve a waiting `approval` step: it succeeds with outputs `approved`,
    `approver` and `comment`. Only the step's `approvers` (if it names any) may."""
    return await _decide(services, who, run_id, step, True, (body or DecisionBody()).comment)


@router.post(
    "/runs/{run_id}/steps/{step}/reject", response_model=RunDetail, summary="Reject a step"
)
async def reject(
    run_id: str,
    step: str,
    services: ServicesDep,
    who: PrincipalDep,
    body: DecisionBody | None = None,
) -> RunDetail:
    """Reject a waiting `approval` step: it fails (not retried) with the comment as its
    error, and the run's `on_error` rules apply."""
    return await _decide(services, who, run_id, step, False, (body or DecisionBody()).comment)


async def _decide(
    services: Services, who: Principal, run_id: str, step: str, approved: bool, comment: str
) -> RunDetail:
    await run_in_threadpool(_decision, services, who, run_id, step, approved, comment)
    services.runs.wake()
    return await run_in_threadpool(detail, services, run_id)


def _decision(
    services: Services, who: Principal, run_id: str, step: str, approved: bool, comment: str
) -> None:
    run = runs_access.readable_run(services, who, run_id, "runs:approve")
    runs_access.check_approver(services, who, run, step)
    name = runs_access.subject(who)
    if approved:
        outcome = Outcome(
            "succeeded", outputs={"approved": True, "approver": name, "comment": comment}
        )
    else:
        because = f": {comment}" if comment else ""
        outcome = Outcome("failed", error=f"rejected by {name}{because}", retryable=False)
    try:
        services.runs.finish_waiting(run_id, step, outcome, expect_uses="approval")
    except DecisionError as exc:
        raise ApiError(exc.status, str(exc)) from exc
