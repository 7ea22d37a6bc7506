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
While the database is unavailable (a restart) the stream stays open and reads again
after a pause.

On PostgreSQL the follower need not wait for its next poll: it announces itself on
``plait_follow`` (again every few seconds), so whichever process writes to the run —
a worker on another machine — sends ``plait_logs``/``plait_runs`` with its id on
commit, and this process's listener (:mod:`plait.runtime.wakeup`) wakes the follower at
once. Polling goes on underneath, every :data:`FALLBACK_POLL` seconds while the
listener is connected and every :data:`POLL_INTERVAL` seconds while it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from plait.errors import PlaitError, StoreUnavailable
from plait.runtime.backoff import Backoff
from plait.runtime.wakeup import FOLLOW, FOLLOW_EVERY, Wakeups
from plait.store.base import LogLine, Store

log = logging.getLogger(__name__)

#: seconds between polls of the store while nothing happens
POLL_INTERVAL = 0.2
#: seconds between polls while notifications wake the follower (a safety net only)
FALLBACK_POLL = 1.0
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
    #: the process's listener (PostgreSQL), to be woken by other processes' writes
    wakeups: Wakeups | None = None
    fallback_poll: float = FALLBACK_POLL


async def follow(
    spec: Follow,
    render: Callable[[LogLine], dict[str, Any]],
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """Yield SSE messages until the run has ended and its log is drained, or until
    ``disconnected()`` says the client went away."""
    if spec.wakeups is None:
        async for message in _follow(spec, render, disconnected, None):
            yield message
        return
    with spec.wakeups.watching(spec.run_id) as changed:
        async for message in _follow(spec, render, disconnected, changed):
            yield message


async def _follow(
    spec: Follow,
    render: Callable[[LogLine], dict[str, Any]],
    disconnected: Callable[[], Awaitable[bool]],
    changed: asyncio.Event | None,
) -> AsyncIterator[str]:
    store, after = spec.store, spec.after
    announced = -FOLLOW_EVERY
    seen_version, ended = -1, False
    status: dict[str, Any] = {}
    quiet_since = time.monotonic()
    backoff = Backoff(base=spec.poll_interval, cap=5.0)
    while not await disconnected():
        if changed is not None:
            changed.clear()  # before reading: a change during the reads wakes the wait
            if time.monotonic() - announced >= FOLLOW_EVERY:
                announced = time.monotonic()
                await _announce(store, spec.run_id)
        try:
            versions = await run_in_threadpool(store.run_versions, [spec.run_id])
            version = versions.get(spec.run_id, seen_version)
            if version != seen_version and not ended:
                status, ended = await run_in_threadpool(_status, store, spec.run_id)
                seen_version = version
                yield event("status", status)
                quiet_since = time.monotonic()
            lines = await run_in_threadpool(store.read_logs, spec.run_id, after, BATCH, spec.step)
        except StoreUnavailable:  # the database restarts: keep the stream, read on later
            await asyncio.sleep(backoff.failed())
            if time.monotonic() - quiet_since >= spec.keepalive:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            continue
        backoff.succeeded()
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
        await _pause(spec, changed)


async def _announce(store: Store, run_id: str) -> None:
    """Tell every process that this run is followed (see :mod:`plait.runtime.wakeup`).
    Best effort: without it the follower still polls."""
    notify = getattr(store, "notify", None)
    if notify is None:
        return
    try:
        await run_in_threadpool(notify, FOLLOW, run_id)
    except PlaitError as exc:
        log.warning("run %s: cannot announce the log follower: %s", run_id, exc)


async def _pause(spec: Follow, changed: asyncio.Event | None) -> None:
    """Until the run changes (a notification) or the next poll is due."""
    live = changed is not None and spec.wakeups is not None and spec.wakeups.connected.is_set()
    if changed is None or not live:
        await asyncio.sleep(spec.poll_interval)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.wait(), spec.fallback_poll)


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
