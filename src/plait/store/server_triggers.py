"""Schedules, their fires and misses, published events and event consumer cursors.

The scheduler (the trigger service) computes what is due with the pure rules of
:mod:`plait.triggers.schedule`; this part only keeps the answers durable, with one
guarantee that matters: :meth:`TriggerStore.record_fire` inserts under the schedule's
unique fire key, so when two scheduler processes find the same time due exactly one of
them gets ``True`` and starts the run. A scheduler therefore picks the run id first
(``plait.runtime.ids.new_run_id``), records the fire with it, and starts the run with
``run_id=`` only when the record succeeded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.engine import Connection

from plait.errors import StoreError
from plait.store.server_records import FireRecord, ScheduleRecord, StorePart
from plait.store.tables import event_cursors, events, schedule_fires, schedules

FIRE_STATUSES = ("fired", "missed")
Instant = float | datetime


def schedule_id(workflow: str, cron: str, timezone: str, seen: int = 0) -> str:
    """``{workflow}/{12 hex of sha256(cron, timezone)}`` (``-N`` for the N-th duplicate)."""
    digest = hashlib.sha256(f"{cron.strip()}\n{timezone}".encode()).hexdigest()[:12]
    return f"{workflow}/{digest}" + (f"-{seen}" if seen else "")


def _epoch(value: Instant) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _later(column: Any, value: float) -> Any:
    """``max(column, value)`` that treats NULL as older than anything (portable SQL)."""
    return case((column.is_(None), value), (column < value, value), else_=column)


class TriggerStore(StorePart):
    """Schedules and fires (see the module docstring), published events, cursors."""

    # -- schedules ------------------------------------------------------------------------
    def sync_schedules(
        self, workflow: str, version_id: int, schedule_triggers: Sequence[Mapping[str, Any]]
    ) -> list[ScheduleRecord]:
        """Make the workflow's schedule rows match ``schedule_triggers`` (the plan's
        trigger mappings; only ``kind: schedule`` ones count). Called on deploy and
        rollback; a schedule whose cron and timezone are unchanged keeps its row, and so
        its ``last_fire``; a new or changed one starts counting from now."""
        from plait.store.tables import deployments

        with self._write() as conn:
            namespace = conn.execute(
                select(deployments.c.namespace).where(deployments.c.name == workflow)
            ).scalar()
            if namespace is None:
                from plait.errors import NotFound

                raise NotFound(f"workflow {workflow!r} not found")
            self._sync(conn, workflow, str(namespace), version_id, schedule_triggers, self._clock())
        return self.list_schedules(workflow)

    def _sync(
        self,
        conn: Connection,
        workflow: str,
        namespace: str,
        version_id: int,
        triggers: Sequence[Mapping[str, Any]],
        now: float,
    ) -> None:
        wanted = _wanted_rows(workflow, namespace, version_id, triggers, now)
        s = schedules.c
        have = set(conn.execute(select(s.id).where(s.workflow == workflow)).scalars())
        gone = have - set(wanted)
        if gone:
            conn.execute(schedules.delete().where(s.id.in_(sorted(gone))))
        for sid, row in wanted.items():
            if sid in have:  # cron and timezone unchanged: keep the scheduler's progress
                keep = ("id", "created_at", "last_fire", "next_fire", "missed_count", "last_missed")
                values = {k: v for k, v in row.items() if k not in keep}
                conn.execute(update(schedules).where(s.id == sid).values(**values))
            else:
                conn.execute(schedules.insert(), row)

    def list_schedules(self, workflow: str | None = None) -> list[ScheduleRecord]:
        """Every schedule (the scheduler's working set), or those of one workflow."""
        s = schedules.c
        query = select(schedules).order_by(s.workflow, s.position)
        if workflow is not None:
            query = query.where(s.workflow == workflow)
        with self._read() as conn:
            return [_schedule(r) for r in conn.execute(query).mappings()]

    def due_schedules(self, now: Instant) -> list[ScheduleRecord]:
        """Schedules whose ``next_fire`` is at or before ``now`` (by index)."""
        s = schedules.c
        query = select(schedules).where(s.next_fire <= _epoch(now)).order_by(s.next_fire)
        with self._read() as conn:
            return [_schedule(r) for r in conn.execute(query).mappings()]

    def record_fire(
        self,
        schedule_id: str,
        fire_key: str,
        fire_time: Instant,
        run_id: str | None,
        status: str = "fired",
    ) -> bool:
        """Record one fire (or miss) under its unique ``fire_key``; False when it was
        recorded before — by another scheduler — and the caller must not start a run."""
        if status not in FIRE_STATUSES:
            raise StoreError(f"fire status must be one of {FIRE_STATUSES}, not {status!r}")
        with self._write() as conn:
            workflow = (
                conn.execute(
                    select(schedules.c.workflow).where(schedules.c.id == schedule_id)
                ).scalar()
                or schedule_id.split("/", 1)[0]
            )
            stmt = self._insert(schedule_fires).on_conflict_do_nothing(index_elements=["fire_key"])
            row = {
                "fire_key": fire_key,
                "schedule_id": schedule_id,
                "workflow": workflow,
                "fire_time": _epoch(fire_time),
                "run_id": run_id,
                "status": status,
                "recorded_at": self._clock(),
            }
            inserted = conn.execute(stmt.returning(schedule_fires.c.id), row).first()
            return inserted is not None

    def update_schedule(
        self,
        schedule_id: str,
        last_fire: Instant | None = None,
        next_fire: Instant | None = None,
        missed_count_increment: int = 0,
        last_missed: Instant | None = None,
    ) -> bool:
        """Advance a schedule after a tick. ``last_fire`` and ``last_missed`` only ever
        move forward (a slower scheduler cannot move them back); ``next_fire`` is set
        as given. False when the schedule no longer exists (removed by a deploy)."""
        s = schedules.c
        values: dict[str, Any] = {"updated_at": self._clock()}
        if last_fire is not None:
            values["last_fire"] = _later(s.last_fire, _epoch(last_fire))
        if next_fire is not None:
            values["next_fire"] = _epoch(next_fire)
        if missed_count_increment:
            values["missed_count"] = s.missed_count + int(missed_count_increment)
        if last_missed is not None:
            values["last_missed"] = _later(s.last_missed, _epoch(last_missed))
        with self._write() as conn:
            result = conn.execute(update(schedules).where(s.id == schedule_id).values(**values))
            return bool(result.rowcount == 1)

    def schedule_fires(self, workflow: str, limit: int = 50) -> list[FireRecord]:
        """The newest fires and misses of a workflow's schedules, newest first."""
        f = schedule_fires.c
        query = (
            select(schedule_fires)
            .where(f.workflow == workflow)
            .order_by(f.fire_time.desc(), f.id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [_fire(r) for r in conn.execute(query).mappings()]

    # -- published events -----------------------------------------------------------------
    def publish_event(self, type: str, source: str | None, payload: Any, actor: str | None) -> int:
        """Append a published event to the outbox (``run_id`` NULL) and return its id.
        ``data`` is ``{"source", "payload", "actor"}``; consumers read it with the run
        store's ``read_events`` like any lifecycle event."""
        row = {
            "run_id": None,
            "type": type,
            "step": None,
            "at": self._clock(),
            "data": {"source": source, "payload": payload, "actor": actor},
        }
        with self._write() as conn:
            event_id: int = conn.execute(events.insert().returning(events.c.id), row).scalar_one()
        return event_id

    def event_cursor(self, consumer: str) -> int:
        """The last event id ``consumer`` has handled (0 before its first)."""
        with self._read() as conn:
            found = conn.execute(
                select(event_cursors.c.last_id).where(event_cursors.c.consumer == consumer)
            ).scalar()
        return int(found or 0)

    def set_event_cursor(self, consumer: str, last_id: int) -> None:
        stmt = self._insert(event_cursors)
        stmt = stmt.on_conflict_do_update(
            index_elements=["consumer"],
            set_={"last_id": stmt.excluded.last_id, "updated_at": stmt.excluded.updated_at},
        )
        row = {"consumer": consumer, "last_id": int(last_id), "updated_at": self._clock()}
        with self._write() as conn:
            conn.execute(stmt, row)


def _wanted_rows(
    workflow: str,
    namespace: str,
    version_id: int,
    triggers: Sequence[Mapping[str, Any]],
    now: float,
) -> dict[str, dict[str, Any]]:
    """The schedule rows a version asks for, by id; new rows get their first next fire."""
    from plait.triggers.schedule import Schedule, next_fire

    wanted: dict[str, dict[str, Any]] = {}
    position = 0
    for trigger in triggers:
        if trigger.get("kind", "schedule") != "schedule":
            continue
        cron, zone = str(trigger["cron"]), str(trigger.get("timezone") or "UTC")
        catch_up = str(trigger.get("catch_up") or "latest")
        bound = int(trigger.get("max_catch_up") or 100)
        try:
            schedule = Schedule(cron, zone, catch_up, bound)  # type: ignore[arg-type]
        except ValueError as exc:
            raise StoreError(f"schedule {cron!r}: {exc}") from exc
        seen = sum(1 for k in wanted if k.startswith(schedule_id(workflow, cron, zone)))
        sid = schedule_id(workflow, cron, zone, seen)
        wanted[sid] = {
            "id": sid,
            "workflow": workflow,
            "namespace": namespace,
            "version_id": version_id,
            "position": position,
            "cron": cron,
            "timezone": zone,
            "catch_up": catch_up,
            "max_catch_up": bound,
            "inputs": dict(trigger.get("inputs") or {}),
            "created_at": now,
            "updated_at": now,
            "last_fire": None,
            "next_fire": next_fire(schedule, datetime.fromtimestamp(now, UTC)).timestamp(),
            "missed_count": 0,
            "last_missed": None,
        }
        position += 1
    return wanted


def _schedule(row: Mapping[Any, Any]) -> ScheduleRecord:
    return ScheduleRecord(**{k: row[k] for k in ScheduleRecord.__slots__})


def _fire(row: Mapping[Any, Any]) -> FireRecord:
    return FireRecord(**{k: row[k] for k in FireRecord.__slots__})
