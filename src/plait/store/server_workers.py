"""The worker registry: which worker processes exist, what they serve, whether they live.

Each ``plait worker`` (and the worker of ``plait serve``) writes its own row: it
registers when it starts, renews ``heartbeat_at`` with its leases (every 10 s by
default), turns ``draining`` when told to stop (SIGTERM) and ``stopped`` when it has
handed back its work and exits. A process that dies without a word (SIGKILL, a lost
machine) leaves a row that still says ``running`` while its heartbeat grows old:
:meth:`WorkerRecord.status` shows it as ``lost`` once the heartbeat is older than
:data:`LOST_AFTER` — the lease length, so by then its attempts are claimable again.

The table stays small: registering also removes rows of workers that stopped, or were
lost, more than :data:`KEEP_GONE` ago.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, union_all, update

from plait.store.server_records import StorePart
from plait.store.tables import events, status_is, steps, workers

#: A worker whose heartbeat is older than this is shown ``lost`` (the default lease:
#: its running attempts have expired by then and other workers take them over).
LOST_AFTER = 30.0
#: How long the rows of stopped and lost workers are kept (seconds).
KEEP_GONE = 24 * 3600.0
#: States a worker writes; ``lost`` is only ever computed.
STATES = ("running", "draining", "stopped")
#: Rows a listing returns at most (the table holds live workers and a day of gone ones).
MAX_LISTED = 1000
_ALIVE = ("running", "draining")


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker process as registered; ``state`` is what it last wrote."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    tags: Mapping[str, str]
    concurrency: int
    running: int
    version: str
    state: str
    started_at: float
    heartbeat_at: float
    stopped_at: float | None = None

    def status(self, now: float, lost_after: float = LOST_AFTER) -> str:
        """``running``, ``draining``, ``stopped``, or ``lost`` for a worker that went
        quiet without stopping."""
        if self.state in _ALIVE and now - self.heartbeat_at > lost_after:
            return "lost"
        return self.state

    def serves(self, queue: str, runs_on: Mapping[str, str]) -> bool:
        """Whether this worker may claim a step of ``queue`` that needs ``runs_on``."""
        return queue in self.queues and runs_on.items() <= self.tags.items()


def _record(row: Mapping[Any, Any]) -> WorkerRecord:
    return WorkerRecord(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        queues=tuple(row["queues"] or ()),
        tags=dict(row["tags"] or {}),
        concurrency=row["concurrency"],
        running=row["running"],
        version=row["version"],
        state=row["state"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        stopped_at=row["stopped_at"],
    )


class WorkerStore(StorePart):
    """The ``workers`` table (see the module docstring) and the queue counts that
    explain why a step waits."""

    def register_worker(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        queues: Sequence[str],
        tags: Mapping[str, str],
        concurrency: int,
        version: str,
        now: float | None = None,
    ) -> None:
        """Add (or reset) the worker's row as ``running``; drop rows long gone."""
        at = self._clock() if now is None else now
        row = {
            "id": worker_id,
            "host": host,
            "pid": pid,
            "queues": list(queues),
            "tags": dict(tags),
            "concurrency": concurrency,
            "running": 0,
            "version": version,
            "state": "running",
            "started_at": at,
            "heartbeat_at": at,
            "stopped_at": None,
        }
        insert = self._insert(workers)
        upsert = insert.on_conflict_do_update(
            index_elements=["id"], set_={k: insert.excluded[k] for k in row if k != "id"}
        )
        w = workers.c
        gone = or_(
            and_(w.state == "stopped", w.heartbeat_at < at - KEEP_GONE),
            and_(w.state.in_(_ALIVE), w.heartbeat_at < at - KEEP_GONE - LOST_AFTER),
        )
        with self._write() as conn:
            conn.execute(delete(workers).where(gone))
            conn.execute(upsert, row)

    def worker_beat(self, worker_id: str, now: float, running: int, state: str) -> bool:
        """Record a heartbeat with the worker's load and state (``stopped`` also sets
        ``stopped_at``). False when the row is gone: the worker registers again."""
        if state not in STATES:
            raise ValueError(f"unknown worker state {state!r}")
        values: dict[str, Any] = {"heartbeat_at": now, "running": running, "state": state}
        if state == "stopped":
            values["stopped_at"] = now
        with self._write() as conn:
            done = conn.execute(update(workers).where(workers.c.id == worker_id).values(values))
        return bool(done.rowcount)

    def list_workers(self) -> list[WorkerRecord]:
        """Every registered worker (at most :data:`MAX_LISTED`), live ones first, then by
        host and id."""
        w = workers.c
        gone = (w.state == "stopped").label("gone")
        query = select(workers, gone).order_by(gone, w.host, w.id).limit(MAX_LISTED)
        with self._read() as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    def live_workers(self, now: float, lost_after: float = LOST_AFTER) -> list[WorkerRecord]:
        """Workers that are ``running`` and heard from within ``lost_after``: those that
        claim work now (a draining worker takes nothing new)."""
        w = workers.c
        query = (
            select(workers)
            .where(w.state == "running", w.heartbeat_at >= now - lost_after)
            .order_by(w.id)
            .limit(MAX_LISTED)
        )
        with self._read() as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    def queue_backlog(self, queue: str, cap: int = 10_000) -> int:
        """Queued steps of ``queue``, counted up to ``cap`` (the count reads that many
        entries of the claim index, so it is bounded however long the queue is)."""
        s = steps.c
        head = select(s.run_id).where(status_is(s.status, "queued"), s.queue == queue).limit(cap)
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(head.subquery())).scalar_one())


def due_by_queue(now: float) -> Any:
    """Steps due to run now per queue — ``(queue, count, since)`` — and since when the
    oldest has waited: ``available_at`` for a retry, else the time of its
    ``step.queued`` event. One part per status, so each reads only its own partial
    index (an ``OR`` of the two would scan every step)."""
    s, e = steps.c, events.c
    queued_at = (
        select(func.max(e.at))
        .where(e.run_id == s.run_id, e.step == s.key, e.type == "step.queued")
        .scalar_subquery()
    )
    due = or_(s.available_at.is_(None), s.available_at <= now)
    parts = [
        select(s.queue, func.coalesce(s.available_at, queued_at).label("since")).where(
            status_is(s.status, status), due
        )
        for status in ("queued", "retrying")
    ]
    waiting = union_all(*parts).subquery()
    return select(waiting.c.queue, func.count(), func.min(waiting.c.since)).group_by(
        waiting.c.queue
    )


__all__ = ["KEEP_GONE", "LOST_AFTER", "STATES", "WorkerRecord", "WorkerStore", "due_by_queue"]
