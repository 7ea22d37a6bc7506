"""Alert rules, the states of their alerts, the alert history and the notification
outbox.

The evaluation rules are pure (:mod:`plait.ops.alerts`); this part keeps their answers
durable with the one guarantee several evaluators need: :meth:`AlertStore.apply_alert`
writes a transition only if the alert's state is still the one it was computed from
(a conditional write on ``revision``, or an insert that loses to an existing row), and
writes the transition's notifications in the same transaction. The loser writes
nothing. Sending is then claimed per notification (:meth:`claim_notification`, a
conditional update of its lease), so each notice goes out once even with several
evaluators, and one whose sender died is sent by another after the lease.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.engine import Connection

from plait.errors import ConflictError, NotFound, StoreError
from plait.ops.alerts import AlertState, Transition
from plait.store.base import Page
from plait.store.codec import decode_cursor, encode_cursor
from plait.store.server_alert_facts import AlertFacts
from plait.store.tables import alert_notifications, alert_rules, alert_states, alerts

SOURCES = ("api", "file")


@dataclass(frozen=True, slots=True)
class AlertRuleRecord:
    """A stored rule: its spec as written, where it came from, who changed it last."""

    name: str
    kind: str
    spec: Mapping[str, Any]
    source: str
    created_at: float
    updated_at: float
    updated_by: str | None = None


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert: ``firing`` until it ``resolved`` (history), or ``pending`` (a state
    not yet fired, with no ``id``)."""

    id: int | None
    rule: str
    key: str
    state: str
    severity: str
    value: float | None
    threshold: float | None
    summary: str
    labels: Mapping[str, str]
    info: Mapping[str, Any]
    started_at: float
    resolved_at: float | None = None
    last_notified_at: float | None = None
    notifications: int = 0


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    id: int
    alert_id: int | None
    rule: str
    event: str
    channel: str
    notice: Mapping[str, Any]
    status: str
    attempts: int
    error: str | None
    created_at: float
    next_attempt_at: float
    sent_at: float | None = None


