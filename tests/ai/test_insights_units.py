"""The pure parts of the insights, without a store: text normalisation, clustering
(tokens, and the embedding merge with a stand-in model), the robust anomaly judgement,
the suggestion rules on hand-made histories, durations as people write them, and the
``anomaly`` alert rule's fields."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from plait.actions.registry import ActionRegistry
from plait.model import load_workflow
from plait.model.plan import Plan
from plait.ops.alert_rules import RuleError, parse_rule
from plait.ops.insights_anomalies import Thresholds, judge, node_of
from plait.ops.insights_clusters import (
    attempts_by_group,
    embedding_groups,
    items_of,
    representative,
    token_groups,
)
from plait.ops.insights_records import AttemptTiming, RunTiming, as_json
from plait.ops.insights_suggestions import duration_text, readable_duration, suggest
from plait.ops.insights_text import normalise


# -- text ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        (
            "connection to 10.1.2.3:5432 failed after 3 tries",
            "connection to <ip> failed after <num> tries",
        ),
        ("cannot open /var/lib/app/2026/x.db", "cannot open <path>"),
        ("run 0190f3c2-6d3b-4b7e-9c1f-2a5d8e7b3c10 lost", "run <uuid> lost"),
        ("at 2026-05-01T12:00:03.417Z and 12:04:55", "at <time> and <time>"),
        ("commit 3f9a8b7c6d5e mismatch 0xdeadbeef", "commit <hex> mismatch <hex>"),
        ("GET https://api.example.com/v1/orders/7?x=1 -> 500", "get <url> -> <num>"),
        ("HTTP 503 Service Unavailable", "http 503 service unavailable"),
        ("exit code 2: bad usage", "exit code 2: bad usage"),
        ("[Errno 28] no space", "[errno 28] no space"),
        ("job build-2026-abc123456789 failed   badly\n\tnow", "job <id> failed badly now"),
    ],
)
def test_what_varies_between_occurrences_is_set_aside(text: str, normalised: str) -> None:
    assert normalise(text) == normalised


def test_the_same_attempts_in_any_order_make_the_same_clusters() -> None:
    errors = (
        [f"HTTP 503 from https://a.example/{i}" for i in range(6)]
        + [f"disk full writing /data/{i}/x.bin" for i in range(4)]
        + [f"KeyError: 'customer_id' in row {i}" for i in range(3)]
    )
    rows: list[tuple[str, tuple[str, ...]]] = [(e, (f"line {i}",)) for i, e in enumerate(errors)]

    def clusters(given: list[tuple[str, tuple[str, ...]]]) -> list[tuple[int, str]]:
        items = items_of([e for e, _ in given], [t for _, t in given])
        groups = token_groups(items)
        members = attempts_by_group(items, groups)
        pairs = zip(groups, members, strict=True)
        return sorted((len(m), items[representative(g)].text) for g, m in pairs)

    first = clusters(rows)
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    assert clusters(shuffled) == first
    assert [n for n, _ in first] == [3, 4, 6]


def test_distinct_texts_are_compared_once_each() -> None:
    items = items_of(["boom 1", "boom 2", "boom 3", "bang"], [(), (), (), ()])
    assert [(it.text, it.weight) for it in items] == [("boom <num>", 3), ("bang", 1)]


def test_the_embedding_merge_joins_close_meanings_and_caches_vectors() -> None:
    meaning = {
        "could not resolve host: <id>": [1.0, 0.0, 0.0],
        "name or service not known: <id>": [0.9, 0.1, 0.0],
        "no space left on device": [0.0, 1.0, 0.0],
    }
    calls: list[list[str]] = []

    def embed(texts: Any) -> Any:
        calls.append(list(texts))
        rows = np.asarray([meaning[t] for t in texts], dtype=np.float64)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    errors = (
        ["could not resolve host: registry-example-1"] * 3
        + ["name or service not known: registry-example-1"] * 2
        + ["no space left on device"]
    )
    items = items_of(errors, [()] * len(errors))
    cache: dict[str, Any] = {}
    merged = embedding_groups(items, token_groups(items), embed, cache)
    sizes = sorted(len(m) for m in attempts_by_group(items, merged))
    assert sizes == [1, 5]
    again = embedding_groups(items, token_groups(items), embed, cache)
    assert len(calls) == 1  # every representative came from the cache the second time
    assert sorted(len(m) for m in attempts_by_group(items, again)) == sizes


# -- anomalies -----------------------------------------------------------------------------
STEADY = [60.0 + (i % 5 - 2) for i in range(30)]


def test_the_robust_score_flags_slow_and_fast_but_not_small_or_thin() -> None:
    slow = judge(300.0, STEADY)
    assert slow is not None
    assert (slow.direction, slow.median, slow.mad) == ("slow", 60.0, 1.0)
    assert slow.score == round(0.6745 * 240, 2)
    fast = judge(5.0, STEADY)
    assert fast is not None
    assert fast.direction == "fast"
    assert fast.score < 0
    assert judge(63.5, STEADY) is None  # z 2.4: inside the history's spread
    assert judge(300.0, STEADY[:9]) is None  # too little history
    assert judge(0.03, [0.010] * 30) is None  # 20 ms: below the minimum difference
    assert judge(110.0, [100.0 + i * 0.01 for i in range(30)]) is None  # 10 %: too small
    strict = Thresholds(score=500.0)
    assert judge(300.0, STEADY, strict) is None


def test_a_for_each_item_counts_for_its_step() -> None:
    assert node_of("smoke[12]") == "smoke"
    assert node_of("smoke") == "smoke"


# -- suggestions ---------------------------------------------------------------------------
def plan(source: str) -> Plan:
    return load_workflow(source, "w.yaml", ActionRegistry().input_models()).plan


PUSH = """\
name: release
steps:
  - id: push
    run: ./push.sh
    timeout: 10m
    retries: {max: 1, backoff: constant, initial: 5s}
