"""Observations for the rules that read the store: run outcomes, long runs, retried
steps, missed schedule fires, worker heartbeats and anomalous runs.

Each function turns the store's facts (:mod:`plait.store.server_alert_facts`) into
:class:`~plait.ops.alerts.Observation` s keyed as the rule groups them — by workflow
(``group_by: workflow``, the default) or one key for all (``group_by: none``), by
schedule, by worker — and says in words what it saw. They are synchronous (store
reads); the alert service runs them off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from plait.model.durations import format_duration
from plait.ops.alerts import Observation, Rule, format_value

if TYPE_CHECKING:
    from plait.store.server import ServerStore

ALL = "*"
#: the anomalous runs an anomaly rule reads at most per pass
ANOMALY_LIMIT = 500


def _key(rule: Rule, workflow: str, namespace: str) -> tuple[str, dict[str, str]]:
    """The alert key and identifying labels of a run of ``workflow``."""
    if rule.group_by == "workflow":
        return workflow, {"workflow": workflow, "namespace": namespace}
    labels = {"workflow": rule.workflow} if rule.workflow else {}
    if rule.namespace:
        labels["namespace"] = rule.namespace
    return rule.workflow or ALL, labels


def _subject(key: str) -> str:
    return "all workflows" if key == ALL else key


def failure_rate(store: ServerStore, rule: Rule, now: float) -> list[Observation]:
    groups: dict[str, tuple[int, int, dict[str, str]]] = {}
    for row in store.run_outcomes(
        now - rule.window, workflow=rule.workflow, namespace=rule.namespace
    ):
        key, labels = _key(rule, row.workflow, row.namespace)
        ended, failed, _ = groups.get(key, (0, 0, labels))
        groups[key] = (ended + row.ended, failed + row.failed, labels)
    found = []
    for key, (ended, failed, labels) in sorted(groups.items()):
        share = failed / ended if ended else 0.0
        detail = (
            f"{_subject(key)}: {failed} of {ended} runs failed ({format_value('ratio', share)}) "
            f"in the last {format_duration(rule.window)}"
        )
        found.append(Observation(key, share, detail, count=ended, labels=labels))
    return found


def run_duration(store: ServerStore, rule: Rule, now: float) -> list[Observation]:
    rows = store.long_runs(
        now, rule.threshold, now - rule.window, workflow=rule.workflow, namespace=rule.namespace
    )
    found: dict[str, Observation] = {}
    more: dict[str, int] = {}
    for row in rows:  # longest first: the first run of a key is the one reported
        key, labels = _key(rule, row.workflow, row.namespace)
        if key in found:
            more[key] = more.get(key, 0) + 1
            continue
        verb = "has been running for" if row.status in ("running", "waiting") else "took"
        took = format_duration(row.duration)
        detail = f"{_subject(key)}: run {row.run_id} of {row.workflow} {verb} {took}"
        info = {"run_id": row.run_id, "workflow": row.workflow}
        found[key] = Observation(key, row.duration, detail, labels=labels, info=info)
    return [_and_more(o, more.get(o.key, 0), "run") for o in found.values()]


def step_retries(store: ServerStore, rule: Rule, now: float) -> list[Observation]:
    rows = store.retried_steps(
        now - rule.window, int(rule.threshold), workflow=rule.workflow, namespace=rule.namespace
    )
    found: dict[str, Observation] = {}
    more: dict[str, int] = {}
    for row in rows:  # most retried first
        key, labels = _key(rule, row.workflow, row.namespace)
        if key in found:
            more[key] = more.get(key, 0) + 1
            continue
        times = "once" if row.retries == 1 else f"{row.retries} times"
        detail = f"{_subject(key)}: step {row.step} of run {row.run_id} was retried {times}"
        info = {"run_id": row.run_id, "step": row.step, "workflow": row.workflow}
        found[key] = Observation(key, float(row.retries), detail, labels=labels, info=info)
    return [_and_more(o, more.get(o.key, 0), "step") for o in found.values()]


def _and_more(seen: Observation, more: int, what: str) -> Observation:
    if not more:
        return seen
    from dataclasses import replace

    many = f"{what}s" if more > 1 else what
    return replace(seen, detail=f"{seen.detail} (and {more} more {many})")


def schedule_missed(store: ServerStore, rule: Rule, now: float) -> list[Observation]:
    """A schedule is missed when its next fire is more than ``grace`` overdue (no
    scheduler fired it), or when fires were recorded as missed in the window (the
    scheduler was down past them and its catch-up policy skipped them)."""
    schedules = [
        s for s in store.list_schedules() if rule.workflow is None or s.workflow == rule.workflow
    ]
    by_id = {s.id: s for s in schedules}
    counts: dict[str, int] = {}
    words: dict[str, list[str]] = {}
    for s in schedules:
        if s.next_fire is not None and now - s.next_fire > rule.threshold:
            counts[s.id] = 1
            due = datetime.fromtimestamp(s.next_fire, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            words[s.id] = [f"did not fire at {due} ({format_duration(now - s.next_fire)} late)"]
    for miss in store.missed_fires(now - rule.window, {s.workflow for s in schedules}):
        if miss.schedule_id not in by_id:
            continue
        counts[miss.schedule_id] = counts.get(miss.schedule_id, 0) + miss.count
        times = "1 fire was" if miss.count == 1 else f"{miss.count} fires were"
        words.setdefault(miss.schedule_id, []).append(
            f"{times} missed in the last {format_duration(rule.window)}"
        )
    found = []
    for sid, count in sorted(counts.items()):
        s = by_id[sid]
        detail = f"schedule {s.cron!r} ({s.timezone}) of {s.workflow} " + " and ".join(words[sid])
        labels = {"workflow": s.workflow, "namespace": s.namespace, "schedule": s.cron}
        found.append(Observation(sid, float(count), detail, labels=labels))
    return found


def worker_silent(store: ServerStore, rule: Rule, now: float) -> list[Observation]:
    found = []
    for beat in store.worker_heartbeats():
        age = max(0.0, now - beat.at)
        detail = f"worker {beat.worker}: last heartbeat {format_duration(age)} ago"
        found.append(Observation(beat.worker, age, detail, labels={"worker": beat.worker}))
    return found


def anomaly(store: ServerStore, rule: Rule, now: float) -> list[Observation]:
    """Runs that succeeded in the window with a duration far outside their history
    (:mod:`plait.ops.insights_anomalies`, robust z-score at least ``threshold``); the
    value is the largest ``|z|`` of a key, and the alert names that run."""
    from plait.ops.insights import HistoryFilter, Insights
    from plait.ops.insights_anomalies import Thresholds

    insights = Insights(store, method="tokens", thresholds=Thresholds(score=rule.threshold))
    where = HistoryFilter(workflow=rule.workflow, namespace=rule.namespace)
    flagged = [
        a
        for a in insights.anomalies(now - rule.window, where, ANOMALY_LIMIT, steps=False)
        if rule.direction in ("any", a.direction)
    ]
    found: dict[str, Observation] = {}
    more: dict[str, int] = {}
    for a in sorted(flagged, key=lambda a: (-abs(a.score), -a.at, a.run_id)):
        key, labels = _key(rule, a.workflow, a.namespace)
        if key in found:
            more[key] = more.get(key, 0) + 1
            continue
        times = (
            a.duration / max(a.median, 1e-3)
            if a.direction == "slow"
            else a.median / max(a.duration, 1e-3)
        )
        how = "slower" if a.direction == "slow" else "faster"
        detail = (
            f"{_subject(key)}: run {a.run_id} of {a.workflow} took {format_duration(a.duration)}, "
            f"{times:.1f}× {how} than its median of {format_duration(a.median)} "
            f"(robust z {a.score:+.1f})"
        )
        info = {"run_id": a.run_id, "workflow": a.workflow, "direction": a.direction}
        found[key] = Observation(key, round(abs(a.score), 2), detail, labels=labels, info=info)
    return [_and_more(o, more.get(o.key, 0), "run") for o in found.values()]


#: the store-backed sources by rule kind
STORE_SOURCES: dict[str, Callable[[Any, Rule, float], list[Observation]]] = {
    "failure_rate": failure_rate,
    "run_duration": run_duration,
    "step_retries": step_retries,
    "schedule_missed": schedule_missed,
    "worker_silent": worker_silent,
    "anomaly": anomaly,
}

__all__ = ["STORE_SOURCES"]