class AlertStore(AlertFacts):
    """Rules, states, history and outbox (see the module docstring)."""

    # -- rules ---------------------------------------------------------------------------
    def list_alert_rules(self) -> list[AlertRuleRecord]:
        with self._read() as conn:
            rows = conn.execute(select(alert_rules).order_by(alert_rules.c.name)).mappings()
            return [_rule(r) for r in rows]

    def get_alert_rule(self, name: str) -> AlertRuleRecord:
        with self._read() as conn:
            row = (
                conn.execute(select(alert_rules).where(alert_rules.c.name == name))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"alert rule {name!r} not found")
        return _rule(row)

    def put_alert_rule(
        self,
        name: str,
        kind: str,
        spec: Mapping[str, Any],
        *,
        source: str = "api",
        actor: str | None = None,
        force: bool = False,
    ) -> tuple[AlertRuleRecord, bool]:
        """Create or replace a rule (checked by the caller); ``created`` is True for a
        new name. A rule of another source is replaced only with ``force`` (the rules
        file wins over the API for its names; the API does not overwrite the file's).
        Disabling a rule closes its alerts without notifications."""
        now = self._clock()
        c = alert_rules.c
        with self._write() as conn:
            old = conn.execute(select(c.source).where(c.name == name)).scalar()
            if old is not None and old != source and not force:
                raise ConflictError(_owned(name, str(old)))
            values = {
                "kind": kind,
                "spec": dict(spec),
                "source": source,
                "updated_at": now,
                "updated_by": actor,
            }
            if old is None:
                conn.execute(alert_rules.insert(), {"name": name, "created_at": now, **values})
            else:
                conn.execute(update(alert_rules).where(c.name == name).values(**values))
            if spec.get("enabled") is False:
                self._close(conn, name, now)
        return self.get_alert_rule(name), old is None

    def delete_alert_rule(self, name: str, *, source: str | None = "api") -> None:
        """Delete a rule and close its alerts (no notifications). With ``source``, a
        rule of another source is refused (ConflictError)."""
        c = alert_rules.c
        with self._write() as conn:
            old = conn.execute(select(c.source).where(c.name == name)).scalar()
            if old is None:
                raise NotFound(f"alert rule {name!r} not found")
            if source is not None and old != source:
                raise ConflictError(_owned(name, str(old)))
            conn.execute(delete(alert_rules).where(c.name == name))
            self._close(conn, name, self._clock())

    def sync_file_rules(self, specs: Mapping[str, tuple[str, Mapping[str, Any]]]) -> list[str]:
        """Make the ``file`` rules exactly ``specs`` (name → (kind, spec)): new and
        changed ones written (over rules of the API with those names), rules of the
        file no longer in it deleted. Returns the names changed; unchanged specs write
        nothing, so every scheduler may sync the same file."""
        have = {r.name: r for r in self.list_alert_rules()}
        changed: list[str] = []
        for name, (kind, spec) in sorted(specs.items()):
            old = have.get(name)
            if old is None or old.source != "file" or dict(old.spec) != dict(spec):
                self.put_alert_rule(
                    name, kind, spec, source="file", actor="alerts.yaml", force=True
                )
                changed.append(name)
        for name, old in sorted(have.items()):
            if old.source == "file" and name not in specs:
                self.delete_alert_rule(name, source="file")
                changed.append(name)
        return changed

    def close_alerts(self, rule: str) -> int:
        """Forget the states of ``rule`` and resolve its firing alerts, silently (the
        rule is gone or disabled). Returns how many states there were."""
        with self._write() as conn:
            return self._close(conn, rule, self._clock())

    def _close(self, conn: Connection, rule: str, now: float) -> int:
        s = alert_states.c
        gone = conn.execute(delete(alert_states).where(s.rule == rule)).rowcount
        conn.execute(
            update(alerts)
            .where(alerts.c.rule == rule, alerts.c.state == "firing")
            .values(state="resolved", resolved_at=now, updated_at=now)
        )
        return int(gone or 0)

    def alert_rules_with_states(self) -> list[str]:
        """The rules that have pending or firing alerts (to close those of rules that
        no longer exist)."""
        with self._read() as conn:
            query = select(alert_states.c.rule).distinct()
            return [str(r) for r in conn.execute(query).scalars()]

    # -- states --------------------------------------------------------------------------
    def alert_states(self, rule: str | None = None) -> list[AlertState]:
        """The pending and firing alerts (of one rule)."""
        s = alert_states.c
        query = select(alert_states).order_by(s.rule, s.key)
        if rule is not None:
            query = query.where(s.rule == rule)
        with self._read() as conn:
            return [_state(r) for r in conn.execute(query).mappings()]

    def apply_alert(
        self,
        change: Transition,
        notices: Sequence[tuple[str, Mapping[str, Any]]],
        now: float,
    ) -> bool:
        """Write ``change`` and queue ``notices`` ((channel, notice) pairs) if the
        alert is still in ``change.before``; False (nothing written) if another
        evaluator changed it first."""
        with self._write() as conn:
            if not self._swap(conn, change, now):
                return False
            after = change.after
            alert_id = change.before.alert_id if change.before else None
            if after is not None and after.state == "firing" and alert_id is None:
                alert_id = self._open(conn, after, now)
                conn.execute(
                    update(alert_states)
                    .where(alert_states.c.rule == after.rule, alert_states.c.key == after.key)
                    .values(alert_id=alert_id)
                )
            if alert_id is not None:
                self._record(conn, alert_id, change, len(notices), now)
            if notices:
                conn.execute(
                    alert_notifications.insert(),
                    [_outbox(alert_id, change, ch, body, now) for ch, body in notices],
                )
        return True

    def _swap(self, conn: Connection, change: Transition, now: float) -> bool:
        """The conditional write: True if this caller's change took place."""
        s = alert_states.c
        before, after = change.before, change.after
        where = (s.rule == change.rule, s.key == change.key)
        if before is None:
            assert after is not None
            row = {**_row(replace(after, revision=1)), "updated_at": now}
            stmt = self._insert(alert_states).on_conflict_do_nothing(index_elements=["rule", "key"])
            # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT.
            return conn.execute(stmt.returning(s.rule), row).first() is not None
        current = (*where, s.revision == before.revision)
        if after is None:
            return bool(conn.execute(delete(alert_states).where(*current)).rowcount == 1)
        values = {**_row(replace(after, revision=before.revision + 1)), "updated_at": now}
        for fixed in ("rule", "key", "alert_id"):
            values.pop(fixed)
        return bool(
            conn.execute(update(alert_states).where(*current).values(**values)).rowcount == 1
        )

    def _open(self, conn: Connection, state: AlertState, now: float) -> int:
        row = {
            "rule": state.rule,
            "key": state.key,
            "state": "firing",
            "severity": state.severity,
            "value": state.value,
            "threshold": state.threshold,
            "summary": state.summary,
            "labels": dict(state.labels),
            "info": dict(state.info),
            "started_at": state.firing_since or now,
            "resolved_at": None,
            "last_notified_at": None,
            "notifications": 0,
            "updated_at": now,
        }
        new_id: int = conn.execute(alerts.insert().returning(alerts.c.id), row).scalar_one()
        return new_id

    def _record(
        self, conn: Connection, alert_id: int, change: Transition, sent: int, now: float
    ) -> None:
        state = change.state
        values: dict[str, Any] = {
            "severity": state.severity,
            "value": state.value,
            "threshold": state.threshold,
            "summary": state.summary,
            "labels": dict(state.labels),
            "info": dict(state.info),
            "updated_at": now,
        }
        if change.event is not None and sent:
            values["last_notified_at"] = now
            values["notifications"] = alerts.c.notifications + 1
        if change.after is None:
            values.update(state="resolved", resolved_at=now)
        conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))

    # -- history -------------------------------------------------------------------------
    def list_alerts(
        self, *, state: str | None = None, rule: str | None = None, limit: int = 100
    ) -> list[AlertRecord]:
        """The first ``limit`` alerts in the order of :meth:`alert_page`."""
        return list(self.alert_page(state=state, rule=rule, limit=limit).items)

    def alert_page(
        self,
        *,
        state: str | None = None,
        rule: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        """Current alerts first (pending, then firing, newest first), then resolved
        ones, most recently resolved first: ``limit`` of them after ``cursor`` (the
        ``next_cursor`` of the page before), :class:`AlertRecord` items."""
        after = _position(cursor) if cursor else None
        found: list[AlertRecord] = []
        for part, wanted in enumerate(ALERT_ORDER):
            if state not in (None, wanted) or len(found) > limit:
                continue
            if after is not None and part < after[0]:
                continue
            start = after[1:] if after is not None and part == after[0] else None
            found += self._alerts_in(wanted, rule, start, limit + 1 - len(found))
        items = found[:limit]
        return Page(items, _alert_cursor(items[-1]) if len(found) > limit else None)

    def _alerts_in(
        self, state: str, rule: str | None, after: tuple[float, Any] | None, limit: int
    ) -> list[AlertRecord]:
        """Up to ``limit`` alerts in ``state``, in page order, after ``after``."""
        if state == "pending":
            found = [_pending(s) for s in self.alert_states(rule) if s.state == "pending"]
            found.sort(key=_pending_order)
            if after is not None:
                at, (last_rule, last_key) = after
                found = [a for a in found if _pending_order(a) > (-at, last_rule, last_key)]
            return found[:limit]
        a = alerts.c
        at_column = a.resolved_at if state == "resolved" else a.started_at
        query = select(alerts).where(a.state == state)
        if rule is not None:
            query = query.where(a.rule == rule)
        if after is not None:
            at, last_id = after
            query = query.where(or_(at_column < at, and_(at_column == at, a.id < last_id)))
        query = query.order_by(at_column.desc(), a.id.desc()).limit(limit)
        with self._read() as conn:
            return [_alert(r) for r in conn.execute(query).mappings()]

    def prune_alerts(self, resolved_before: float, notified_before: float) -> tuple[int, int]:
        """Forget alerts resolved before ``resolved_before`` and notifications sent (or
        given up) before ``notified_before``; returns how many of each."""
        a, n = alerts.c, alert_notifications.c
        with self._write() as conn:
            done = n.status.in_(["sent", "failed"])
            notes = conn.execute(
                delete(alert_notifications).where(done, n.created_at < notified_before)
            ).rowcount
            old = conn.execute(
                delete(alerts).where(a.state == "resolved", a.resolved_at < resolved_before)
            ).rowcount
        return int(old or 0), int(notes or 0)

    # -- the outbox ----------------------------------------------------------------------
    def due_notifications(self, now: float, limit: int = 100) -> list[NotificationRecord]:
        """Notifications waiting to be sent (or retried) at ``now``, oldest first,
        that no sender holds."""
        n = alert_notifications.c
        query = (
            select(alert_notifications)
            .where(
                n.status == "pending",
                n.next_attempt_at <= now,
                or_(n.claimed_until.is_(None), n.claimed_until < now),
            )
            .order_by(n.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [_notification(r) for r in conn.execute(query).mappings()]

    def claim_notification(self, notification_id: int, now: float, lease: float) -> bool:
        """Hold a notification for ``lease`` seconds to send it; False when another
        sender holds it or it was sent."""
        n = alert_notifications.c
        stmt = (
            update(alert_notifications)
            .where(
                n.id == notification_id,
                n.status == "pending",
                or_(n.claimed_until.is_(None), n.claimed_until < now),
            )
            .values(claimed_until=now + lease)
        )
        with self._write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def finish_notification(
        self,
        notification_id: int,
        now: float,
        *,
        error: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        """Record a send: done (no ``error``), to retry at ``retry_at``, or failed."""
        n = alert_notifications.c
        values: dict[str, Any] = {"attempts": n.attempts + 1, "claimed_until": None}
        if error is None:
            values.update(status="sent", sent_at=now, error=None)
        elif retry_at is not None:
            values.update(error=error, next_attempt_at=retry_at)
        else:
            values.update(status="failed", error=error)
        with self._write() as conn:
            conn.execute(
                update(alert_notifications).where(n.id == notification_id).values(**values)
            )

    def notifications(
        self, alert_id: int | None = None, limit: int = 100
    ) -> list[NotificationRecord]:
        """Notifications (of one alert), newest first."""
        n = alert_notifications.c
        query = select(alert_notifications).order_by(n.id.desc()).limit(limit)
        if alert_id is not None:
            query = query.where(n.alert_id == alert_id)
        with self._read() as conn:
            return [_notification(r) for r in conn.execute(query).mappings()]


# -- rows -------------------------------------------------------------------------------------
def _owned(name: str, source: str) -> str:
    if source == "file":
        return f"alert rule {name!r} comes from alerts.yaml: change it there"
    return f"alert rule {name!r} was set through the API: delete it there first"


def _rule(row: Mapping[Any, Any]) -> AlertRuleRecord:
    return AlertRuleRecord(**{k: row[k] for k in AlertRuleRecord.__slots__})


def _row(state: AlertState) -> dict[str, Any]:
    return {
        "rule": state.rule,
        "key": state.key,
        "state": state.state,
        "severity": state.severity,
        "value": state.value,
        "threshold": state.threshold,
        "summary": state.summary,
        "labels": dict(state.labels),
        "info": dict(state.info),
        "since": state.since,
        "firing_since": state.firing_since,
        "last_notified_at": state.last_notified_at,
        "alert_id": state.alert_id,
        "revision": state.revision,
    }


def _state(row: Mapping[Any, Any]) -> AlertState:
    return AlertState(**{k: row[k] for k in AlertState.__slots__})


def _pending(state: AlertState) -> AlertRecord:
    return AlertRecord(
        id=None,
        rule=state.rule,
        key=state.key,
        state="pending",
        severity=state.severity,
        value=state.value,
        threshold=state.threshold,
        summary=state.summary,
        labels=state.labels,
        info=state.info,
        started_at=state.since,
    )


def _alert(row: Mapping[Any, Any]) -> AlertRecord:
    return AlertRecord(**{k: row[k] for k in AlertRecord.__slots__})


def _notification(row: Mapping[Any, Any]) -> NotificationRecord:
    return NotificationRecord(**{k: row[k] for k in NotificationRecord.__slots__})


def _outbox(
    alert_id: int | None, change: Transition, channel: str, notice: Mapping[str, Any], now: float
) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "rule": change.rule,
        "event": change.event or "firing",
        "channel": channel,
        "notice": dict(notice),
        "status": "pending",
        "attempts": 0,
        "error": None,
        "created_at": now,
        "next_attempt_at": now,
        "claimed_until": None,
        "sent_at": None,
    }


# -- alert pages ----------------------------------------------------------------------------
#: the order of :meth:`AlertStore.alert_page`: its parts, one after the other
ALERT_ORDER = ("pending", "firing", "resolved")


def _pending_order(alert: AlertRecord) -> tuple[float, str, str]:
    return (-alert.started_at, alert.rule, alert.key)


def _alert_cursor(alert: AlertRecord) -> str:
    """The position of ``alert`` in the page order, as the runs' opaque cursor: its
    time, and its state with its id (a pending alert has none: its rule and key)."""
    if alert.state == "pending":
        return encode_cursor(alert.started_at, "pending:" + json.dumps([alert.rule, alert.key]))
    at = alert.resolved_at if alert.state == "resolved" else alert.started_at
    assert at is not None
    return encode_cursor(at, f"{alert.state}:{alert.id}")


def _position(cursor: str) -> tuple[int, float, Any]:
    """(part of :data:`ALERT_ORDER`, time, id — or rule and key) of an alert cursor."""
    at, tie = decode_cursor(cursor)
    state, _, rest = tie.partition(":")
    try:
        if state == "pending":
            rule, key = json.loads(rest)
            if isinstance(rule, str) and isinstance(key, str):
                return 0, at, (rule, key)
        elif state in ALERT_ORDER:
            return ALERT_ORDER.index(state), at, int(rest)
    except (ValueError, TypeError):
        pass
    raise StoreError(f"invalid cursor {cursor!r}")


__all__ = [
    "ALERT_ORDER",
    "SOURCES",
    "AlertRecord",
    "AlertRuleRecord",
    "AlertStore",
    "NotificationRecord",
]
