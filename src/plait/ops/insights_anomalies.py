"""Anomalies: a run or a step whose duration is far outside its own history.

Robust statistics, so that the outliers being looked for do not hide themselves: the
history of a run is the successful runs of the same workflow (and namespace) among the
:attr:`Thresholds.window` runs created before it that had finished before it did — at
most the newest :attr:`Thresholds.history` of them. Its median and MAD (median absolute
deviation) give the robust z-score ``0.6745 · (x − median) / MAD`` (MAD × 1.4826
estimates the standard deviation of normal data). A duration is an anomaly when

* the history holds at least :attr:`Thresholds.min_history` durations,
* ``|z| ≥`` :attr:`Thresholds.score` (3.5, Iglewicz and Hoaglin's cut-off), and
* it differs from the median by at least :attr:`Thresholds.min_diff` seconds and
  :attr:`Thresholds.min_ratio` of the median — so 12 ms against 10 ms, or 101 s
  against a very steady 100 s, is not an anomaly however large its z.

When the MAD is 0 (more than half the history took the same time), the mean absolute
deviation stands in for it (``z = (x − median) / (1.2533 · meanAD)``); when that is 0
too, 1 % of the median does. A step's history is the same, per step (a ``for_each``
step's items are samples of their step).

Only successful runs and steps are judged: a failure's duration says when it failed,
not how long the work takes (``run_duration`` alerts and timeouts watch hung runs).
The history is fixed by the run itself (runs before it that finished before it), so a
run's flag never changes afterwards, wherever and whenever it is computed.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from plait.ops.insights_records import Anomaly, AttemptTiming, RunTiming

SUCCEEDED = "succeeded"
_ITEM = re.compile(r"\[\d+\]$")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a duration is an anomaly (see the module docstring)."""

    score: float = 3.5
    history: int = 50
    min_history: int = 10
    window: int = 200
    min_diff: float = 1.0
    min_ratio: float = 0.2


DEFAULT = Thresholds()


@dataclass(frozen=True, slots=True)
class Judgement:
    score: float
    median: float
    mad: float
    direction: str


def judge(duration: float, history: Sequence[float], th: Thresholds = DEFAULT) -> Judgement | None:
    """The anomaly ``duration`` is against ``history``, or None when it is not one."""
    if len(history) < th.min_history:
        return None
    median = _median(sorted(history))
    diff = duration - median
    if abs(diff) < max(th.min_diff, th.min_ratio * median):
        return None  # too small to matter, whatever the spread (the common case: cheap)
    deviations = [abs(h - median) for h in history]
    mad = _median(sorted(deviations))
    if mad > 0:
        score = 0.6745 * diff / mad
    else:
        mean_ad = statistics.fmean(deviations)
        spread = 1.253314 * mean_ad if mean_ad > 0 else 1.4826 * max(0.01 * median, 0.001)
        score = diff / spread
    if abs(score) < th.score:
        return None
    return Judgement(round(score, 2), median, mad, "slow" if diff > 0 else "fast")


def _median(ordered: Sequence[float]) -> float:
    n = len(ordered)
    middle = n // 2
    return ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def node_of(step: str) -> str:
    """The step a key belongs to (``smoke[2]`` is an item of ``smoke``)."""
    return _ITEM.sub("", step)


@dataclass(slots=True)
class _Series:
    """The successful durations of one workflow (or one of its steps), newest run
    first: for each sample the position of its run in the timeline (runs newest first,
    failed ones included), its seconds and its end time."""

    position: list[int]
    took: list[float]
    end: list[float]

    def judge(self, k: int, th: Thresholds) -> Judgement | None:
        """Sample ``k`` against the samples of the ``th.window`` runs before its own
        that had ended when it did (at most ``th.history`` of them)."""
        here, cut = self.position[k], self.end[k]
        limit = here + th.window
        position, took, end = self.position, self.took, self.end
        stop = min(len(position), k + 1 + th.history)
        if stop == k + 1:
            return judge(took[k], [], th)
        if (
            position[k + 1] != here
            and position[stop - 1] <= limit
            and max(end[k + 1 : stop]) <= cut
        ):
            return judge(took[k], took[k + 1 : stop], th)  # the common case: the next ones
        history: list[float] = []
        for j in range(k + 1, len(position)):
            if position[j] > limit:
                break
            if position[j] == here or end[j] > cut:
                continue  # the run's other items are not its history
            history.append(took[j])
            if len(history) == th.history:
                break
        return judge(took[k], history, th)


