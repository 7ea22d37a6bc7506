"""The records of the insights: what the store reads from the history (in), and the
clusters, anomalies and suggestions made of it (out).

Frozen dataclasses in domain words, shared by the pure logic (``insights_*``), the
store (:mod:`plait.store.server_insights`) and the edges (the routes and ``plait
insights``), which turn the results into JSON with :func:`as_json` — so the API and the
command line print the same document.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

# -- what the history holds ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """Which runs an insight looks at: one workflow or namespace, and the namespaces the
    caller may read (``namespaces``; None: all)."""

    workflow: str | None = None
    namespace: str | None = None
    namespaces: frozenset[str] | None = None

    @property
    def nothing(self) -> bool:
        """True when the caller may read no namespace at all."""
        return self.namespaces is not None and (
            not self.namespaces
            or (self.namespace is not None and self.namespace not in self.namespaces)
        )


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """A step attempt that ended ``failed`` or ``timed_out``, with its log's last lines."""

    run_id: str
    workflow: str
    namespace: str
    step: str
    attempt: int
    status: str
    error: str
    started_at: float
    finished_at: float | None
    tail: tuple[str, ...] = ()

    @property
    def at(self) -> float:
        return self.finished_at if self.finished_at is not None else self.started_at


@dataclass(frozen=True, slots=True)
class RunTiming:
    """A run of a workflow's history: when it was created, ran and ended, and how."""

    id: str
    workflow: str
    namespace: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    version_id: int | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)


@dataclass(frozen=True, slots=True)
class AttemptTiming:
    """One attempt of a step of a run in the history."""

    run_id: str
    step: str
    attempt: int
    status: str
    started_at: float
    finished_at: float | None
    error: str | None = None

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)


# -- what the insights say -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Example:
    run_id: str
    workflow: str
    step: str
    attempt: int
    error: str
    at: float


@dataclass(frozen=True, slots=True)
class StepCount:
    workflow: str
    step: str
    count: int


@dataclass(frozen=True, slots=True)
class Cluster:
    """Failed attempts that share a cause; ``label`` is the representative error line."""

    id: str
    label: str
    count: int
    first_seen: float
    last_seen: float
    workflows: tuple[str, ...]
    steps: tuple[StepCount, ...]
    examples: tuple[Example, ...]


@dataclass(frozen=True, slots=True)
class FailureReport:
    """``method`` is ``embeddings`` (the offline model merged the groups) or ``tokens``."""

    method: str
    clusters: tuple[Cluster, ...]


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A run (``step`` None) or step whose duration is far from its history's median:
    ``score`` is the robust z-score, negative when it was faster."""

    run_id: str
    workflow: str
    namespace: str
    step: str | None
    duration: float
    median: float
    mad: float
    score: float
    direction: str
    at: float


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A setting the history suggests for a step: ``suggested`` is YAML-ready."""

    workflow: str
    step: str
    kind: str
    current: Any
    suggested: Mapping[str, Any]
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


#: fields holding epoch seconds, shown as ISO 8601 times
_TIMES = frozenset({"first_seen", "last_seen", "at"})
#: fields of the records that stay inside (the pinned API shapes leave them out)
_INTERNAL: dict[type, frozenset[str]] = {Anomaly: frozenset({"namespace"})}


def iso(stamp: float) -> str:
    """An epoch time as ISO 8601 in UTC, as the API writes times (``…Z``)."""
    text = dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def as_json(value: Any) -> Any:
    """A record (or a list of them) as the JSON the API answers with."""
    if is_dataclass(value) and not isinstance(value, type):
        hidden = _INTERNAL.get(type(value), frozenset())
        found: dict[str, Any] = {}
        for f in fields(value):
            if f.name in hidden:
                continue
            item = getattr(value, f.name)
            found[f.name] = iso(item) if f.name in _TIMES else as_json(item)
        return found
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): as_json(v) for k, v in value.items()}
    return value


__all__ = [
    "Anomaly",
    "AttemptTiming",
    "Cluster",
    "Example",
    "FailedAttempt",
    "FailureReport",
    "HistoryFilter",
    "RunTiming",
    "StepCount",
    "Suggestion",
    "as_json",
    "iso",
]
