"""Server-Sent Events for following a run's log until the run ends.

The store is the only source of truth, so a follower polls it — cheaply: one indexed
``read_logs(after_id)`` per tick, and the run itself is reloaded only when its stored
``version`` moved (``run_versions``, one primary-key lookup). Events:

* ``event: log`` — one log line as JSON; its ``id:`` is the line's id, so a client that
  reconnects with ``Last-Event-ID`` continues after it;
* ``event: status`` — the run's status and its steps' statuses, first and on every
  change;
* ``event: end`` — the run has ended and every line was sent; the stream closes.

A comment line goes out when nothing else did for :data:`KEEPALIVE` seconds, so
proxies keep the connection open; the loop stops as soon as the client disconnects.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from plait.store.base import LogLine, Store

#: seconds between polls of the store while nothing happens
POLL_INTERVAL = 0.2
#: seconds of silence after which a keep-alive comment is sent
KEEPALIVE = 15.0
#: lines read per query; a full batch is followed at once by the next
BATCH = 500


def event(name: str, data: Any, event_id: int | None = None) -> str:
    """One SSE message. JSON has no raw newlines, so ``data`` is always one line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


@dataclass
class Follow:
    """What to follow: a run's log after ``after`` (only ``step`` when given)."""

    store: Store
    run_id: str
    after: int = 0
    step: str | None = None
    poll_interval: float = POLL_INTERVAL
    keepalive: float = KEEPALIVE


async def follow(
    spec: Follow,
    render: Callable[[LogLine], dict[str, Any]],
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """Yield SSE messages until the run has ended and its log is drained, or until
    ``disconnected()`` says the client went away."""
    store, after = spec.store, spec.after
    seen_version, ended = -1, False
    status: dict[str, Any] = {}
    quiet_since = time.monotonic()
    while not await disconnected():
        versions = await run_in_threadpool(store.run_versions, [spec.run_id])
        version = versions.get(spec.run_id, seen_version)
        if version != seen_version and not ended:
            seen_version = version
            status, ended = await run_in_threadpool(_status, store, spec.run_id)
            yield event("status", status)
            quiet_since = time.monotonic()
        lines = await run_in_threadpool(store.read_logs, spec.run_id, after, BATCH, spec.step)
        for line in lines:
            yield event("log", render(line), line.id)
            after = line.id
        if lines:
            quiet_since = time.monotonic()
        if len(lines) == BATCH:
            continue
        if ended:  # the final status was read before this last drain of the log
            yield event("end", {"status": status["status"], "after": after})
            return
        if time.monotonic() - quiet_since >= spec.keepalive:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(spec.poll_interval)


def _status(store: Store, run_id: str) -> tuple[dict[str, Any], bool]:
    snap = store.load_run(run_id)
    run = snap.run
    data = {
        "status": str(run.status),
        "reason": run.reason,
        "error": run.error,
        "steps": {s.key: str(s.status) for s in snap.steps},
    }
    return data, run.status.terminal
