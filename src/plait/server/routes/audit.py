"""Routes: the audit log (``/api/v1/audit``), for global admins (``audit:read``).

Listing is newest first with filters and cursor pages; ``?format=jsonl`` streams the
matching entries in chain order as JSON lines (one entry per line, every field,
hashes included) for a SIEM or an offline ``verify``. ``/audit/verify`` checks the
whole hash chain on the server and reports the first broken entry.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from plait.security.audit import AuditEntry, verify_chain
from plait.server.deps import Principal, require
from plait.server.errors import ApiError
from plait.server.services import Services, get_services
from plait.store.accounts import AuditFilter

router = APIRouter(tags=["audit"])

ServicesDep = Annotated[Services, Depends(get_services)]
Auditor = Annotated[Principal, Depends(require("audit:read"))]


class AuditEntryOut(BaseModel):
    seq: int
    at: float
    actor: str
    action: str
    resource: str
    outcome: str
    source_ip: str | None
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = None


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    head_seq: int | None = None
    head_hash: str | None = None


def _out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        resource=entry.resource,
        outcome=entry.outcome,
        source_ip=entry.source_ip,
        request_id=entry.request_id,
        details=dict(entry.details),
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


def parse_time(value: str | None, name: str) -> float | None:
    """Epoch seconds or an ISO 8601 time (UTC unless it says otherwise)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(422, f"{name}: not epoch seconds or an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _matches(entry: AuditEntry, f: AuditFilter) -> bool:
    return (
        (f.actor is None or entry.actor == f.actor)
        and (f.action is None or entry.action.startswith(f.action))
        and (f.outcome is None or entry.outcome == f.outcome)
        and (f.since is None or entry.at >= f.since)
        and (f.until is None or entry.at < f.until)
    )


def _jsonl(services: Services, f: AuditFilter) -> Iterator[bytes]:
    for entry in services.accounts.export_audit():
        if _matches(entry, f):
            yield (_out(entry).model_dump_json() + "\n").encode()


@router.get(
    "/audit",
    response_model=AuditPage,
    summary="The audit log",
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def list_audit(
    services: ServicesDep,
    who: Auditor,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="Prefix, e.g. `POST /api/v1/runs`")] = None,
    outcome: Literal["success", "denied", "failed"] | None = None,
    since: Annotated[str | None, Query(description="Epoch seconds or ISO 8601")] = None,
    until: Annotated[str | None, Query(description="Epoch seconds or ISO 8601")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Literal["json", "jsonl"] = "json",
) -> Any:
    """Entries newest first, filtered; ``format=jsonl`` exports every matching entry in
    chain order as JSON lines instead (no paging)."""
    f = AuditFilter(
        actor=actor,
        action=action,
        outcome=outcome,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
    )
    if format == "jsonl":
        return StreamingResponse(_jsonl(services, f), media_type="application/x-ndjson")
    page = services.accounts.audit_entries(f, cursor, limit)
    return AuditPage(items=[_out(e) for e in page.items], next_cursor=page.next_cursor)


@router.get("/audit/verify", response_model=VerifyOut, summary="Verify the hash chain")
def verify_audit(services: ServicesDep, who: Auditor) -> VerifyOut:
    """Check every entry's hash and link; report the first that was edited, removed or
    reordered. Keep ``head_seq``/``head_hash`` elsewhere to detect a cut-off tail."""
    report = verify_chain(services.accounts.export_audit(), services.accounts.audit_key)
    return VerifyOut(
        ok=report.ok,
        checked=report.checked,
        first_bad_seq=report.first_bad_seq,
        problem=report.problem,
        head_seq=report.head_seq,
        head_hash=report.head_hash,
    )


def dumps(entry: AuditEntry) -> str:
    """One entry as a JSON line (what the export writes)."""
    return json.dumps(_out(entry).model_dump(), sort_keys=True)
