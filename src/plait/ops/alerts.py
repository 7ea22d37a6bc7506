"""Alert rules, evaluated purely: a rule, what was observed and the previous states in;
the new states and the notifications to send out.

Nothing here reads the clock, the store or the network: the alert service
(:mod:`plait.ops.alert_service`) gathers :class:`Observation` s, calls
:func:`evaluate`, and applies each :class:`Transition` to the store with a conditional
write. So the state machine is tested on its own, and two evaluators that reach the same
transition cannot both apply it (the second one's write finds the state changed).

The life of one alert — a rule and a *key* (a workflow, a worker, a schedule, an HTTP
instance) — is Prometheus's:

* the condition holds for the first time: ``pending`` (or ``firing`` at once when the
  rule's ``for`` is 0);
* it still holds ``for`` later: ``firing``, and a ``firing`` notification;
* it still holds ``repeat`` after the last notification: a ``repeat`` notification;
* it no longer holds: a pending alert is dropped silently, a firing one is resolved with
  a ``resolved`` notification (unless the rule says ``send_resolved: false``).

An observation that is missing for a key means the condition does not hold there (no
failing runs, no late schedule). A source that could not be read gives no observations
at all for the rule, and the service then skips the rule: missing data never resolves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from plait.model.durations import format_duration

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

#: The kinds of rule, and the unit of the value each one compares with its threshold.
UNITS: dict[str, str] = {
    "failure_rate": "ratio",
    "run_duration": "duration",
    "step_retries": "count",
    "schedule_missed": "count",
    "worker_silent": "duration",
    "error_rate": "ratio",
    "http_latency": "duration",
    "service_down": "flag",
    "anomaly": "score",
}
KINDS: tuple[str, ...] = tuple(UNITS)
#: kinds whose value is a share of a sample, which must hold ``min_count`` items
RATIO_KINDS = frozenset({"failure_rate", "error_rate"})
#: kinds read from the run store (the rest from the schedules, workers or HTTP)
RUN_KINDS = frozenset({"failure_rate", "run_duration", "step_retries", "anomaly"})
HTTP_KINDS = frozenset({"error_rate", "http_latency"})

EVENTS = ("firing", "repeat", "resolved")
#: routes left out of the HTTP rules by default: the scrape itself, and log streams,
#: which stay open as long as the run they follow
DEFAULT_EXCLUDED_ROUTES = ("/metrics", "/api/v1/runs/{run_id}/logs")


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule, checked (see :mod:`plait.ops.alert_rules` for the YAML form).

    ``threshold`` is in the kind's unit (:data:`UNITS`): a ratio (0.01 for 1 %),
    seconds, or a count. ``min_count`` is the smallest sample a ratio is judged on
    (``min_runs``, ``min_requests``). ``window`` is how far back the sources look.
    """

    name: str
    kind: str
    severity: str = "warning"
    threshold: float = 0.0
    window: float = 3600.0
    for_: float = 0.0
    repeat: float = 4 * 3600.0
    min_count: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    channels: tuple[str, ...] = ()
    description: str = ""
    enabled: bool = True
    send_resolved: bool = True
    # run rules
    workflow: str | None = None
    namespace: str | None = None
    group_by: str = "workflow"
    #: anomaly rules: ``slow``, ``fast`` or ``any``
    direction: str = "any"
    # HTTP rules and service_down
    url: str | None = None
    quantile: float = 0.95
    timeout: float = 10.0
    routes: tuple[str, ...] = ()
    exclude_routes: tuple[str, ...] = DEFAULT_EXCLUDED_ROUTES

    @property
    def unit(self) -> str:
        return UNITS[self.kind]


