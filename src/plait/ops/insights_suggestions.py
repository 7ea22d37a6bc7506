"""Suggestions: retry policies and timeouts that a step's own history argues for.

Pure code over one workflow's recent runs and their attempts. Only runs whose version
gave the step the settings it has now count as evidence (a retry policy deployed last
week is judged by the runs since), and only steps that still exist are suggested for.
Each suggestion carries the numbers behind it (``evidence``) and says them in one
sentence (``reason``). The rules, with :data:`MIN_RUNS` runs of evidence at least:

**Retries.**

* A step with retries that failed in :data:`MIN_FAILING` runs or more and was never
  saved by a retry: its failures are final, and retrying only delays them — suggest
  ``retries: 0``.
* A step whose retries save it, but that also ran out of them in at least
  :data:`MIN_SHARE` of its runs (twice or more): suggest more (one more than it had,
  or than the most any saved run needed, if that is more), keeping its backoff.
* A step whose retries save it in at least :data:`RECOVERED_SHARE` of its runs but
  that has more than one retry beyond the most it ever needed: suggest as many as it
  needed plus one, exponential, starting from the delay it waited before the retry
  that saved it (one second to one minute) — a real failure then ends sooner.
* A step without retries whose failures look transient — at least twice and in
  :data:`MIN_SHARE` of its runs it failed and its next run succeeded, with at most
  :data:`MAX_CAUSES` distinct errors among those failures, and it fails in at most half
  its runs: suggest a policy, exponential, with as many retries as the longest run of
  failures before a success (plus one, two to five), and a first delay from the
  observed time between a failure and the next success, spread over those retries
  (one second to one minute).

**Timeouts** (from :data:`MIN_SAMPLES` successful attempts at least; ``p99`` is their
99th percentile and the suggestion ``p99`` × :data:`MARGIN`, at least ten seconds,
rounded up to a readable duration like ``90s`` or ``4m``):

* A step that timed out in at least :data:`MIN_SHARE` of its runs (twice or more)
  while its successful attempts come close to the limit (p99 at least half of it):
  suggest the larger of the suggestion and twice the limit. (When successful attempts
  are far below the limit, the timeouts are hangs, which a longer limit would not fix.)
* A step without a timeout: suggest one — a hang would hold a worker forever.
* A step whose timeout is ten times its p99 or more (and three times the suggestion):
  suggest the tighter one, so that a hang is noticed sooner.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plait.model.durations import format_duration, parse_duration
from plait.model.plan import Plan, RetryPolicy, StepPlan
from plait.ops.insights_records import AttemptTiming, RunTiming, Suggestion
from plait.ops.insights_text import normalise

MIN_RUNS = 10
MIN_FAILING = 5
MIN_SHARE = 0.05
#: runs a step's retries must save (share) before its policy is tuned to them
RECOVERED_SHARE = 0.1
MAX_CAUSES = 3
MIN_SAMPLES = 20
MARGIN = 2.0
MIN_TIMEOUT = 10.0
#: actions whose duration is waiting by design (a timer, a person), not work
WAITING_ACTIONS = frozenset({"approval", "sleep"})
#: attempt statuses that are a try of the step (interruptions and waits are not)
_TRIES = frozenset({"succeeded", "failed", "timed_out"})
_ITEM = re.compile(r"\[\d+\]$")

PlanOf = Callable[[int], Plan | None]


@dataclass(slots=True)
class Execution:
    """One run of one step (or ``for_each`` item): its tries, in order."""

    run: RunTiming
    index: int
    key: str
    tries: list[AttemptTiming] = field(default_factory=list)

    @property
    def outcome(self) -> str | None:
        return self.tries[-1].status if self.tries else None

    @property
    def failures(self) -> int:
        """Failed tries before the last one, or all of them when the last failed."""
        return sum(1 for t in self.tries if t.status != "succeeded")

    @property
    def recovered(self) -> bool:
        return self.outcome == "succeeded" and self.failures > 0

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "timed_out")

    @property
    def timed_out(self) -> bool:
        return any(t.status == "timed_out" for t in self.tries)

    def recovery(self) -> float | None:
        """Seconds from the first failure to the start of the try that succeeded."""
        if not self.recovered:
            return None
        first = next(t for t in self.tries if t.status != "succeeded")
        return max(0.0, self.tries[-1].started_at - (first.finished_at or first.started_at))


def suggest(
    workflow: str,
    runs: Sequence[RunTiming],
    attempts: Iterable[AttemptTiming],
    current: Plan,
    plan_of: PlanOf,
) -> list[Suggestion]:
    """The suggestions for ``workflow``'s steps from ``runs`` (newest first) and their
    ``attempts``; ``current`` is the plan the workflow runs now."""
    found: list[Suggestion] = []
    for node, executions in sorted(_executions(runs, attempts, current, plan_of).items()):
        step = current.nodes[node]
        if len({e.run.id for e in executions}) < MIN_RUNS:
            continue
        for rule in (_retries, _timeout):
            made = rule(workflow, step, executions)
            if made is not None:
                found.append(made)
    return found


def _executions(
    runs: Sequence[RunTiming],
    attempts: Iterable[AttemptTiming],
    current: Plan,
    plan_of: PlanOf,
) -> dict[str, list[Execution]]:
    """Executions by step node, newest run first, of the runs whose version gave the
    node its current settings."""
    index = {r.id: i for i, r in enumerate(runs)}
    same: dict[int | None, frozenset[str]] = {}
    found: dict[tuple[int, str], Execution] = {}
    for a in attempts:
        i = index.get(a.run_id)
        if i is None or a.status not in _TRIES:
            continue
        run = runs[i]
        if run.version_id not in same:
            same[run.version_id] = _unchanged(current, plan_of, run.version_id)
        node = _ITEM.sub("", a.step)
        if node not in same[run.version_id]:
            continue
        execution = found.setdefault((i, a.step), Execution(run, i, a.step))
        execution.tries.append(a)
    by_node: dict[str, list[Execution]] = {}
    for (_, _), execution in sorted(found.items()):
        execution.tries.sort(key=lambda t: t.attempt)
        by_node.setdefault(_ITEM.sub("", execution.key), []).append(execution)
    return by_node


def _unchanged(current: Plan, plan_of: PlanOf, version_id: int | None) -> frozenset[str]:
    """The action steps of ``current`` whose retries and timeout a version had too."""
    try:
        older = plan_of(version_id) if version_id is not None else None
    except Exception:  # a version that no longer compiles is no evidence
        older = None
    if older is None:
        return frozenset()
    same = set()
    for key, node in current.nodes.items():
        if node.is_group or node.uses in WAITING_ACTIONS:
            continue
        then = older.nodes.get(key)
        if then is not None and (then.retry, then.timeout) == (node.retry, node.timeout):
            same.add(key)
    return frozenset(same)


# -- retries --------------------------------------------------------------------------------
def _retries(workflow: str, step: StepPlan, runs: Sequence[Execution]) -> Suggestion | None:
    policy = step.retry
    if policy.max > 0:
        return (
            _fewer(workflow, step, runs)
            or _more(workflow, step, runs)
            or _tune(workflow, step, runs)
        )
    return _transient(workflow, step, runs)


def _fewer(workflow: str, step: StepPlan, runs: Sequence[Execution]) -> Suggestion | None:
    failing = [e for e in runs if e.failures > 0]
    if len(failing) < MIN_FAILING or any(e.recovered for e in failing):
        return None
    waits = [_span(e) for e in failing if len(e.tries) > 1]
    delay = (
        f", and retrying only delayed the failure by {_took(statistics.median(waits))}"
        if waits
        else ""
    )
    times = _plural(step.retry.max, "retry", "retries")
    reason = (
        f"{step.key} failed in {len(failing)} of {len(runs)} runs and none of its {times} "
        f"ever succeeded: every failure was final{delay}."
    )
    evidence = {
        "runs": len(runs),
        "failed_runs": len(failing),
        "recovered": 0,
        **_examples(failing),
    }
    return Suggestion(
        workflow, step.key, "retries", _policy(step.retry), {"retries": 0}, reason, evidence
    )


def _more(workflow: str, step: StepPlan, runs: Sequence[Execution]) -> Suggestion | None:
    policy = step.retry
    saved = [e for e in runs if e.recovered]
    exhausted = [e for e in runs if e.failed and len(e.tries) > policy.max]
    if not saved or len(exhausted) < 2 or len(exhausted) < MIN_SHARE * len(runs):
        return None
    needed = max(e.failures for e in saved)
    count = min(max(policy.max, needed) + 1, 10)
    suggested = {
        "retries": {
            "max": count,
            "backoff": policy.backoff,
            "initial": duration_text(policy.initial),
        }
    }
    reason = (
        f"{step.key} was saved by a retry in {len(saved)} of {len(runs)} runs "
        f"(needing up to {_plural(needed, 'retry', 'retries')}) but ran out of its "
        f"{_plural(policy.max, 'retry', 'retries')} in {len(exhausted)}."
    )
    evidence = {
        "runs": len(runs),
        "recovered": len(saved),
        "exhausted": len(exhausted),
        "retries_needed": _histogram(e.failures for e in saved),
        **_examples(exhausted),
    }
    return Suggestion(workflow, step.key, "retries", _policy(policy), suggested, reason, evidence)


def _tune(workflow: str, step: StepPlan, runs: Sequence[Execution]) -> Suggestion | None:
    """Retries that often save the step but are far more than it ever needed: as many
    as it needed plus one, exponential, the first delay it waited when it was saved."""
    policy = step.retry
    saved = [e for e in runs if e.recovered]
    if len(saved) < 2 or len(saved) < RECOVERED_SHARE * len(runs):
        return None
    needed = max(e.failures for e in saved)
    if policy.max <= needed + 1:
        return None
    gaps = [_first_gap(e) for e in saved]
    initial = readable_duration(min(max(statistics.median(gaps), 1.0), 60.0))
    count = needed + 1
    suggested = {"retries": {"max": count, "backoff": "exponential", "initial": initial}}
    share = len(saved) / len(runs)
    reason = (
        f"{step.key} failed and then succeeded on a retry in {len(saved)} of {len(runs)} "
        f"runs ({share:.0%}), never needing more than {_plural(needed, 'retry', 'retries')} "
        f"of its {policy.max}: {count} from {initial} cover it, and a real failure ends sooner."
    )
    evidence = {
        "runs": len(runs),
        "recovered": len(saved),
        "retries_needed": _histogram(e.failures for e in saved),
        "first_delay_median": round(statistics.median(gaps), 3),
        **_examples(saved),
    }
    return Suggestion(workflow, step.key, "retries", _policy(policy), suggested, reason, evidence)


def _first_gap(e: Execution) -> float:
    """Seconds between the first try's end and the second try's start (the backoff)."""
    first, second = e.tries[0], e.tries[1]
    return max(0.0, second.started_at - (first.finished_at or first.started_at))


def _transient(workflow: str, step: StepPlan, runs: Sequence[Execution]) -> Suggestion | None:
    failed = [e for e in runs if e.failed]
    if not failed or len(failed) > len(runs) / 2:
        return None
    transient: list[tuple[Execution, Execution]] = []
    streaks: list[int] = []
    streak = 0
    for e in reversed(runs):  # oldest first
        if e.failed:
            streak += 1
        elif e.outcome == "succeeded" and streak:
            streaks.append(streak)
            streak = 0
    for newer, older in itertools.pairwise(runs):
        if older.failed and newer.outcome == "succeeded":
            transient.append((older, newer))
    causes = {normalise(e.tries[-1].error or "") for e, _ in transient}
    if len(transient) < 2 or len(transient) < MIN_SHARE * len(runs) or len(causes) > MAX_CAUSES:
        return None
    count = min(max(max(streaks, default=1) + 1, 2), 5)
    gaps = [
        max(0.0, ok.tries[0].started_at - (bad.tries[-1].finished_at or bad.tries[-1].started_at))
        for bad, ok in transient
    ]
    gap = statistics.median(gaps)
    initial = min(max(gap / (2**count - 1), 1.0), 60.0)
    suggested = {
        "retries": {"max": count, "backoff": "exponential", "initial": readable_duration(initial)}
    }
    kinds = _plural(len(causes), "distinct error", "distinct errors")
    reason = (
        f"{step.key} has no retries and failed in {len(failed)} of {len(runs)} runs; "
        f"{len(transient)} times the next run succeeded (a median {_took(gap)} later), "
        f"with {kinds}: the failures look transient."
    )
    evidence = {
        "runs": len(runs),
        "failed_runs": len(failed),
        "transient": len(transient),
        "causes": len(causes),
        "recovery_median": round(gap, 3),
        "failures_in_a_row": _histogram(streaks),
        **_examples([bad for bad, _ in transient]),
    }
    return Suggestion(workflow, step.key, "retries", 0, suggested, reason, evidence)


# -- timeouts -------------------------------------------------------------------------------
def _timeout(workflow: str, step: StepPlan, runs: Sequence[Execution]) -> Suggestion | None:
    took = sorted(
        t.duration
        for e in runs
        for t in e.tries
        if t.status == "succeeded" and t.duration is not None
    )
    if len(took) < MIN_SAMPLES:
        return None
    p99 = percentile(took, 0.99)
    fitting = max(p99 * MARGIN, MIN_TIMEOUT)
    limit = step.timeout
    timed_out = [e for e in runs if e.timed_out]
    evidence: dict[str, Any] = {
        "runs": len(runs),
        "samples": len(took),
        "p50": round(percentile(took, 0.5), 3),
        "p95": round(percentile(took, 0.95), 3),
        "p99": round(p99, 3),
        "max": round(took[-1], 3),
        "timed_out": len(timed_out),
    }
    current = None if limit is None else duration_text(limit)
    if limit is not None and len(timed_out) >= 2 and len(timed_out) >= MIN_SHARE * len(runs):
        if p99 < limit / 2:
            return None  # hangs: a longer limit would only make them longer
        value = readable_duration(max(fitting, limit * 2))
        reason = (
            f"{step.key} hit its {current} timeout in {len(timed_out)} of {len(runs)} runs, "
            f"while 99% of its {len(took)} successful attempts took up to {_took(p99)}."
        )
        evidence.update(_examples(timed_out))
    elif limit is None:
        value = readable_duration(fitting)
        reason = (
            f"{step.key} has no timeout; of its {len(took)} successful attempts, half took "
            f"{_took(evidence['p50'])} or less and 99% {_took(p99)} or less: {value} leaves "
            f"a {MARGIN:g}× margin, and a hang no longer holds a worker forever."
        )
    elif limit >= 10 * p99 and limit > 3 * fitting:
        value = readable_duration(fitting)
        reason = (
            f"{step.key}'s timeout of {current} is {limit / max(p99, 0.001):.0f}× the p99 "
            f"of its {len(took)} successful attempts ({_took(p99)}): with {value}, a hang "
            f"is noticed {_took(limit - parse_duration(value))} sooner."
        )
    else:
        return None
    return Suggestion(workflow, step.key, "timeout", current, {"timeout": value}, reason, evidence)


# -- numbers and words ----------------------------------------------------------------------
def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of sorted values."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def readable_duration(seconds: float) -> str:
    """``seconds`` rounded up to a duration people write: ``7s``, ``45s``, ``90s``,
    ``1m``, ``4m``, ``1h30m``, ``3h``."""
    if seconds <= 10:
        rounded = max(1, math.ceil(seconds))
    elif seconds <= 60:
        rounded = math.ceil(seconds / 5) * 5
    elif seconds <= 120:
        rounded = math.ceil(seconds / 10) * 10
    else:
        minutes = math.ceil(seconds / 60)
        if minutes > 60:
            minutes = math.ceil(minutes / (5 if minutes <= 120 else 15)) * (
                5 if minutes <= 120 else 15
            )
        rounded = minutes * 60
    if rounded % 60:
        return f"{rounded}s"
    minutes = rounded // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest}m" if rest else f"{hours}h"


def duration_text(seconds: float) -> str:
    """A setting's duration as written in YAML: ``500ms``, ``2s``, ``5m``, ``1h``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _policy(policy: RetryPolicy) -> Any:
    if policy.max == 0:
        return 0
    return {"max": policy.max, "backoff": policy.backoff, "initial": duration_text(policy.initial)}


def _took(seconds: float) -> str:
    return format_duration(seconds)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _histogram(values: Iterable[int]) -> dict[str, int]:
    found: dict[str, int] = {}
    for v in sorted(values):
        found[str(v)] = found.get(str(v), 0) + 1
    return found


def _span(e: Execution) -> float:
    """Seconds from the end of the first try to the end of the last."""
    first, last = e.tries[0], e.tries[-1]
    return max(0.0, (last.finished_at or last.started_at) - (first.finished_at or first.started_at))


def _examples(executions: Sequence[Execution]) -> Mapping[str, Any]:
    """Up to five of the runs behind a suggestion, newest first."""
    return {"examples": list(dict.fromkeys(e.run.id for e in executions))[:5]}


__all__ = [
    "MIN_RUNS",
    "MIN_SAMPLES",
    "Execution",
    "PlanOf",
    "duration_text",
    "percentile",
    "readable_duration",
    "suggest",
]
