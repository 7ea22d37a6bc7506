"""Route: search the log lines of every run the caller may read (``GET /logs?q=``).

The database's full-text index answers (see :mod:`plait.store.server_logs`); the query
language is :mod:`plait.ops.logsearch`'s. A caller finds only lines of runs in the
namespaces where they hold ``logs:read``, so a search reveals nothing a run's own log
page would not.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from plait.ops import logsearch
from plait.server.deps import Principal, allowed_namespaces, check, principal
from plait.server.errors import ApiError
from plait.server.services import Services, get_services
from plait.store.server_logs import LogFilter, LogHit

router = APIRouter(tags=["runs"])

PERMISSION = "logs:read"


class LogHitOut(BaseModel):
    id: int = Field(description="The line's id (it orders lines: newer lines, larger ids).")
    run_id: str
    workflow: str
    namespace: str
    step: str | None = Field(description="The step that wrote it; null for the run's own.")
    attempt: int
    stream: str = Field(description="`stdout`, `stderr` or `system`.")
    at: dt.datetime
    line: str = Field(description="The line as stored: secrets already masked.")
    highlight: list[tuple[int, int]] = Field(
        description="The matches in `line`, as `[start, end)` character offsets."
    )


class LogSearchPage(BaseModel):
    items: list[LogHitOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


QUERY_HELP = (
    'Words (all must appear, any case), `"a phrase"`, `prefix*`, `a OR b`, `-excluded`. '
    "Words are not stemmed: `fail*` finds failed and failure."
)


@router.get("/logs", response_model=LogSearchPage, summary="Search log lines across runs")
def search_logs(
    services: Annotated[Services, Depends(get_services)],
    who: Annotated[Principal, Depends(principal)],
    q: Annotated[str, Query(min_length=1, max_length=logsearch.MAX_LENGTH, description=QUERY_HELP)],
    run: Annotated[str | None, Query(max_length=64, description="Only this run.")] = None,
    workflow: Annotated[
        str | None, Query(max_length=200, description="Only runs of this workflow.")
    ] = None,
    step: Annotated[str | None, Query(max_length=300, description="Only this step.")] = None,
    since: Annotated[
        str | None,
        Query(max_length=64, description="Only lines since a duration ago (`2h`) or a time."),
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the page before.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> LogSearchPage:
    """Log lines that match `q`, newest first, from the runs in the namespaces where the
    caller holds `logs:read` (a viewer's right). Lines are stored with secrets masked,
    so a secret can be neither searched for nor shown. Each item names its run,
    workflow, step and attempt, with the ranges of `line` that matched."""
    allowed = allowed_namespaces(who, PERMISSION)
    if allowed == frozenset():
        check(who, PERMISSION, None)  # 403 with the reason
    try:
        for what, value in (("run", run), ("workflow", workflow), ("step", step)):
            logsearch.check_text(what, value)
        query = logsearch.parse(q)
        where = LogFilter(
            run_id=run,
            workflow=workflow,
            step=step,
            since=logsearch.parse_since(since, services.clock()) if since else None,
            namespaces=allowed,
            before=logsearch.parse_cursor(cursor),
        )
    except logsearch.QueryError as exc:
        raise ApiError(422, str(exc), code="invalid_query") from None
    hits = services.server_store.search_logs(query, where, limit)
    next_cursor = str(hits[-1].id) if len(hits) == limit else None
    return LogSearchPage(items=[_out(h) for h in hits], next_cursor=next_cursor)


def _out(hit: LogHit) -> LogHitOut:
    return LogHitOut(
        id=hit.id,
        run_id=hit.run_id,
        workflow=hit.workflow,
        namespace=hit.namespace,
        step=hit.step,
        attempt=hit.attempt,
        stream=hit.stream,
        at=dt.datetime.fromtimestamp(hit.at, dt.UTC),
        line=hit.line,
        highlight=list(hit.highlight),
    )
