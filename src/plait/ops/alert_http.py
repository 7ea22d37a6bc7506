"""The server's own HTTP traffic for the ``error_rate`` and ``http_latency`` rules, and
the ``service_down`` check.

The HTTP rules read Prometheus text from a ``/metrics`` URL: the rule's ``url``, or by
default the API of this very process (``plait serve``). Counters there only grow, so a
window is the difference between the newest scrape and the one taken a window
earlier; the evaluator keeps its recent scrapes in memory for that. Before it has a
scrape that old (just after start) the window is as long as it has. Reading the text
rather than the process's registry means one code path for the local API and for any
other instance, and the same numbers Prometheus would see.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from plait.model.durations import format_duration
from plait.ops.alerts import Observation, Rule, format_value, quantile

REQUESTS = "plait_http_requests_total"
BUCKETS = "plait_http_request_duration_seconds_bucket"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters of one scrape: requests by (route, status), and the latency histogram's
    cumulative buckets by route, then upper bound."""

    at: float
    requests: dict[tuple[str, str], float] = field(default_factory=dict)
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)

    def minus(self, older: Snapshot | None) -> Snapshot:
        """What happened between ``older`` and this scrape (a counter that went down
        was reset by a restart: its new value is what happened since)."""
        if older is None:
            return self
        requests = {k: _delta(v, older.requests.get(k)) for k, v in self.requests.items()}
        buckets = {
            route: {le: _delta(v, older.buckets.get(route, {}).get(le)) for le, v in les.items()}
            for route, les in self.buckets.items()
        }
        return Snapshot(self.at, requests, buckets)


def _delta(now: float, before: float | None) -> float:
    if before is None or now < before:
        return now
    return now - before


def parse(text: str, at: float) -> Snapshot:
    """The counters the HTTP rules use, from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    requests: dict[tuple[str, str], float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if sample.name == REQUESTS:
                key = (route, sample.labels.get("status", ""))
                requests[key] = requests.get(key, 0.0) + sample.value
            elif sample.name == BUCKETS:
                le = float(sample.labels.get("le", "+Inf"))
                per = buckets.setdefault(route, {})
                per[le] = per.get(le, 0.0) + sample.value
    return Snapshot(at, requests, buckets)


def _included(rule: Rule, route: str) -> bool:
    if rule.routes and route not in rule.routes:
        return False
    return route not in rule.exclude_routes


def error_rate(rule: Rule, window: Snapshot, key: str) -> Observation:
    """Share of requests answered with a 5xx status in ``window``."""
    total = errors = 0.0
    for (route, status), count in window.requests.items():
        if not _included(rule, route):
            continue
        total += count
        if status.startswith("5"):
            errors += count
    share = errors / total if total else 0.0
    detail = (
        f"{key}: {errors:.0f} of {total:.0f} requests answered 5xx "
        f"({format_value('ratio', share)}) in the last {format_duration(rule.window)}"
    )
    return Observation(key, share, detail, count=int(total), labels={"instance": key})


def latency(rule: Rule, window: Snapshot, key: str) -> Observation:
    """The rule's quantile of response times in ``window``, over the included routes."""
    merged: dict[float, float] = {}
    for route, les in window.buckets.items():
        if _included(rule, route):
            for le, count in les.items():
                merged[le] = merged.get(le, 0.0) + count
    total = merged.get(float("inf"), 0.0)
    value = quantile(rule.quantile, merged.items()) or 0.0
    name = f"p{rule.quantile * 100:g}"
    detail = (
        f"{key}: {name} response time {format_value('duration', value)} over {total:.0f} "
        f"requests in the last {format_duration(rule.window)}"
    )
    return Observation(key, value, detail, count=int(total), labels={"instance": key})


class HttpWatch:
    """Scrapes ``/metrics`` URLs (each at most once per evaluation) and keeps recent
    scrapes to difference over a window. ``default_url`` is this process's own API
    (``instance`` names it in alerts), or None when the process serves no API."""

    def __init__(self, default_url: str | None = None, instance: str | None = None) -> None:
        self.default_url = default_url
        self.instance = instance or default_url
        self._scrapes: dict[str, deque[Snapshot]] = {}
        self._fresh: dict[str, Snapshot] = {}
        self._longest = 0.0

    def start_pass(self) -> None:
        """Forget which URLs this evaluation scraped: the next ask scrapes again."""
        self._fresh.clear()

    def target(self, rule: Rule) -> tuple[str, str] | None:
        """(URL, key) a rule reads, or None when it has none here."""
        if rule.url:
            return rule.url, rule.url
        if self.default_url:
            return self.default_url, str(self.instance)
        return None

    async def window(self, url: str, seconds: float, now: float) -> Snapshot:
        """The counters of the last ``seconds`` at ``url`` (PlaitError if unreachable)."""
        current = self._fresh.get(url)
        kept = self._scrapes.setdefault(url, deque())
        if current is None:
            current = parse(await fetch(url, 10.0), now)
            self._fresh[url] = current
            kept.append(current)
        self._longest = max(self._longest, seconds)
        while len(kept) > 1 and kept[1].at <= now - self._longest:
            kept.popleft()  # kept[0] stays: the newest scrape before the longest window
        older = _at_or_before(kept, now - seconds)
        if older is None and kept[0] is not current:
            older = kept[0]  # not a whole window yet: as long as there is
        return current if older is current else current.minus(older)


def _at_or_before(kept: Iterable[Snapshot], moment: float) -> Snapshot | None:
    found = None
    for snap in kept:
        if snap.at <= moment:
            found = snap
    return found


async def fetch(url: str, seconds: float) -> str:
    """GET ``url``'s text; PlaitError saying why it could not."""
    import httpx

    from plait.errors import PlaitError

    try:
        async with httpx.AsyncClient(timeout=seconds) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        raise PlaitError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 400:
        raise PlaitError(f"GET {url} answered {response.status_code}")
    return response.text


async def check(rule: Rule) -> Observation:
    """``service_down``: the URL answers below 400 within the timeout (value 0), or
    not (value 1, and why)."""
    import httpx

    assert rule.url is not None
    problem = None
    try:
        async with httpx.AsyncClient(timeout=rule.timeout) as client:
            response = await client.get(rule.url)
        if response.status_code >= 400:
            problem = f"answered {response.status_code}"
    except httpx.TimeoutException:
        problem = f"did not answer within {format_duration(rule.timeout)}"
    except httpx.HTTPError as exc:
        problem = f"cannot be reached: {type(exc).__name__}: {exc}".rstrip(": ")
    detail = f"{rule.url} {problem}" if problem else f"{rule.url} is up"
    return Observation(rule.url, 1.0 if problem else 0.0, detail, labels={"url": rule.url})


__all__ = ["HttpWatch", "Snapshot", "check", "error_rate", "fetch", "latency", "parse"]
