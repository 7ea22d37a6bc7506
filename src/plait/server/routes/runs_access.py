"""Who may see and drive which runs, and the lookups the run routes share.

Kept apart from the handlers so that each rule is written once: a run is checked in
its own namespace; a list shows only the namespaces the caller may read; an approval
step's ``approvers`` narrow who may decide it beyond the ``runs:approve`` permission.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from plait.engine.state import RunState
from plait.errors import NotFound
from plait.security.rbac import RANK, highest_role
from plait.server.deps import Principal, allowed_namespaces, check
from plait.server.errors import ApiError
from plait.server.services import Services
from plait.store import codec
from plait.store.base import Page, RunFilter, Store, VersionRecord
from plait.store.server_records import WorkflowRecord


def subject(who: Principal) -> str:
    """The name decisions and triggers are recorded under (the user's name)."""
    return who.subject


def readable_namespaces(who: Principal, permission: str) -> frozenset[str] | None:
    """Where ``who`` holds ``permission``; None means everywhere."""
    return allowed_namespaces(who, permission)


def readable_run(services: Services, who: Principal, run_id: str, permission: str) -> RunState:
    """The run, if ``who`` holds ``permission`` in its namespace. A run in a namespace
    the caller cannot even read is reported missing, not forbidden, so run ids do not
    reveal which namespaces exist."""
    run = services.store.load_run(run_id).run
    check_readable(who, run, run_id, permission)
    return run


def check_readable(who: Principal, run: RunState, run_id: str, permission: str) -> None:
    """:func:`readable_run` for a run already loaded."""
    allowed = readable_namespaces(who, "runs:read")
    if allowed is not None and run.namespace not in allowed:
        raise NotFound(f"run {run_id} not found")
    check(who, permission, run.namespace)


def workflow_version(
    services: Services, name: str, number: int | None
) -> tuple[WorkflowRecord, VersionRecord]:
    """The deployed workflow and the version to run: ``number``, or the current one."""
    workflow = services.server_store.get_workflow(name)
    if number is None:
        return workflow, services.store.get_version(workflow.version_id)
    return workflow, services.server_store.version(name, number)


def version_number(services: Services, version_id: int | None) -> int | None:
    """The version number of a stored version; cached, since versions never change."""
    if version_id is None:
        return None
    cache: dict[int, int] = services.extras.setdefault("version_numbers", {})
    number = cache.get(version_id)
    if number is None:
        try:
            number = cache[version_id] = services.store.get_version(version_id).version
        except NotFound:
            return None
    return number


def list_in(
    store: Store, flt: RunFilter, allowed: frozenset[str] | None, cursor: str | None, limit: int
) -> Page:
    """A page of runs restricted to the ``allowed`` namespaces (None: all).

    The cursor is a position in the newest-first order of every run, so each allowed
    namespace is read from the same position and the pages are merged: at most
    ``limit`` rows per namespace, however many runs the other namespaces hold.
    """
    if allowed is None:
        return store.list_runs(flt, cursor, limit)
    if flt.namespace is not None:
        wanted = [flt.namespace] if flt.namespace in allowed else []
    else:
        wanted = sorted(allowed)
    pages = [
        store.list_runs(RunFilter(flt.workflow, ns, flt.status), cursor, limit) for ns in wanted
    ]
    return merge_pages(pages, limit)


def merge_pages(pages: Iterable[Page], limit: int) -> Page:
    pages = list(pages)
    if len(pages) == 1:
        return pages[0]
    newest_first = heapq.merge(
        *(p.items for p in pages), key=lambda r: (r.created_at, r.id), reverse=True
    )
    items = [r for _, r in zip(range(limit + 1), newest_first, strict=False)]
    more = len(items) > limit or any(p.next_cursor for p in pages)
    items = items[:limit]
    last = items[-1] if items else None
    if not more or last is None:
        return Page(items=items, next_cursor=None)
    return Page(items=items, next_cursor=codec.encode_cursor(last.created_at, last.id))


def check_approver(services: Services, who: Principal, run: RunState, step: str) -> None:
    """Refuse (403) a decider the step's ``approvers`` do not name.

    ``user:NAME`` matches that user; ``role:NAME`` anyone whose role in the run's
    namespace (or globally) is that one or a higher one — roles include the ones below
    them (see :mod:`plait.security.rbac`). An entry that is an expression cannot be
    judged here and matches nobody, so a templated list fails closed.
    """
    approvers = _approvers(services, run, step)
    if not approvers:
        return
    name = subject(who)
    held = highest_role(who.bindings, run.namespace)
    for entry in approvers:
        kind, _, value = str(entry).partition(":")
        if kind == "user" and value == name:
            return
        if kind == "role" and held is not None and value in RANK and RANK[held] >= RANK[value]:
            return
    shown = ", ".join(str(a) for a in approvers)
    raise ApiError(403, f"step {step!r} may be decided only by {shown}")


def _approvers(services: Services, run: RunState, step: str) -> list[Any]:
    snap_steps = {s.key: s for s in services.store.load_run(run.id).steps}
    state = snap_steps.get(step)
    if state is None:
        raise NotFound(f"run {run.id} has no step {step!r}")
    node = services.runs.plan(run.version_id or 0).nodes.get(state.node)
    raw = node.with_.get("approvers") if node is not None else None
    if raw is None:
        return []
    return list(raw) if isinstance(raw, list | tuple) else [raw]
