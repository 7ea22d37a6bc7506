"""Routes: alerts — what is pending, firing and recently resolved, and the alert rules.

Rules are global (they may watch every namespace's workflows), so reading needs
``workflows:read`` and writing ``workflows:deploy`` held globally: a viewer reads, an
editor writes, as for workflows. A rule is the same mapping as in
``$PLAIT_HOME/alerts.yaml`` (see docs/operations.md); a rule that came from that file
is changed there, not here (409). Evaluation runs in the scheduler processes
(:mod:`plait.ops.alert_service`); these routes only read and write the store.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Response, status
from pydantic import BaseModel, Field

from plait.errors import ConflictError, NotFound
from plait.ops.alert_rules import KIND_FIELDS, MODELS, RuleError, parse_rule
from plait.ops.alerts import KINDS, UNITS
from plait.server.deps import Principal, require
from plait.server.errors import ApiError
from plait.server.services import Services, get_services
from plait.store.server_alerts import AlertRecord, AlertRuleRecord

router = APIRouter(tags=["alerts"])

ServicesDep = Annotated[Services, Depends(get_services)]
Reader = Annotated[Principal, Depends(require("workflows:read"))]
Writer = Annotated[Principal, Depends(require("workflows:deploy"))]
RuleName = Annotated[str, Path(description="The rule's name.", max_length=200)]

#: What each kind of rule watches, for the rule routes' OpenAPI text (a kind not said
#: here is described by its model's docstring; its own fields are :data:`KIND_FIELDS`).
KIND_TEXT = {
    "failure_rate": "the share of runs that ended `failed` or `timed_out` among those that "
    "ended in the last `window`, once there are `min_runs`; per workflow or for all "
    "(`group_by`)",
    "run_duration": "a run longer than `threshold`: still running, or ended in the last "
    "`window`; per workflow or for all (`group_by`)",
    "step_retries": "a step retried more than `threshold` times in a run started in the "
    "last `window` or still running",
    "schedule_missed": "a schedule due more than `grace` ago without a fire, or with fires "
    "recorded as missed in the last `window`; per schedule",
    "worker_silent": "a worker without a heartbeat for `threshold`; per worker",
    "error_rate": "the share of API requests answered 5xx over the last `window`, once there "
    "are `min_requests`; from the Prometheus metrics at `url` or of this process",
    "http_latency": "the `quantile` of API response times over the last `window`; from the "
    "Prometheus metrics at `url` or of this process",
    "service_down": "`GET url` answers 400 or more, or not within `timeout`",
}


def _watches(kind: str) -> str:
    """What ``kind`` watches, in words."""
    text = KIND_TEXT.get(kind) or " ".join((MODELS[kind].__doc__ or "").split()).rstrip(".")
    return text[:1].lower() + text[1:] if text else f"a {UNITS[kind]} against `threshold`"


def _fields(kind: str) -> str:
    """The kind's own fields, ``threshold`` with its unit."""
    unit = f" (a {UNITS[kind]})"
    return ", ".join(f"`{f}`" + (unit if f == "threshold" else "") for f in KIND_FIELDS[kind])


RULE_TEXT = (
    "A rule is the mapping written in alerts.yaml: a `kind`, the kind's own fields, and "
    "the fields every kind takes — `severity` (info, warning, critical), `for` (how long "
    "the condition must hold before the alert fires), `repeat` (re-notify a firing alert "
    "this often; 0 never), `channels`, `labels`, `description`, `enabled` and "
    "`send_resolved`. Durations are written 30s, 5m, 1h30m (or seconds), ratios 1% or "
    "0.01. The kinds, what each watches, and its own fields:\n\n"
    + "\n".join(f"- `{kind}`: {_watches(kind)}. Fields: {_fields(kind)}." for kind in KINDS)
    + "\n\nThe defaults are in docs/operations.md."
)

EXAMPLE = {
    "kind": "failure_rate",
    "threshold": "1%",
    "window": "1h",
    "min_runs": 5,
    "severity": "warning",
    "for": "5m",
    "channels": ["ops"],
}


class AlertOut(BaseModel):
    id: int | None = Field(description="The alert's id; null while it is only pending.")
    rule: str
    key: str = Field(description="What the alert is about: a workflow, worker, schedule, URL.")
    state: Literal["pending", "firing", "resolved"]
    severity: str
    value: float | None = Field(description="The last value observed, in the rule's unit.")
    threshold: float | None
    summary: str = Field(description="What was observed, in words.")
    labels: dict[str, str]
    info: dict[str, Any] = Field(description="The run or step behind the value, if any.")
    since: dt.datetime = Field(description="Pending: since the condition holds; else fired.")
    resolved_at: dt.datetime | None
    last_notified_at: dt.datetime | None
    notifications: int = Field(description="Notices sent about it (firing, repeats, resolved).")


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None = Field(description="Pass as `?cursor=` for the next page.")