@dataclass(frozen=True, slots=True)
class Observation:
    """What a source saw for one key of a rule.

    ``value`` is compared with the threshold; ``count`` is the sample behind a ratio
    (runs, requests); ``detail`` says it in words (``3 of 10 runs failed``);
    ``labels`` identify the key (``workflow``, ``worker``); ``info`` are facts that
    change from one pass to the next (the run or step behind the value)."""

    key: str
    value: float
    detail: str = ""
    count: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertState:
    """The stored state of one alert that is ``pending`` or ``firing``.

    ``since`` is when the condition started to hold; ``firing_since`` when the alert
    fired; ``alert_id`` the alert's entry in the history (``firing`` alerts only);
    ``revision`` the number every conditional write checks and increments."""

    rule: str
    key: str
    state: Literal["pending", "firing"]
    severity: str
    value: float | None
    threshold: float | None
    summary: str
    since: float
    labels: Mapping[str, str] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    firing_since: float | None = None
    last_notified_at: float | None = None
    alert_id: int | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of one alert: ``before`` → ``after`` (None: no state), and the
    notification ``event`` it causes, if any."""

    rule: str
    key: str
    before: AlertState | None
    after: AlertState | None
    event: str | None = None

    @property
    def state(self) -> AlertState:
        """The state the notification speaks of (the last one for a resolution)."""
        found = self.after or self.before
        assert found is not None
        return found


# -- evaluation -----------------------------------------------------------------------------
def breached(rule: Rule, seen: Observation) -> bool:
    """True when ``seen`` breaks the rule: above the threshold, on a large enough
    sample (``count``, when the source gives one); any miss for ``schedule_missed``,
    down for ``service_down``."""
    if seen.count is not None and seen.count < rule.min_count:
        return False
    if rule.kind in ("schedule_missed", "service_down"):
        return seen.value >= 1
    return seen.value > rule.threshold


def evaluate(
    rule: Rule,
    observations: Iterable[Observation],
    previous: Iterable[AlertState],
    now: float,
) -> list[Transition]:
    """The transitions of ``rule``'s alerts at ``now``, by key (see the module
    docstring). Keys whose state does not change give no transition."""
    seen = {o.key: o for o in observations}
    before = {s.key: s for s in previous if s.rule == rule.name}
    changes: list[Transition] = []
    for key in sorted(set(seen) | set(before)):
        found = seen.get(key)
        old = before.get(key)
        if found is not None and breached(rule, found):
            change = _holding(rule, found, old, now)
        else:
            change = _clear(rule, key, old)
        if change is not None:
            changes.append(change)
    return changes


def _holding(
    rule: Rule, seen: Observation, old: AlertState | None, now: float
) -> Transition | None:
    fresh = _observed(rule, seen, old, now)
    if old is None or old.state == "pending":
        if now - fresh.since >= rule.for_:
            fired = replace(fresh, state="firing", firing_since=now, last_notified_at=now)
            return Transition(rule.name, seen.key, old, fired, "firing")
        if old is not None and _same(old, fresh):
            return None
        return Transition(rule.name, seen.key, old, fresh)
    if rule.repeat > 0 and now - (old.last_notified_at or old.since) >= rule.repeat:
        again = replace(fresh, last_notified_at=now)
        return Transition(rule.name, seen.key, old, again, "repeat")
    if _same(old, fresh):
        return None
    return Transition(rule.name, seen.key, old, fresh)


def _observed(rule: Rule, seen: Observation, old: AlertState | None, now: float) -> AlertState:
    """The state ``old`` (or a new pending one) with what was just observed."""
    summary = describe(rule, seen)
    if old is None:
        return AlertState(
            rule=rule.name,
            key=seen.key,
            state="pending",
            severity=rule.severity,
            value=seen.value,
            threshold=_threshold(rule),
            summary=summary,
            since=now,
            labels={**rule.labels, **seen.labels},
            info=dict(seen.info),
        )
    return replace(
        old,
        severity=rule.severity,
        value=seen.value,
        threshold=_threshold(rule),
        summary=summary,
        labels={**rule.labels, **seen.labels},
        info=dict(seen.info),
    )


def _clear(rule: Rule, key: str, old: AlertState | None) -> Transition | None:
    if old is None:
        return None
    return Transition(rule.name, key, old, None, "resolved" if old.state == "firing" else None)


def _same(a: AlertState, b: AlertState) -> bool:
    return (a.value, a.summary, a.severity, a.threshold, dict(a.labels), dict(a.info)) == (
        b.value,
        b.summary,
        b.severity,
        b.threshold,
        dict(b.labels),
        dict(b.info),
    )


def _threshold(rule: Rule) -> float | None:
    return None if rule.kind in ("schedule_missed", "service_down") else rule.threshold


# -- words ----------------------------------------------------------------------------------
def format_value(unit: str, value: float | None) -> str:
    """A value as people read it: ``2.5%``, ``4m05s``, ``3``, ``down``."""
    if value is None:
        return "-"
    if unit == "ratio":
        return f"{value * 100:.3g}%"
    if unit == "duration":
        return format_duration(value)
    if unit == "flag":
        return "down" if value >= 1 else "up"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def describe(rule: Rule, seen: Observation) -> str:
    """One line: what was observed, against the threshold."""
    what = seen.detail or f"{rule.kind} {format_value(rule.unit, seen.value)}"
    if rule.kind in ("schedule_missed", "service_down"):
        return what
    limit = format_value(rule.unit, rule.threshold)
    return f"{what} (threshold {limit})"


def notice(rule: Rule, change: Transition, now: float) -> dict[str, Any]:
    """What a notification of ``change`` says, as JSON kept with it until it is sent:
    ``title`` and ``text`` for people, the alert's fields for machines."""
    state = change.state
    event = change.event or "firing"
    level = state.severity.upper()
    if event == "resolved":
        lasted = format_duration(max(0.0, now - (state.firing_since or state.since)))
        title = f"[RESOLVED] {rule.name}"
        text = f"{rule.name} resolved after {lasted}. It was: {state.summary}"
    else:
        title = f"[{level}] {rule.name}" + (" (still firing)" if event == "repeat" else "")
        text = state.summary
    if rule.description:
        text = f"{text}\n{rule.description}"
    return {
        "title": title,
        "text": text,
        "event": event,
        "alert": rule.name,
        "key": state.key,
        "state": "resolved" if event == "resolved" else "firing",
        "severity": state.severity,
        "value": state.value,
        "threshold": state.threshold,
        "labels": dict(state.labels),
        "since": state.firing_since or state.since,
        "resolved_at": now if event == "resolved" else None,
        "workflow": state.labels.get("workflow") or state.info.get("workflow"),
        "run_id": state.info.get("run_id"),
        "step": state.info.get("step"),
    }


def notices(rule: Rule, change: Transition, now: float) -> list[tuple[str, dict[str, Any]]]:
    """``(channel, notice)`` for each of the rule's channels that hears of ``change``."""
    if change.event is None or not rule.channels:
        return []
    if change.event == "resolved" and not rule.send_resolved:
        return []
    body = notice(rule, change, now)
    return [(channel, body) for channel in rule.channels]


# -- HTTP histograms ------------------------------------------------------------------------
def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a histogram given as cumulative ``(upper bound, count)``
    buckets (``+Inf`` last), interpolated inside the bucket as Prometheus's
    ``histogram_quantile`` does. None for an empty histogram."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # beyond the largest finite bucket: its bound
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside > 0 else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return ordered[-1][0]


__all__ = [
    "DEFAULT_EXCLUDED_ROUTES",
    "EVENTS",
    "KINDS",
    "SEVERITIES",
    "UNITS",
    "AlertState",
    "Observation",
    "Rule",
    "Transition",
    "breached",
    "describe",
    "evaluate",
    "format_value",
    "notice",
    "notices",
    "quantile",
]
