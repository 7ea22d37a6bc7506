"""Prometheus counters and histograms of what runs do: runs and steps by workflow and
status, their durations, retries, and schedule lag.

**Where the numbers come from.** Not from the processes that run steps: in a cluster a
``plait worker`` has no ``/metrics``, and counting in one process would miss what the
others did. Every transition is already recorded in the store's event outbox (the
``events`` table, written in the transaction that makes it) and every schedule fire in
``schedule_fires``. So each API process *tails* those tables at scrape time: it reads
the rows added since its last scrape (by id, an index range) and adds them up in memory.
Every API process therefore reports the whole store's activity since it started,
whichever process did the work — aggregate replicas with ``max``, not ``sum``.

Ids are taken when rows are inserted but become visible when their transaction commits,
so on PostgreSQL a smaller id can appear after a larger one. A missing id below the
highest seen is kept as a *gap* and read again at the next scrapes, for up to
:data:`GAP_WAIT` seconds (a rolled-back insert leaves a gap for ever).

Durations come with the rows: a run's from its ``run.started`` event to its end event, a
step attempt's from its ``attempts`` row (the one the event names). A step's action
(``uses``) comes from the workflow version's plan, cached per version.

AI usage (``plait_ai_tokens_total``, ``plait_ai_cost_usd_total``) comes the same way: a
``step.succeeded`` row brings only the ``usage`` and ``model`` keys of its step's
outputs, cut out by the database (see docs/decisions/0004-ai-usage-metrics.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import aliased

from plait.store.tables import attempts, events, runs, schedule_fires, steps

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from sqlalchemy import Engine

    from plait.model.plan import Plan

log = logging.getLogger(__name__)

RUN_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
#: how long a missing id is waited for (see the module docstring)
GAP_WAIT = 60.0
#: most gaps remembered at once (a huge jump of a sequence is not waited for)
MAX_GAPS = 2000
#: most rows one scrape reads per table; the rest is read by the next scrapes
MAX_ROWS = 50_000
BATCH = 5_000

RUN_ENDS = ("run.succeeded", "run.failed", "run.cancelled", "run.timed_out")
STEP_ENDS = ("step.succeeded", "step.failed", "step.timed_out", "step.skipped", "step.cancelled")
#: events that close an attempt (``data.attempt`` names it)
ATTEMPT_ENDS = ("step.succeeded", "step.failed", "step.timed_out", "step.retrying")
_GROUP = "group"  # the ``uses`` of a parallel/sequence group or a fan-out's parent


def install(registry: CollectorRegistry, services: Any) -> None:
    """Add the run metrics to ``registry`` (once). ``services`` gives the store engine
    and the plans of workflow versions (:class:`~plait.server.services.Services`)."""
    if getattr(registry, "_plait_run_metrics", False):
        return
    registry.register(RunMetrics(lambda: services.store.engine, services.runs.plan))
    registry._plait_run_metrics = True  # type: ignore[attr-defined]


# -- accumulators ----------------------------------------------------------------------------
@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    series: dict[tuple[str, ...], list[float]] = field(default_factory=dict)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        """``series[labels]`` is ``[count per bucket …, count in +Inf, sum]``."""
        row = self.series.get(labels)
        if row is None:
            row = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        value = max(0.0, value)
        index = next((i for i, b in enumerate(self.buckets) if value <= b), len(self.buckets))
        row[index] += 1
        row[-1] += value

    def family(self, name: str, doc: str, labels: Sequence[str]) -> Metric:
        out = HistogramMetricFamily(name, doc, labels=list(labels))
        for values, row in sorted(self.series.items()):
            total, cumulative = 0.0, []
            for bound, count in zip((*self.buckets, float("inf")), row[:-1], strict=True):
                total += count
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
            out.add_metric(list(values), cumulative, sum_value=row[-1])
        return out


def _counter(name: str, doc: str, labels: Sequence[str], counts: dict[Any, float]) -> Metric:
    out = CounterMetricFamily(name, doc, labels=list(labels))
    for values, count in sorted(counts.items()):
        out.add_metric(list(values), count)
    return out


class _Cursor:
    """How far a table has been read: the highest id, and the smaller ids not seen yet
    with the time they were first missed."""

    def __init__(self, high: int) -> None:
        self.high = high
        self.gaps: dict[int, float] = {}

    def take(self, ids: Sequence[int], now: float) -> None:
        """Record rows read (in id order); ids skipped over become gaps."""
        for row_id in ids:
            if row_id <= self.high:
                self.gaps.pop(row_id, None)
                continue
            for missing in range(self.high + 1, min(row_id, self.high + 1 + MAX_GAPS)):
                self.gaps[missing] = now
            self.high = row_id
        if len(self.gaps) > MAX_GAPS:
            for old in sorted(self.gaps)[: len(self.gaps) - MAX_GAPS]:
                del self.gaps[old]

    def expire(self, now: float) -> None:
        for row_id, since in list(self.gaps.items()):
            if now - since > GAP_WAIT:
                del self.gaps[row_id]


# -- the collector -----------------------------------------------------------------------
class RunMetrics(Collector):
    """Counters and histograms from the event outbox and the schedule fires, tailed at
    scrape time (see the module docstring)."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        plans: Callable[[int], Plan],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._plans = plans
        self._clock = clock
        self._lock = threading.Lock()
        self._uses: dict[tuple[int | None, str], str] = {}
        self._events: _Cursor | None = None
        self._fires: _Cursor | None = None
        self.runs_started: dict[tuple[str, ...], float] = {}
        self.runs_ended: dict[tuple[str, ...], float] = {}
        self.steps_ended: dict[tuple[str, ...], float] = {}
        self.retries: dict[tuple[str, ...], float] = {}
        self.misses: dict[tuple[str, ...], float] = {}
        self.ai_tokens: dict[tuple[str, ...], float] = {}
        self.ai_cost: dict[tuple[str, ...], float] = {}
        self.run_seconds = _Histogram(RUN_BUCKETS)
        self.step_seconds = _Histogram(STEP_BUCKETS)
        self.lag_seconds = _Histogram(LAG_BUCKETS)
        try:  # start from now: counters count what happens while this process runs
            self._start()
        except Exception:  # the store is down: start at the first scrape that reaches it
            log.warning("run metrics start at the first scrape that reaches the store")

    def describe(self) -> list[Metric]:
        return []  # collected lazily: do not query the store when registering

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            try:
                self._start()
                self._read_events()
                self._read_fires()
            except Exception:  # keep the counts so far; the next scrape reads on
                log.exception("cannot read run metrics from the store")
            yield from self._families()

    # -- reading ---------------------------------------------------------------------------
    def _start(self) -> None:
        if self._events is not None and self._fires is not None:
            return
        with self._engine().connect() as conn:
            high_event = conn.execute(select(func.max(events.c.id))).scalar() or 0
            high_fire = conn.execute(select(func.max(schedule_fires.c.id))).scalar() or 0
        self._events = _Cursor(int(high_event))
        self._fires = _Cursor(int(high_fire))

    def _read_events(self) -> None:
        cursor = self._events
        assert cursor is not None
        now = self._clock()
        cursor.expire(now)
        with self._engine().connect() as conn:
            if cursor.gaps:
                rows = conn.execute(_event_rows(events.c.id.in_(sorted(cursor.gaps)))).all()
                self._count_events(rows)
                cursor.take([r.id for r in rows], now)
            for _ in range(MAX_ROWS // BATCH):
                rows = conn.execute(_event_rows(events.c.id > cursor.high).limit(BATCH)).all()
                self._count_events(rows)
                cursor.take([r.id for r in rows], now)
                if len(rows) < BATCH:
                    break

    def _read_fires(self) -> None:
        cursor = self._fires
        assert cursor is not None
        now = self._clock()
        cursor.expire(now)
        f = schedule_fires.c
        columns = select(f.id, f.workflow, f.status, f.fire_time, f.recorded_at)
        with self._engine().connect() as conn:
            if cursor.gaps:
                rows = conn.execute(columns.where(f.id.in_(sorted(cursor.gaps)))).all()
                self._count_fires(rows)
                cursor.take([r.id for r in rows], now)
            for _ in range(MAX_ROWS // BATCH):
                query = columns.where(f.id > cursor.high).order_by(f.id).limit(BATCH)
                rows = conn.execute(query).all()
                self._count_fires(rows)
                cursor.take([r.id for r in rows], now)
                if len(rows) < BATCH:
                    break

    # -- counting --------------------------------------------------------------------------
    def _count_events(self, rows: Sequence[Any]) -> None:
        for row in rows:
            if row.workflow is None:
                continue  # a published event: it belongs to no run
            kind = row.type
            if kind == "run.started":
                _add(self.runs_started, (row.workflow,))
            elif kind in RUN_ENDS:
                status = kind.removeprefix("run.")
                _add(self.runs_ended, (row.workflow, status))
                if row.run_started is not None:
                    self.run_seconds.observe((row.workflow, status), row.at - row.run_started)
            elif kind.startswith("step."):
                self._count_step(row, kind.removeprefix("step."))

    def _count_step(self, row: Any, status: str) -> None:
        uses = self._uses_of(row.version_id, row.node)
        if uses == _GROUP or row.fanout is not None:
            return  # its children are counted
        if status == "succeeded":
            _count_usage(self, row)
        if status == "retrying":
            _add(self.retries, (row.workflow, uses))
        elif "step." + status in STEP_ENDS:
            _add(self.steps_ended, (row.workflow, uses, status))
        if row.attempt_started is not None and row.attempt_finished is not None:
            duration = row.attempt_finished - row.attempt_started
            self.step_seconds.observe((row.workflow, uses), duration)

    def _count_fires(self, rows: Sequence[Any]) -> None:
        for row in rows:
            if row.status == "fired":
                self.lag_seconds.observe((row.workflow,), row.recorded_at - row.fire_time)
            else:
                _add(self.misses, (row.workflow,))

    def _uses_of(self, version_id: int | None, node: str | None) -> str:
        """The action of a step (``group`` for groups), from its version's plan."""
        if node is None:
            return "unknown"
        key = (version_id, node)
        found = self._uses.get(key)
        if found is None:
            try:
                step = self._plans(version_id).nodes[node] if version_id is not None else None
            except Exception:  # a version that no longer loads: count it all the same
                step = None
            found = _kind(step)
            if len(self._uses) < 100_000:
                self._uses[key] = found
        return found

    # -- exposing --------------------------------------------------------------------------
    def _families(self) -> Iterator[Metric]:
        yield _counter(
            "plait_runs_started",
            "Runs that started (or started again after a retry), by workflow.",
            ["workflow"],
            self.runs_started,
        )
        yield _counter(
            "plait_runs_ended",
            "Runs that ended, by workflow and final status.",
            ["workflow", "status"],
            self.runs_ended,
        )
        yield _counter(
            "plait_steps_ended",
            "Action steps (and fan-out items) that ended, by workflow, action and status.",
            ["workflow", "uses", "status"],
            self.steps_ended,
        )
        yield _counter(
            "plait_step_retries",
            "Step attempts that failed and will be retried, by workflow and action.",
            ["workflow", "uses"],
            self.retries,
        )
        yield _counter(
            "plait_schedule_misses",
            "Schedule fires recorded as missed (catch_up: none/latest), by workflow.",
            ["workflow"],
            self.misses,
        )
        yield _counter(
            "plait_ai_tokens",
            "Tokens that AI steps used (their `usage` output), by workflow, model and kind.",
            ["workflow", "model", "kind"],
            self.ai_tokens,
        )
        yield _counter(
            "plait_ai_cost_usd",
            "What AI steps cost in USD (connections with prices), by workflow and model.",
            ["workflow", "model"],
            self.ai_cost,
        )
        yield self.run_seconds.family(
            "plait_run_duration_seconds",
            "Time from a run's start to its end, by workflow and final status.",
            ["workflow", "status"],
        )
        yield self.step_seconds.family(
            "plait_step_duration_seconds",
            "Time of each finished step attempt, by workflow and action.",
            ["workflow", "uses"],
        )
        yield self.lag_seconds.family(
            "plait_schedule_lag_seconds",
            "How late schedule fires were: the time a fire was made minus its due time.",
            ["workflow"],
        )


def _kind(step: Any) -> str:
    if step is None:
        return "unknown"
    return _GROUP if step.is_group else (step.uses or "shell")


def _add(counts: dict[tuple[str, ...], float], key: tuple[str, ...]) -> None:
    counts[key] = counts.get(key, 0.0) + 1.0


def _count_usage(metrics: RunMetrics, row: Any) -> None:
    """Add a succeeded step's ``usage`` output (``plait.ai.llm.Usage.as_output()``)."""
    usage = row.ai_usage
    if not isinstance(usage, dict):
        return
    model = row.ai_model if isinstance(row.ai_model, str) and row.ai_model else "unknown"
    for kind in ("prompt", "completion"):
        tokens = usage.get(f"{kind}_tokens")
        if isinstance(tokens, int | float) and not isinstance(tokens, bool) and tokens > 0:
            key = (row.workflow, model[:200], kind)
            metrics.ai_tokens[key] = metrics.ai_tokens.get(key, 0.0) + float(tokens)
    cost = usage.get("cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
        where = (row.workflow, model[:200])
        metrics.ai_cost[where] = metrics.ai_cost.get(where, 0.0) + float(cost)


def _event_rows(where: Any) -> Any:
    """Events with what counting them needs: the run's workflow and version, the step's
    node and fan-out, the attempt's times, the run's start (for run ends)."""
    e, r, s, a = events.c, runs.c, steps.c, attempts.c
    earlier = aliased(events)
    run_started = (
        select(func.max(earlier.c.at))
        .where(
            earlier.c.run_id == e.run_id,
            earlier.c.type == "run.started",
            earlier.c.id < e.id,
        )
        .scalar_subquery()
    )
    is_step = e.type.like("step.%")
    joined = (
        events.outerjoin(runs, r.id == e.run_id)
        .outerjoin(steps, and_(is_step, s.run_id == e.run_id, s.key == e.step))
        .outerjoin(
            attempts,
            and_(
                e.type.in_(ATTEMPT_ENDS),
                a.run_id == e.run_id,
                a.step == e.step,
                a.attempt == e.data["attempt"].as_integer(),
            ),
        )
    )
    return (
        select(
            e.id,
            e.type,
            e.at,
            r.workflow,
            r.version_id,
            s.node,
            s["items"].label("fanout"),
            a.started_at.label("attempt_started"),
            a.finished_at.label("attempt_finished"),
            case((e.type.in_(RUN_ENDS), run_started), else_=None).label("run_started"),
            # AI usage: only these two keys of a succeeded step's outputs leave the database
            case((e.type == "step.succeeded", s.outputs["usage"]), else_=None).label("ai_usage"),
            case((e.type == "step.succeeded", s.outputs["model"]), else_=None).label("ai_model"),
        )
        .select_from(joined)
        .where(where)
        .order_by(e.id)
    )


__all__ = ["RunMetrics", "install"]
