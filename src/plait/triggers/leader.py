"""Scheduler leadership: of any number of ``plait scheduler`` processes, one leads.

The leader is whoever holds a PostgreSQL *session* advisory lock
(``pg_try_advisory_lock``) on a dedicated connection, outside the pool. The others try
again every :data:`RETRY` seconds. When the leader dies its connection closes, the
server releases the lock, and the next try of another scheduler takes it: a takeover
within a few seconds, with nothing to configure and no extra table.

The leader proves every :data:`CHECK` seconds that its connection (and so its lock)
still lives, with a bounded round trip; when that fails or times out it stops leading at
once, before anyone else can start. A leader cut off by the network does not hold the
lock forever either: its session is ended by the server after
:data:`IDLE_SESSION_TIMEOUT` seconds without a word (``idle_session_timeout``), which
is longer than the leader takes to notice and step down — so two leaders never act at
the same time, and if they did, for a moment, a schedule fire's unique key would still
start its run only once.

On SQLite there is a single process: :class:`AlwaysLeader`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from plait.runtime.backoff import Backoff

log = logging.getLogger(__name__)

#: seconds between a standby's attempts to take the lock
RETRY = 2.0
#: seconds between a leader's checks that its session lives, and the bound on each
CHECK = 1.0
CHECK_TIMEOUT = 3.0
#: seconds after which the server ends a silent leader session (and frees the lock)
IDLE_SESSION_TIMEOUT = 10
#: the advisory lock's key: a stable 64-bit number (advisory locks are per database)
LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"plait-scheduler-leader").digest()[:8], "big", signed=True
)


class AlwaysLeader:
    """The single scheduler of an SQLite store: it always leads."""

    terms = 1

    def leading(self) -> bool:
        return True


class Leadership:
    """Run :meth:`serve` as a task; :meth:`leading` says whether to act now."""

    def __init__(
        self,
        url: str,
        options: Mapping[str, Any] | None = None,
        *,
        retry: float = RETRY,
        check: float = CHECK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.options = dict(options or {})
        self.retry = retry
        self.check = check
        self.clock = clock
        #: how many times this process became the leader
        self.terms = 0
        self._leader = False
        self._confirmed = 0.0

    def leading(self) -> bool:
        """Leader, and confirmed recently (a check that hangs does not count)."""
        return self._leader and self.clock() - self._confirmed <= self.check + CHECK_TIMEOUT

    async def serve(self) -> None:
        """Take and hold the lock until cancelled; reconnect after a lost connection."""
        import psycopg

        backoff = Backoff(base=0.5, cap=10.0)
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=True,
                    application_name=_name("plait-leader"),
                    **self.options,
                )
            except psycopg.Error as exc:
                delay = backoff.failed()
                log.warning(
                    "scheduler leadership: cannot connect (%s); again in %.1f s", exc, delay
                )
                await asyncio.sleep(delay)
                continue
            try:
                async with conn:
                    await self._hold(conn, backoff)
            except (psycopg.Error, TimeoutError) as exc:
                delay = backoff.failed()
                self._step_down(f"its database connection failed ({exc})")
                await asyncio.sleep(delay)
            finally:
                self._step_down("the scheduler stops")

    async def _hold(self, conn: Any, backoff: Backoff) -> None:
        import psycopg

        try:  # a session that goes silent (a partition) is ended, lock and all
            await _bounded(conn.execute(f"SET idle_session_timeout = '{IDLE_SESSION_TIMEOUT}s'"))
        except psycopg.errors.UndefinedObject:  # PostgreSQL before 14: keepalives only
            log.info("scheduler leadership: no idle_session_timeout on this server")
        if backoff.succeeded():
            log.warning("scheduler leadership: connected again")
        while True:
            if self._leader:
                await _bounded(conn.execute("SELECT 1"))
            else:
                cur = await _bounded(conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)))
                row = await cur.fetchone()
                if row and row[0]:
                    self._leader = True
                    self.terms += 1
                    log.warning("scheduler leadership: this scheduler leads now")
            self._confirmed = self.clock()
            await asyncio.sleep(self.check if self._leader else self.retry)

    def _step_down(self, why: str) -> None:
        if self._leader:
            log.warning("scheduler leadership: no longer leading: %s", why)
        self._leader = False


def _name(role: str) -> str:
    """The session's ``application_name``: which process leads, in ``pg_stat_activity``."""
    return f"{role} {socket.gethostname()}:{os.getpid()}"[:63]


async def _bounded(call: Any) -> Any:
    return await asyncio.wait_for(call, CHECK_TIMEOUT)
