"""Routes: insights over the run history — failure clusters, duration anomalies, and
suggested retry policies and timeouts (:mod:`plait.ops.insights`).

Reading them takes ``runs:read`` (a viewer's right), and each caller sees only the
runs of the namespaces where they hold it: an insight reveals nothing the runs' own
pages would not. Handlers are plain ``def``: they read the store and may run the
offline model, so FastAPI runs them in its thread pool, off the event loop.

The run detail's ``anomaly`` flag (:func:`run_anomaly`) is computed on read, once per
finished run and process: a run's flag depends only on the runs before it, so it is
kept (a bounded map) and the status poll — the hottest route — pays a dictionary
lookup for it, and nothing at all while the run is still going.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from plait.ops.insights_records import HistoryFilter, RunTiming, as_json
from plait.server.deps import Principal, allowed_namespaces, check, principal
from plait.server.errors import ApiError
from plait.server.routes.runs_views import RunAnomalyOut
from plait.server.services import Services, get_services

if TYPE_CHECKING:
    from plait.engine.state import RunState
    from plait.ops.insights import Insights

router = APIRouter(tags=["insights"])

PERMISSION = "runs:read"
DEFAULT_SINCE = "7d"
#: finished runs whose flag a process keeps
KEPT_FLAGS = 10_000

ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(principal)]
Namespace = Annotated[str | None, Query(max_length=200, description="Only runs of this namespace.")]
Workflow = Annotated[str | None, Query(max_length=200, description="Only runs of this workflow.")]
Since = Annotated[
    str,
    Query(
        max_length=64,
        description="Only what happened since: an ISO 8601 time, or a duration back "
        "from now (`24h`, `7d`).",
    ),
]


# -- the answers -----------------------------------------------------------------------------
class StepCountOut(BaseModel):
    workflow: str
    step: str = Field(description="The step's id (items of a `for_each` step count for it).")
    count: int


class ExampleOut(BaseModel):
    run_id: str
    workflow: str
    step: str = Field(description="The step's key (`id`, or `id[index]` for an item).")
    attempt: int
    error: str = Field(description="The attempt's error, secrets masked.")
    at: dt.datetime = Field(description="When the attempt ended.")


class ClusterOut(BaseModel):
    id: str = Field(description="Stable while the cluster's representative text is the same.")
    label: str = Field(description="The representative error line.")
    count: int = Field(description="Failed attempts in the cluster.")
    first_seen: dt.datetime
    last_seen: dt.datetime
    workflows: list[str] = Field(description="The workflows affected.")
    steps: list[StepCountOut] = Field(description="Where the failures happened, most first.")
    examples: list[ExampleOut] = Field(description="The newest attempts of the cluster.")


class FailuresOut(BaseModel):
    method: Literal["embeddings", "tokens"] = Field(
        description="`embeddings`: the offline sentence model merged texts that mean the "
        "same; `tokens`: compared by their words (the `ai` extra is not installed)."
    )
    clusters: list[ClusterOut] = Field(description="Largest first.")


class AnomalyOut(BaseModel):
    run_id: str
    workflow: str
    step: str | None = Field(description="The step's key; null for the run as a whole.")
    duration: float = Field(description="Seconds it took.")
    median: float = Field(description="Seconds its history took, median.")
    mad: float = Field(description="Median absolute deviation of the history, seconds.")
    score: float = Field(
        description="Robust z-score 0.6745·(duration − median)/MAD; negative when faster."
    )
    direction: Literal["slow", "fast"]
    at: dt.datetime = Field(description="When it ended.")


class AnomaliesOut(BaseModel):
    anomalies: list[AnomalyOut] = Field(description="Newest first.")


class SuggestionOut(BaseModel):
    workflow: str
    step: str = Field(description="The step's id.")
    kind: Literal["retries", "timeout"]
    current: Any = Field(description="The step's setting now (null or 0: none).")
    suggested: dict[str, Any] = Field(
        description='The setting to put under the step, YAML-ready: `{"timeout": "4m"}`, '
        '`{"retries": {"max": 3, "backoff": "exponential", "initial": "2s"}}`.'
    )
    reason: str = Field(description="Why, in one sentence with the numbers.")
    evidence: dict[str, Any] = Field(description="The numbers and some runs behind it.")


class SuggestionsOut(BaseModel):
    suggestions: list[SuggestionOut]


# -- routes ----------------------------------------------------------------------------------
@router.get(
    "/insights/failures", response_model=FailuresOut, summary="Failed step attempts by cause"
)
def failures(
    services: ServicesDep,
    who: PrincipalDep,
    namespace: Namespace = None,
    workflow: Workflow = None,
    since: Since = DEFAULT_SINCE,
    limit: Annotated[int, Query(ge=1, le=200, description="Clusters at most.")] = 20,
) -> FailuresOut:
    """The step attempts that failed or timed out since `since`, grouped by the
    similarity of their error and the last lines of their log (numbers, ids, paths
    and times set aside), largest group first: each with its count, when it was first
    and last seen, the workflows and steps affected and the newest examples. At most
    the newest 5,000 failures are grouped."""
    where, start = _scope(services, who, namespace, workflow, since)
    report = insights_of(services).failures(start, where, limit)
    return FailuresOut.model_validate(as_json(report))


@router.get(
    "/insights/anomalies",
    response_model=AnomaliesOut,
    summary="Runs and steps far slower or faster than usual",
)
def anomalies(
    services: ServicesDep,
    who: PrincipalDep,
    namespace: Namespace = None,
    workflow: Workflow = None,
    since: Since = DEFAULT_SINCE,
    limit: Annotated[int, Query(ge=1, le=500, description="Anomalies at most.")] = 50,
) -> AnomaliesOut:
    """Runs (`step` null) and steps that succeeded since `since` with a duration far
    outside their own history — the median and MAD of the last 50 successful runs of
    the same workflow (and step) before them: robust z-score of 3.5 or more, with at
    least 10 runs of history and a difference of at least 1 s and 20 % of the median.
    Newest first."""
    where, start = _scope(services, who, namespace, workflow, since)
    found = insights_of(services).anomalies(start, where, limit)
    return AnomaliesOut.model_validate({"anomalies": as_json(found)})


@router.get(
    "/insights/suggestions",
    response_model=SuggestionsOut,
    summary="Retry policies and timeouts the history suggests",
)
def suggestions(
    services: ServicesDep,
    who: PrincipalDep,
    namespace: Namespace = None,
    workflow: Workflow = None,
) -> SuggestionsOut:
    """For the steps of the workflows that ran in the last 30 days, judged on their
    last 200 runs under the settings they have now: retries for steps that fail
    transiently or run out of retries, none for steps whose retries never help;
    timeouts from the 99th percentile of successful attempts (× 2) for steps without
    one, with one far above what they need, or hitting theirs often."""
    where, _ = _scope(services, who, namespace, workflow, None)
    found = insights_of(services).suggestions(where, services.runs.plan, services.clock())
    return SuggestionsOut.model_validate({"suggestions": as_json(found)})


# -- shared ----------------------------------------------------------------------------------
def insights_of(services: Services) -> Insights:
    """The process's :class:`~plait.ops.insights.Insights` (made on first use; it keeps
    the embeddings of error texts between calls)."""
    found: Insights | None = services.extras.get("insights")
    if found is None:
        from plait.ops.insights import Insights

        found = services.extras.setdefault("insights", Insights(services.server_store))
    return found


def _scope(
    services: Services,
    who: Principal,
    namespace: str | None,
    workflow: str | None,
    since: str | None,
) -> tuple[HistoryFilter, float]:
    """What the caller may see of what they asked for, and the start of the window."""
    allowed = allowed_namespaces(who, PERMISSION)
    if allowed is not None and (
        not allowed or (namespace is not None and namespace not in allowed)
    ):
        check(who, PERMISSION, namespace)  # 403 with the reason
    start = 0.0
    if since is not None:
        from plait.ops.logsearch import QueryError, parse_since

        try:
            start = parse_since(since, services.clock())
        except QueryError as exc:
            raise ApiError(422, str(exc), code="invalid_query") from None
    return HistoryFilter(workflow=workflow, namespace=namespace, namespaces=allowed), start


class _Flags:
    """Finished runs' anomaly flags by (run id, end time), at most :data:`KEPT_FLAGS`."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, float], RunAnomalyOut | None] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple[str, float]) -> tuple[bool, RunAnomalyOut | None]:
        with self.lock:
            if key in self.found:
                return True, self.found[key]
        return False, None

    def put(self, key: tuple[str, float], flag: RunAnomalyOut | None) -> None:
        with self.lock:
            if len(self.found) >= KEPT_FLAGS:
                del self.found[next(iter(self.found))]
            self.found[key] = flag


def run_anomaly(services: Services, run: RunState) -> RunAnomalyOut | None:
    """The run detail's ``anomaly``: None unless the run succeeded with a duration far
    outside its workflow's history (see :mod:`plait.ops.insights_anomalies`)."""
    if str(run.status) != "succeeded" or run.started_at is None or run.finished_at is None:
        return None
    flags: _Flags | None = services.extras.get("run_anomaly_flags")
    if flags is None:
        flags = services.extras.setdefault("run_anomaly_flags", _Flags())
    key = (run.id, run.finished_at)
    known, flag = flags.get(key)
    if known:
        return flag
    timing = RunTiming(
        run.id,
        run.workflow,
        run.namespace,
        str(run.status),
        run.created_at,
        run.started_at,
        run.finished_at,
        run.version_id,
    )
    found = insights_of(services).run_anomaly(timing)
    if found is not None:
        flag = RunAnomalyOut.model_validate(
            {
                "score": found.score,
                "duration": found.duration,
                "median": found.median,
                "direction": found.direction,
            }
        )
    flags.put(key, flag)
    return flag


__all__ = ["insights_of", "router", "run_anomaly"]