class RuleOut(BaseModel):
    name: str
    kind: str
    source: Literal["api", "file"] = Field(
        description="`file`: from $PLAIT_HOME/alerts.yaml (read-only here)."
    )
    severity: str
    enabled: bool
    channels: list[str]
    spec: dict[str, Any] = Field(description="The rule as written.")
    created_at: dt.datetime
    updated_at: dt.datetime
    updated_by: str | None


class RulePage(BaseModel):
    items: list[RuleOut]


def _time(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)


def _alert(a: AlertRecord) -> AlertOut:
    return AlertOut(
        id=a.id,
        rule=a.rule,
        key=a.key,
        state=a.state,
        severity=a.severity,
        value=a.value,
        threshold=a.threshold,
        summary=a.summary,
        labels=dict(a.labels),
        info=dict(a.info),
        since=dt.datetime.fromtimestamp(a.started_at, dt.UTC),
        resolved_at=_time(a.resolved_at),
        last_notified_at=_time(a.last_notified_at),
        notifications=a.notifications,
    )


def _rule(r: AlertRuleRecord) -> RuleOut:
    spec = dict(r.spec)
    channels = spec.get("channels") or []
    return RuleOut(
        name=r.name,
        kind=r.kind,
        source=r.source,
        severity=str(spec.get("severity") or "warning"),
        enabled=spec.get("enabled") is not False,
        channels=[channels] if isinstance(channels, str) else [str(c) for c in channels],
        spec=spec,
        created_at=dt.datetime.fromtimestamp(r.created_at, dt.UTC),
        updated_at=dt.datetime.fromtimestamp(r.updated_at, dt.UTC),
        updated_by=r.updated_by,
    )


@router.get("/alerts", response_model=AlertPage, summary="Current and recent alerts")
async def list_alerts(
    services: ServicesDep,
    who: Reader,
    state: Annotated[
        Literal["pending", "firing", "resolved"] | None,
        Query(description="Only alerts in this state."),
    ] = None,
    rule: Annotated[str | None, Query(description="Only this rule's alerts.")] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Alerts per page.")] = 100,
) -> AlertPage:
    """Pending alerts, then firing ones (newest first), then resolved ones — the alert
    history, most recently resolved first — with their severity, value and since when,
    a page at a time: `next_cursor` is set while more follow (needs `workflows:read`
    globally)."""
    page = await services.read(
        lambda: services.server_store.alert_page(state=state, rule=rule, cursor=cursor, limit=limit)
    )
    return AlertPage(items=[_alert(a) for a in page.items], next_cursor=page.next_cursor)


@router.get(
    "/alerts/rules",
    response_model=RulePage,
    summary="List alert rules",
    description="Every rule, set through the API or from alerts.yaml, by name.\n\n" + RULE_TEXT,
)
async def list_rules(services: ServicesDep, who: Reader) -> RulePage:
    found = await services.read(services.server_store.list_alert_rules)
    return RulePage(items=[_rule(r) for r in found])


@router.get(
    "/alerts/rules/{name}",
    response_model=RuleOut,
    summary="One alert rule",
    description="The rule as written (`spec`), with its source.\n\n" + RULE_TEXT,
)
async def get_rule(name: RuleName, services: ServicesDep, who: Reader) -> RuleOut:
    try:
        return _rule(await services.read(services.server_store.get_alert_rule, name))
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None


@router.put(
    "/alerts/rules/{name}",
    response_model=RuleOut,
    summary="Create or replace an alert rule",
    description="Checked before it is stored: every mistake is answered at once (422). "
    "Needs `workflows:deploy` globally (an editor).\n\n" + RULE_TEXT,
    responses={
        201: {"description": "Created."},
        409: {"description": "The rule comes from alerts.yaml."},
        422: {"description": "The rule is not valid; `details` lists every problem."},
    },
)
def put_rule(
    name: RuleName,
    services: ServicesDep,
    who: Writer,
    response: Response,
    spec: Annotated[
        dict[str, Any],
        Body(
            description="The rule, as in alerts.yaml: `kind`, `threshold`, `severity`, "
            "`for`, `channels`, … (see the kinds above and docs/operations.md).",
            examples=[EXAMPLE],
        ),
    ],
) -> RuleOut:
    try:
        rule = parse_rule(name, spec)
    except RuleError as exc:
        details = [{"message": p} for p in exc.problems]
        raise ApiError(422, f"invalid alert rule {name!r}", details=details) from None
    try:
        record, created = services.server_store.put_alert_rule(
            name, rule.kind, spec, source="api", actor=who.actor
        )
    except ConflictError as exc:
        raise ApiError(409, str(exc)) from None
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _rule(record)


@router.delete(
    "/alerts/rules/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete an alert rule",
)
def delete_rule(name: RuleName, services: ServicesDep, who: Writer) -> Response:
    """Its open alerts are closed without notifications. A rule from alerts.yaml is
    removed from that file instead (409)."""
    try:
        services.server_store.delete_alert_rule(name, source="api")
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except ConflictError as exc:
        raise ApiError(409, str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
