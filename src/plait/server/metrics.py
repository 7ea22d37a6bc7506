"""Prometheus metrics (prefix ``plait_``): HTTP traffic, and the state of runs, steps,
the queue and workers read from the store when scraped.

Each app gets its own :class:`CollectorRegistry` — never the process-global one — so
two apps in one process (tests, ``plait serve`` next to a test server) never mix or
collide. :func:`install` adds the HTTP middleware and the store collector; the
``/metrics`` route (in :mod:`plait.server.routes.health`) renders :func:`registry_of`.

Store metrics are gauges computed at scrape time by a few aggregate queries over
indexed columns, so they are right after a restart and agree across API processes
that share one database; nothing is counted in memory that another process could miss.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plait.server.services import Services
from plait.store.server_workers import LOST_AFTER, WorkerRecord
from plait.store.tables import runs, steps

log = logging.getLogger(__name__)

#: Latency buckets (seconds) from a fast read to a slow run start.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def registry_of(app: FastAPI) -> CollectorRegistry:
    """The app's registry, made with the store collector on first use."""
    found: CollectorRegistry | None = getattr(app.state, "metrics_registry", None)
    if found is None:
        found = CollectorRegistry(auto_describe=True)
        found.register(StoreCollector(app.state.services))
        app.state.metrics_registry = found
    return found


def install(app: FastAPI) -> None:
    """Measure every HTTP request of ``app`` (call from ``create_app``, after the other
    middleware so it measures them too)."""
    registry = registry_of(app)
    requests = Counter(
        "plait_http_requests",
        "HTTP requests by method, route template and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "plait_http_request_duration_seconds",
        "Time to the end of the response by method and route template.",
        ["method", "route"],
        buckets=BUCKETS,
        registry=registry,
    )
    app.add_middleware(HttpMetrics, requests=requests, latency=latency)
    from plait.ops import metrics as run_metrics  # runs, steps, retries, schedule lag

    run_metrics.install(registry, app.state.services)


class HttpMetrics:
    """ASGI middleware: counts and times requests by route *template*
    (``/api/v1/runs/{run_id}``), so label cardinality stays bounded; paths no route
    matched are counted as ``unmatched``."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                code[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            template = route_template(scope)
            method = str(scope.get("method", "GET"))
            self.requests.labels(method, template, str(code[0])).inc()
            self.latency.labels(method, template).observe(time.perf_counter() - start)


def route_template(scope: Scope) -> str:
    """The matched route's template with its router prefixes (``/api/v1/runs/{run_id}``).

    The route in the scope may carry only its own path, without the prefix it was
    included under (it depends on the FastAPI version), so the prefix is taken from the
    real path: our prefixes are static, so the leading segments are the prefix.
    """
    tail = getattr(scope.get("route"), "path_format", None)
    if not isinstance(tail, str):
        return "unmatched"
    path = str(scope.get("path", ""))
    extra = path.count("/") - tail.count("/")
    if extra <= 0:
        return tail
    return "/".join(path.split("/")[: extra + 1]) + tail


class StoreCollector(Collector):
    """Gauges read from the store at scrape time (see the module docstring)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def describe(self) -> list[Metric]:
        return []  # collected lazily: do not query the store when registering

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect(time.time())
        except Exception:  # a broken store must not break /metrics for the HTTP metrics
            log.exception("cannot read store metrics")
            up = GaugeMetricFamily("plait_store_up", "1 if the store answered the scrape.")
            up.add_metric([], 0)
            yield up

    def _collect(self, now: float) -> Iterator[Metric]:
        engine = self.services.store.engine
        with engine.connect() as conn:
            run_rows = conn.execute(_runs_by_workflow()).all()
            step_rows = conn.execute(_steps_by_status()).all()
            queue_rows = conn.execute(_queues(now)).all()
        registered = self.services.server_store.list_workers()
        up = GaugeMetricFamily("plait_store_up", "1 if the store answered the scrape.")
        up.add_metric([], 1)
        yield up
        yield _family(
            "plait_runs",
            "Runs in the store by workflow and status.",
            ["workflow", "status"],
            [((w, s), n) for w, s, n in run_rows],
        )
        yield _family(
            "plait_steps",
            "Steps in the store by status.",
            ["status"],
            [((s,), n) for s, n in step_rows],
        )
        yield from _queue_families(queue_rows, registered, now)
        yield from _worker_families(registered, now)


def _family(name: str, doc: str, labels: list[str], rows: list[tuple[Any, Any]]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, number in rows:
        family.add_metric([str(v) for v in values], float(number))
    return family


def _runs_by_workflow() -> Any:
    c = runs.c
    return select(c.workflow, c.status, func.count()).group_by(c.workflow, c.status)


def _steps_by_status() -> Any:
    c = steps.c
    return select(c.status, func.count()).group_by(c.status)


def _queue_families(
    rows: Sequence[Any], registered: Sequence[WorkerRecord], now: float
) -> Iterator[Metric]:
    """Depth and oldest age per queue: every queue with due steps, every queue a live
    worker serves, and ``default`` (0 when empty, so dashboards and alerts see it)."""
    found = {str(q): (int(n), oldest) for q, n, oldest in rows}
    live = [w for w in registered if w.status(now) in ("running", "draining")]
    names = sorted({"default", *found, *(q for w in live for q in w.queues)})
    depth = GaugeMetricFamily(
        "plait_queue_depth",
        "Steps due to run per queue: queued, or retrying past their backoff.",
        labels=["queue"],
    )
    age = GaugeMetricFamily(
        "plait_queue_oldest_age_seconds",
        "How long the longest-waiting due step of each queue has waited.",
        labels=["queue"],
    )
    for name in names:
        n, oldest = found.get(name, (0, None))
        depth.add_metric([name], n)
        age.add_metric([name], max(0.0, now - oldest) if oldest is not None else 0.0)
    yield depth
    yield age


def _worker_families(registered: Sequence[WorkerRecord], now: float) -> Iterator[Metric]:
    """Workers by state (every state, 0 included) and the heartbeat age of each one
    that has not stopped: a lost worker's age keeps growing, which is what to alert on."""
    states = dict.fromkeys(("running", "draining", "stopped", "lost"), 0)
    for w in registered:
        states[w.status(now)] += 1
    yield _family(
        "plait_workers",
        "Registered worker processes by state (lost: stopped beating without stopping).",
        ["state"],
        [((state,), n) for state, n in states.items()],
    )
    yield _family(
        "plait_worker_heartbeat_age_seconds",
        "Seconds since each worker that has not stopped last beat (about 10 s normally; "
        f"over {LOST_AFTER:g} s means it is lost and its steps are retried elsewhere).",
        ["worker"],
        [((w.id,), max(0.0, now - w.heartbeat_at)) for w in registered if w.state != "stopped"],
    )


def _queues(now: float) -> Any:
    """Due steps per queue and since when the oldest has waited."""
    from plait.store.server_workers import due_by_queue

    return due_by_queue(now)