"""


def history(outcomes: list[list[str]]) -> tuple[list[RunTiming], list[AttemptTiming]]:
    """Runs newest first, each with ``push`` tried as ``outcomes[i]`` says."""
    runs, tries = [], []
    for i, statuses in enumerate(outcomes):
        at = 1_000_000.0 - i * 3600
        runs.append(RunTiming(f"r{i}", "release", "default", "succeeded", at, at, at + 60, 1))
        clock = at
        for n, status in enumerate(statuses, start=1):
            error = None if status == "succeeded" else "502 Bad Gateway from registry"
            tries.append(AttemptTiming(f"r{i}", "push", n, status, clock, clock + 30, error))
            clock += 35
    return runs, tries


def test_retries_that_help_but_run_out_are_raised() -> None:
    outcomes = [["succeeded"]] * 20 + [["failed", "succeeded"]] * 6 + [["failed", "failed"]] * 3
    runs, tries = history(outcomes)
    current = plan(PUSH)
    [retries] = [
        s
        for s in suggest("release", runs, tries, current, lambda _: current)
        if s.kind == "retries"
    ]
    assert retries.current == {"max": 1, "backoff": "constant", "initial": "5s"}
    assert retries.suggested == {"retries": {"max": 2, "backoff": "constant", "initial": "5s"}}
    assert retries.evidence["exhausted"] == 3
    assert retries.evidence["recovered"] == 6
    assert retries.evidence["retries_needed"] == {"1": 6}
    assert "ran out of its 1 retry in 3" in retries.reason
    assert as_json(retries)["suggested"] == retries.suggested


def test_retries_far_beyond_what_saved_the_step_are_tuned_down() -> None:
    outcomes = [["succeeded"]] * 22 + [["failed", "succeeded"]] * 8
    runs, tries = history(outcomes)
    current = plan(PUSH.replace("max: 1", "max: 5"))
    [retries] = [
        s
        for s in suggest("release", runs, tries, current, lambda _: current)
        if s.kind == "retries"
    ]
    assert retries.current == {"max": 5, "backoff": "constant", "initial": "5s"}
    assert retries.suggested == {"retries": {"max": 2, "backoff": "exponential", "initial": "5s"}}
    assert retries.evidence["first_delay_median"] == 5.0
    assert "in 8 of 30 runs (27%), never needing more than 1 retry of its 5" in retries.reason
    just_right = plan(PUSH.replace("max: 1", "max: 2"))
    kinds = [s.kind for s in suggest("release", runs, tries, just_right, lambda _: just_right)]
    assert "retries" not in kinds


def test_too_little_history_or_a_changed_step_suggests_nothing() -> None:
    runs, tries = history([["failed", "failed"]] * 9)
    current = plan(PUSH)
    assert suggest("release", runs, tries, current, lambda _: current) == []
    runs, tries = history([["failed", "failed"]] * 30)
    before = plan(PUSH.replace("max: 1", "max: 4"))
    assert suggest("release", runs, tries, current, lambda _: before) == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.3, "1s"), (7.2, "8s"), (43, "45s"), (60, "1m"), (88, "90s"), (218, "4m"), (5400, "1h30m")],
)
def test_suggested_durations_are_rounded_up_to_what_people_write(seconds: float, text: str) -> None:
    assert readable_duration(seconds) == text


def test_settings_are_shown_as_written() -> None:
    assert [duration_text(s) for s in (0.5, 2, 90, 300, 3600)] == ["500ms", "2s", "90s", "5m", "1h"]


# -- the alert rule ------------------------------------------------------------------------
def test_an_anomaly_rule_has_defaults_and_checks_its_fields() -> None:
    rule = parse_rule("slow-backups", {"kind": "anomaly", "workflow": "backup"})
    assert (rule.threshold, rule.window, rule.direction, rule.workflow) == (
        3.5,
        3600.0,
        "any",
        "backup",
    )
    with pytest.raises(RuleError) as caught:
        parse_rule("r", {"kind": "anomaly", "direction": "sideways", "threshold": 0})
    problems = " ".join(caught.value.problems)
    assert "rule 'r': direction:" in problems
    assert "rule 'r': threshold:" in problems
