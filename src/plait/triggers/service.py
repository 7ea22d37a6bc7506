"""The scheduler process: fires schedules and event triggers, and reacts to run endings.

Any number of schedulers may run (on PostgreSQL); one leads (:mod:`plait.triggers.leader`)
and only the leader fires schedules, consumes the outbox (run endings, published
events) and sweeps held runs, so notifications are sent once and the database is not
scanned by every scheduler. When the leader dies another takes over within seconds and
goes on from what the store holds: the schedules' ``last_fire`` (missed times are fired
or recorded by each schedule's catch-up policy) and the outbox cursor.

Exactly-once does not rest on the leader: the run started for a schedule fire has an
id derived from the fire's unique key (``uuid5(fire_key)``), and the run started by an
event trigger one derived from the event id and the workflow; the store's primary key
then refuses a second copy, so two schedulers that both believe they lead (or one
restarted mid-tick) can never double a run, and a fire recorded late is not lost:
``last_fire`` only moves after the run exists. Missed fires (catch-up ``none``/``latest``,
or beyond ``max_catch_up``) are recorded and visible through the API.

Run endings (outbox events ``run.succeeded|failed|cancelled|timed_out``) drive four
things: a run ending frees its concurrency slot, so held runs of its key start; a
parent run's ``uses: workflow`` step finishes with the child's outputs; a workflow's
``notify:`` entries are sent; ``event`` triggers of other workflows fire. The outbox
makes the release reliable whichever process ended the run; a sweep every few seconds
releases keys whose ending was missed (a crash between reading and acting on it).

Broker triggers (``rabbitmq``, ``redis_stream``, ``nats``, ``mqtt``) each get a consumer
task in this process (:mod:`plait.triggers.brokers`), started and stopped as deploys
change the deployed triggers (checked every few seconds). Every scheduler process runs
them; a message's run id derived from its dedup key keeps the runs exactly one per
message however many consume it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from plait.engine.api import Outcome
from plait.errors import ConflictError, NotFound, PlaitError, StoreUnavailable
from plait.runtime.backoff import Backoff
from plait.triggers.brokers import BrokerConsumers, BrokerTrigger, broker_triggers
from plait.triggers.events import EventTrigger, matches, would_loop
from plait.triggers.leader import AlwaysLeader
from plait.triggers.schedule import due_fires, fire_key, next_fire

if TYPE_CHECKING:
    from plait.engine.state import RunState
    from plait.server.services import Services
    from plait.store.server_records import ScheduleRecord

log = logging.getLogger(__name__)


class Leader(Protocol):
    """Says whether this scheduler leads now (:mod:`plait.triggers.leader`)."""

    def leading(self) -> bool: ...


_NS = uuid.UUID("0f8e4c2a-6d3b-4b7e-9c1f-2a5d8e7b3c10")
RUN_ENDS = frozenset({"run.succeeded", "run.failed", "run.cancelled", "run.timed_out"})
CONSUMER = "triggers"
MAX_CHAIN = 10
#: seconds between sweeps that start held runs whose key has free slots
RELEASE_SWEEP = 5.0
#: seconds between looks at which broker triggers are deployed (and at event triggers)
TRIGGER_REFRESH = 5.0


def derived_run_id(key: str) -> str:
    return str(uuid.uuid5(_NS, key))


class TriggerService:
    """See the module docstring. ``tick()`` is one pass; ``serve()`` repeats it."""

    def __init__(
        self, services: Services, *, interval: float = 1.0, leadership: Leader | None = None
    ) -> None:
        self.services = services
        self.interval = interval
        #: whether this scheduler leads (always, without a leadership: SQLite)
        self.leadership: Leader = leadership or AlwaysLeader()
        self._event_triggers: list[tuple[str, int, dict[str, Any]]] = []
        self._triggers_loaded_at = 0.0
        self._swept_at = 0.0
        self._brokers_synced_at = 0.0
        self.brokers = BrokerConsumers(services)

    async def serve(self, stop: asyncio.Event) -> None:
        backoff = Backoff(base=self.interval, cap=30.0)
        try:
            while not stop.is_set():
                pause = self.interval
                try:
                    await self.tick()
                except StoreUnavailable as exc:  # the database is away: back off, carry on
                    pause = backoff.failed()
                    log.warning("scheduler: %s; again in %.1f s", exc, pause)
                except PlaitError:
                    log.exception("scheduler tick")
                else:
                    if backoff.succeeded():
                        log.warning("scheduler: the database is back")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        finally:
            await self.brokers.close()

    async def tick(self, now: float | None = None) -> None:
        now = self.services.clock() if now is None else now
        if self.leadership.leading():
            self.fire_schedules(now)
            await self.consume_events(now)
            if now - self._swept_at >= RELEASE_SWEEP:
                self._swept_at = now
                self.services.runs.release_all()
        await self.sync_brokers(now)  # every scheduler: message dedup keeps runs single

    # -- broker triggers ---------------------------------------------------------------
    async def sync_brokers(self, now: float) -> None:
        """Run one consumer per deployed broker trigger (a no-op between refreshes)."""
        if self._brokers_synced_at and now - self._brokers_synced_at < TRIGGER_REFRESH:
            return
        self._brokers_synced_at = now
        _, brokers = self._scan()
        await self.brokers.reconcile(brokers)

    # -- schedules ---------------------------------------------------------------------
    def fire_schedules(self, now: float) -> None:
        for schedule in self.services.server_store.list_schedules():
            try:
                self._fire(schedule, now)
            except PlaitError:
                log.exception("schedule %s", schedule.id)

    def _fire(self, schedule: ScheduleRecord, now: float) -> None:
        moment = datetime.fromtimestamp(now, UTC)
        plan = due_fires(schedule.schedule, schedule.last, schedule.created, moment)
        store = self.services.server_store
        for at in plan.fire:
            key = fire_key(schedule.id, at)
            run_id = derived_run_id(key)
            self._start_scheduled(schedule, at, run_id)
            store.record_fire(schedule.id, key, at.timestamp(), run_id, "fired")
        for at in plan.missed:
            store.record_fire(
                schedule.id, fire_key(schedule.id, at), at.timestamp(), None, "missed"
            )
        last_due = plan.last_due.timestamp() if plan.last_due else schedule.last_fire
        upcoming = next_fire(schedule.schedule, moment).timestamp()
        last_missed = plan.missed[-1].timestamp() if plan.missed else None
        store.update_schedule(schedule.id, last_due, upcoming, plan.missed_count, last_missed)

    def _start_scheduled(self, schedule: ScheduleRecord, at: datetime, run_id: str) -> None:
        version = self.services.store.get_version(schedule.version_id)
        payload = {
            "scheduled_at": at.isoformat(),
            "cron": schedule.cron,
            "timezone": schedule.timezone,
        }
        # ConflictError: this fire already has its run (another scheduler, or a retry)
        with contextlib.suppress(ConflictError):
            self.services.runs.start(
                version,
                dict(schedule.inputs),
                run_id=run_id,
                trigger={"type": "schedule", "payload": payload},
            )

    # -- events ------------------------------------------------------------------------
    async def consume_events(self, now: float) -> None:
        store = self.services.server_store
        cursor = store.event_cursor(CONSUMER)
        events = self.services.store.read_events(after_id=cursor, limit=500)
        for stored in events:
            event = stored.event
            try:
                if event.type in RUN_ENDS and event.run_id:
                    await self._run_ended(stored.id, event.run_id, now)
                elif not event.run_id:
                    self._published(stored.id, event.type, event.data, now)
            except PlaitError:
                log.exception("event %s (%s)", stored.id, event.type)
        if events:
            store.set_event_cursor(CONSUMER, events[-1].id)

    async def _run_ended(self, event_id: int, run_id: str, now: float) -> None:
        try:
            run = self.services.store.load_run(run_id).run
        except NotFound:
            return
        self._release(run)
        self._finish_parent(run)
        await self._notify(run)
        event = {
            "type": f"run.{run.status}",
            "source": {"workflow": run.workflow, "namespace": run.namespace},
            "run": {
                "id": run.id,
                "status": str(run.status),
                "inputs": run.inputs,
                "outputs": run.outputs or {},
                "error": run.error,
            },
            "payload": {},
        }
        chain = (
            [*run.trigger.get("chain", []), run.workflow]
            if run.trigger.get("type") == "event"
            else [run.workflow]
        )
        self._match(event_id, event, chain, now)

    def _published(self, event_id: int, type_: str, data: Mapping[str, Any], now: float) -> None:
        source = data.get("source")
        event = {
            "type": type_,
            "source": source if isinstance(source, dict) else {"name": source},
            "payload": data.get("payload", {}),
        }
        self._match(event_id, event, [], now)

    def _match(self, event_id: int, event: dict[str, Any], chain: list[str], now: float) -> None:
        for name, version_id, spec in self._triggers(now):
            trigger = EventTrigger(
                type=spec["type"], workflow=spec.get("workflow"), if_=spec.get("if")
            )
            if not matches(trigger, event):
                continue
            if would_loop(chain, name, MAX_CHAIN):
                log.warning(
                    "not starting %s from event %s: trigger loop %s",
                    name,
                    event_id,
                    " -> ".join(chain),
                )
                continue
            version = self.services.store.get_version(version_id)
            run_id = derived_run_id(f"event:{event_id}:{name}")
            with contextlib.suppress(ConflictError):
                self.services.runs.start(
                    version,
                    dict(spec.get("inputs") or {}),
                    run_id=run_id,
                    trigger={"type": "event", "payload": event, "chain": chain},
                )

    def _triggers(self, now: float) -> list[tuple[str, int, dict[str, Any]]]:
        """Event triggers of every deployed workflow (refreshed every few seconds)."""
        if now - self._triggers_loaded_at < TRIGGER_REFRESH and self._triggers_loaded_at:
            return self._event_triggers
        found, _ = self._scan()
        self._event_triggers, self._triggers_loaded_at = found, now
        return found

    def _scan(self) -> tuple[list[tuple[str, int, dict[str, Any]]], list[BrokerTrigger]]:
        """The event and broker triggers of every deployed workflow."""
        events: list[tuple[str, int, dict[str, Any]]] = []
        brokers: list[BrokerTrigger] = []
        cursor = None
        while True:
            page = self.services.server_store.list_workflows(cursor=cursor, limit=200)
            for record in page.items:
                plan = self.services.runs.plan(record.version_id)
                for spec in plan.triggers:
                    if spec.get("kind") == "event":
                        events.append((record.name, record.version_id, dict(spec)))
                brokers.extend(broker_triggers(record.name, plan))
            cursor = page.next_cursor
            if not cursor:
                break
        return events, brokers

    # -- run endings -------------------------------------------------------------------
    def _release(self, run: RunState) -> None:
        """The run's slot is free: start the oldest held runs of its key. A failure here
        must not stop the other reactions; the sweep tries again."""
        if run.concurrency_key is None:
            return
        try:
            self.services.runs.release(run.namespace, run.concurrency_key)
        except PlaitError:
            log.exception("run %s: releasing concurrency key %r", run.id, run.concurrency_key)

    def _finish_parent(self, run: RunState) -> None:
        parent = run.trigger.get("parent")
        if not run.parent_run_id or not isinstance(parent, dict):
            return
        if run.status == "succeeded":
            outcome = Outcome("succeeded", outputs={**(run.outputs or {}), "run_id": run.id})
        else:
            outcome = Outcome(
                "failed",
                error=f"sub-workflow run {run.id} {run.status}: {run.error or ''}".rstrip(": "),
                retryable=False,
            )
        from plait.runtime.service import DecisionError

        with contextlib.suppress(DecisionError, NotFound):
            self.services.runs.finish_waiting(
                run.parent_run_id, str(parent.get("step")), outcome, expect_uses="workflow"
            )

    async def _notify(self, run: RunState) -> None:
        if run.version_id is None:
            return
        plan = self.services.runs.plan(run.version_id)
        if not plan.notify:
            return
        from plait.actions.connections import EnvConnections
        from plait.notify import ChannelError, load_channels, notify_run

        try:
            channels = load_channels(self.services.settings.home)
        except ChannelError as exc:
            log.warning("run %s: notify: %s", run.id, exc)
            return
        machine = self.services.runs.machine(self.services.store.load_run(run.id))
        source = self.services.extras.get("connections") or EnvConnections()
        problems = await notify_run(
            plan.notify,
            machine.run,
            machine.steps.values(),
            machine.run_scope(),
            channels,
            mask=self.services.runs.masker(machine).mask,
            connection=lambda name: source.get(run.namespace, name),
        )
        for problem in problems:
            log.warning("run %s: %s", run.id, problem)
