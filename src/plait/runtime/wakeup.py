"""Wake-ups across processes: PostgreSQL ``LISTEN/NOTIFY``, with polling as the fallback.

One :class:`Wakeups` per process holds one dedicated connection (outside the pool) that
listens on four channels, and hands what arrives to whoever waits in this process:

``plait_ready``
    A transaction queued steps (a run started, a step finished and its successors are
    ready but the committer did not take them, a held run was admitted). The store sends
    it inside that transaction, so it arrives only once the steps are visible, and only
    once per transaction however many steps it queued. Workers claim at once instead of
    at their next poll.
``plait_runs`` / ``plait_logs`` (payload: the run id)
    A followed run changed, or got log lines. Log followers (SSE, on any API replica)
    read at once instead of at their next poll.
``plait_follow`` (payload: the run id)
    Someone started following a run, somewhere. Sending ``plait_runs``/``plait_logs``
    for every commit would put every commit through PostgreSQL's notification lock,
    which serialises committing transactions; so a process only notifies for runs a
    follower announced in the last :data:`FOLLOW_TTL` seconds (followers repeat the
    announcement every :data:`FOLLOW_EVERY` seconds).

Nothing here is needed for correctness: every waiter also polls, so a notification
lost while the listener reconnects only costs one poll interval. After a reconnect every
waiter is woken once, to make up for what may have been missed meanwhile. On SQLite
there is one process and no listener; the in-process wake (``RunService.wake``) does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from plait.runtime.backoff import Backoff

log = logging.getLogger(__name__)

READY = "plait_ready"
RUNS = "plait_runs"
LOGS = "plait_logs"
FOLLOW = "plait_follow"
CHANNELS = (READY, RUNS, LOGS, FOLLOW)
#: seconds a follow announcement lasts, and how often a follower repeats it
FOLLOW_TTL = 30.0
FOLLOW_EVERY = 10.0
#: seconds of silence after which the listener checks that its connection still lives
PING_EVERY = 5.0


class Wakeups:
    """The listener of one process (see the module docstring). Run :meth:`serve` as a
    task; subscribe with :meth:`on_ready` and :meth:`watching`."""

    def __init__(
        self,
        url: str,
        options: Mapping[str, Any] | None = None,
        *,
        watch: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.options = dict(options or {})
        self.watch = watch
        self.clock = clock
        self._ready: list[Callable[[], None]] = []
        self._runs: dict[str, set[asyncio.Event]] = {}
        #: set while the LISTEN connection is up
        self.connected = asyncio.Event()
        #: notifications received, by channel (tests and metrics read it)
        self.received: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self.reconnects = 0

    # -- subscribing ---------------------------------------------------------------------
    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) whenever steps may have become ready."""
        self._ready.append(callback)

    @contextlib.contextmanager
    def watching(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``run_id`` changes or gets log lines (clear it after
        each wait). The follower must also announce itself on ``plait_follow`` (with
        ``store.notify(FOLLOW, run_id)``), or other processes do not notify for it."""
        event = asyncio.Event()
        self._runs.setdefault(run_id, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._runs.get(run_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._runs[run_id]

    # -- the listener --------------------------------------------------------------------
    async def serve(self) -> None:
        """Listen until cancelled; reconnect with capped backoff when the connection or
        the server goes away."""
        import psycopg

        backoff = Backoff(base=0.2, cap=10.0)
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, application_name=_name(), **self.options
                )
            except psycopg.Error as exc:
                delay = backoff.failed()
                log.warning("listener: cannot connect (%s); again in %.1f s", _first(exc), delay)
                await asyncio.sleep(delay)
                continue
            try:
                async with conn:
                    await self._listen(conn, backoff)
            except psycopg.Error as exc:
                delay = backoff.failed()
                log.warning("listener: connection lost (%s); again in %.1f s", _first(exc), delay)
                await asyncio.sleep(delay)
            finally:
                self.connected.clear()

    async def _listen(self, conn: Any, backoff: Backoff) -> None:
        for channel in CHANNELS:
            await conn.execute(f"LISTEN {channel}")
        if backoff.succeeded():
            log.warning("listener: connected again")
        self.reconnects += 1
        self.connected.set()
        self._wake_everyone()  # whatever was notified while nobody listened
        while True:
            async for note in conn.notifies(timeout=PING_EVERY):
                self._dispatch(note.channel, note.payload)
            await conn.execute("SELECT 1")  # a dead connection raises here

    def _dispatch(self, channel: str, payload: str) -> None:
        self.received[channel] = self.received.get(channel, 0) + 1
        if channel == READY:
            for callback in self._ready:
                callback()
        elif channel in (RUNS, LOGS):
            for event in self._runs.get(payload, ()):
                event.set()
        elif channel == FOLLOW and self.watch is not None and payload:
            self.watch(payload, self.clock() + FOLLOW_TTL)

    def _wake_everyone(self) -> None:
        for callback in self._ready:
            callback()
        for events in self._runs.values():
            for event in events:
                event.set()


def _name() -> str:
    """The session's ``application_name``: whose listener it is, in ``pg_stat_activity``."""
    return f"plait-listen {socket.gethostname()}:{os.getpid()}"[:63]


def _first(exc: BaseException) -> str:
    """The first line of a driver error (psycopg's run on with hints and context)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