def run_anomalies(
    runs: Sequence[RunTiming], since: float, th: Thresholds = DEFAULT, judged: int | None = None
) -> list[Anomaly]:
    """The anomalous runs among ``runs`` (one workflow's, newest first) that succeeded
    at or after ``since``; the older runs of the list are their history. Only the first
    ``judged`` runs are judged (all by default): those after them are there as history."""
    last = len(runs) if judged is None else judged
    usable = [i for i, r in enumerate(runs) if r.status == SUCCEEDED and r.duration is not None]
    series = _Series(
        usable,
        [runs[i].duration or 0.0 for i in usable],
        [runs[i].finished_at or 0.0 for i in usable],
    )
    found = []
    for k, i in enumerate(usable):
        if i < last and series.end[k] >= since:
            verdict = series.judge(k, th)
            if verdict is not None:
                found.append(_anomaly(runs[i], None, series.took[k], series.end[k], verdict))
    return found


def run_anomaly(
    run: RunTiming, older: Sequence[RunTiming], th: Thresholds = DEFAULT
) -> Anomaly | None:
    """The anomaly of one run against ``older`` (the runs created before it, newest
    first), or None; None as well for a run that did not succeed."""
    if run.status != SUCCEEDED or run.duration is None:
        return None
    found = run_anomalies([run, *older], float("-inf"), th)
    return found[0] if found and found[0].run_id == run.id else None


def step_anomalies(
    runs: Sequence[RunTiming],
    attempts: Iterable[AttemptTiming],
    since: float,
    th: Thresholds = DEFAULT,
    judged: int | None = None,
) -> list[Anomaly]:
    """The anomalous steps of ``runs`` (one workflow's, newest first) that succeeded at
    or after ``since``, judged against the same step's successful attempts in the
    older runs of the list. ``attempts`` are the successful attempts of ``runs``; only
    the steps of the first ``judged`` runs are judged (all by default)."""
    last = len(runs) if judged is None else judged
    position = {r.id: i for i, r in enumerate(runs)}
    by_node: dict[str, list[tuple[int, float, str, float]]] = {}
    for a in attempts:
        i = position.get(a.run_id)
        if i is not None and a.status == SUCCEEDED and a.finished_at is not None:
            sample = (i, -a.finished_at, a.step, a.duration or 0.0)
            by_node.setdefault(node_of(a.step), []).append(sample)
    found = []
    for samples in by_node.values():
        samples.sort()
        series = _Series(
            [i for i, _, _, _ in samples],
            [took for _, _, _, took in samples],
            [-end for _, end, _, _ in samples],
        )
        for k, (i, _, step, took) in enumerate(samples):
            if i < last and series.end[k] >= since and runs[i].status == SUCCEEDED:
                verdict = series.judge(k, th)
                if verdict is not None:
                    found.append(_anomaly(runs[i], step, took, series.end[k], verdict))
    return found


def _anomaly(
    run: RunTiming, step: str | None, took: float, end: float, verdict: Judgement
) -> Anomaly:
    return Anomaly(
        run.id,
        run.workflow,
        run.namespace,
        step,
        round(took, 4),
        round(verdict.median, 4),
        round(verdict.mad, 4),
        verdict.score,
        verdict.direction,
        end,
    )


def newest_first(found: Iterable[Anomaly]) -> list[Anomaly]:
    """Anomalies newest first; at the same time, the run before its steps."""
    return sorted(found, key=lambda a: (-a.at, a.step is not None, -abs(a.score), a.run_id))


__all__ = [
    "DEFAULT",
    "Judgement",
    "Thresholds",
    "judge",
    "newest_first",
    "node_of",
    "run_anomalies",
    "run_anomaly",
    "step_anomalies",
]
