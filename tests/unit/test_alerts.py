"""Alert rules, purely: a rule, observations and the previous states in; transitions and
notifications out. Parsing rules from YAML, and the HTTP histogram arithmetic."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from plait.ops.alert_http import Snapshot, error_rate, latency, parse
from plait.ops.alert_rules import KIND_FIELDS, RuleError, load_file, load_text, parse_rule
from plait.ops.alerts import (
    KINDS,
    AlertState,
    Observation,
    Rule,
    Transition,
    evaluate,
    format_value,
    notice,
    notices,
    quantile,
)

T0 = 1_800_000_000.0


def rule(**kw: object) -> Rule:
    base: dict[str, object] = {
        "name": "fails",
        "kind": "failure_rate",
        "threshold": 0.01,
        "channels": ("ops",),
    }
    base.update(kw)
    return Rule(**base)  # type: ignore[arg-type]


def seen(value: float, key: str = "deploy", count: int | None = 10, **kw: object) -> Observation:
    return Observation(key, value, f"{key}: observed {value}", count=count, **kw)  # type: ignore[arg-type]


def run(
    r: Rule, observations: list[Observation], states: list[AlertState], now: float
) -> tuple[list[AlertState], list[Transition]]:
    """Apply the transitions to the states, as the store would (revision + 1)."""
    changes = evaluate(r, observations, states, now)
    by_key = {s.key: s for s in states}
    for c in changes:
        if c.after is None:
            by_key.pop(c.key)
        else:
            by_key[c.key] = replace(c.after, revision=(c.before.revision if c.before else 0) + 1)
    return list(by_key.values()), changes


# -- the state machine -------------------------------------------------------------------------
def test_a_breach_fires_at_once_without_for_and_notifies_once() -> None:
    r = rule()
    states, changes = run(r, [seen(0.3)], [], T0)
    assert [c.event for c in changes] == ["firing"]
    assert states[0].state == "firing"
    assert states[0].firing_since == T0
    assert notices(r, changes[0], T0)[0][0] == "ops"
    # the next pass sees the same: nothing changes, nothing is sent
    states, changes = run(r, [seen(0.3)], states, T0 + 30)
    assert changes == []


def test_a_changed_value_is_written_without_a_notification() -> None:
    r = rule()
    states, _ = run(r, [seen(0.3)], [], T0)
    states, changes = run(r, [seen(0.4)], states, T0 + 30)
    assert len(changes) == 1
    assert changes[0].event is None
    assert states[0].value == 0.4
    assert states[0].firing_since == T0
    assert notices(r, changes[0], T0 + 30) == []


def test_a_firing_alert_notifies_again_only_after_repeat() -> None:
    r = rule(repeat=3600.0)
    states, _ = run(r, [seen(0.3)], [], T0)
    states, changes = run(r, [seen(0.3)], states, T0 + 3599)
    assert changes == []
    states, changes = run(r, [seen(0.3)], states, T0 + 3600)
    assert [c.event for c in changes] == ["repeat"]
    assert states[0].last_notified_at == T0 + 3600
    states, changes = run(r, [seen(0.3)], states, T0 + 3700)
    assert changes == []


def test_repeat_zero_never_notifies_again() -> None:
    r = rule(repeat=0.0)
    states, _ = run(r, [seen(0.3)], [], T0)
    _, changes = run(r, [seen(0.3)], states, T0 + 10 * 86400)
    assert changes == []


def test_for_keeps_an_alert_pending_until_the_condition_has_held_long_enough() -> None:
    r = rule(for_=300.0)
    states, changes = run(r, [seen(0.3)], [], T0)
    assert [c.event for c in changes] == [None]
    assert states[0].state == "pending"
    states, changes = run(r, [seen(0.3)], states, T0 + 299)
    assert changes == []
    assert states[0].state == "pending"
    states, changes = run(r, [seen(0.3)], states, T0 + 300)
    assert [c.event for c in changes] == ["firing"]
    assert states[0].since == T0
    assert states[0].firing_since == T0 + 300


def test_a_pending_alert_that_clears_is_dropped_silently() -> None:
    r = rule(for_=300.0)
    states, _ = run(r, [seen(0.3)], [], T0)
    states, changes = run(r, [seen(0.0)], states, T0 + 60)
    assert states == []
    assert [c.event for c in changes] == [None]
    # and it starts over: the next breach waits the whole `for` again
    states, _ = run(r, [seen(0.3)], states, T0 + 120)
    assert states[0].since == T0 + 120


def test_a_firing_alert_resolves_with_a_recovery_notice() -> None:
    r = rule()
    states, _ = run(r, [seen(0.3)], [], T0)
    states, changes = run(r, [seen(0.005)], states, T0 + 600)
    assert states == []
    assert [c.event for c in changes] == ["resolved"]
    body = notices(r, changes[0], T0 + 600)[0][1]
    assert body["state"] == "resolved"
    assert body["title"] == "[RESOLVED] fails"
    assert "resolved after 10m00s" in body["text"]
    assert body["resolved_at"] == T0 + 600
    assert body["since"] == T0


def test_a_missing_observation_means_the_condition_no_longer_holds() -> None:
    r = rule()
    states, _ = run(r, [seen(0.3)], [], T0)
    _, changes = run(r, [], states, T0 + 30)
    assert [c.event for c in changes] == ["resolved"]


def test_send_resolved_false_keeps_the_recovery_quiet() -> None:
    r = rule(send_resolved=False)
    states, _ = run(r, [seen(0.3)], [], T0)
    _, changes = run(r, [], states, T0 + 30)
    assert changes[0].event == "resolved"
    assert notices(r, changes[0], T0 + 30) == []


def test_a_ratio_needs_its_minimum_sample() -> None:
    r = rule(min_count=5)
    assert evaluate(r, [seen(1.0, count=4)], [], T0) == []
    assert [c.event for c in evaluate(r, [seen(1.0, count=5)], [], T0)] == ["firing"]


def test_the_threshold_itself_is_not_a_breach() -> None:
    r = rule(kind="run_duration", threshold=60.0)
    assert evaluate(r, [seen(60.0, count=None)], [], T0) == []
    assert len(evaluate(r, [seen(60.5, count=None)], [], T0)) == 1


def test_keys_are_independent_and_other_rules_states_are_ignored() -> None:
    r = rule()
    other = AlertState("other", "deploy", "firing", "warning", 1.0, 0.5, "x", T0)
    states, changes = run(r, [seen(0.3, "a"), seen(0.0, "b"), seen(0.5, "c")], [other], T0)
    assert sorted(c.key for c in changes) == ["a", "c"]
    assert {s.key for s in states} == {"a", "c", "deploy"}


def test_schedule_misses_and_service_down_fire_on_any_occurrence() -> None:
    missed = rule(kind="schedule_missed", threshold=300.0)
    assert len(evaluate(missed, [seen(1.0, count=None)], [], T0)) == 1
    down = rule(kind="service_down", url="http://x")
    assert evaluate(down, [seen(0.0, count=None)], [], T0) == []
    fired = evaluate(down, [seen(1.0, count=None)], [], T0)
    assert fired[0].after is not None
    assert fired[0].after.threshold is None


def test_labels_are_the_rules_and_the_observations_and_severity_follows_the_rule() -> None:
    r = rule(labels={"team": "ops"}, severity="critical")
    states, _ = run(r, [seen(0.3, labels={"workflow": "deploy"})], [], T0)
    assert states[0].labels == {"team": "ops", "workflow": "deploy"}
    r2 = replace(r, severity="info")
    _, changes = run(r2, [seen(0.3, labels={"workflow": "deploy"})], states, T0 + 30)
    assert changes[0].event is None
    assert changes[0].after is not None
    assert changes[0].after.severity == "info"


def test_a_notice_says_what_fired_for_people_and_machines() -> None:
    r = rule(severity="critical", description="Look at the deploy logs.")
    info = {"run_id": "r1", "step": "build"}
    change = evaluate(r, [seen(0.25, labels={"workflow": "deploy"}, info=info)], [], T0)[0]
    body = notice(r, change, T0)
    assert body["title"] == "[CRITICAL] fails"
    assert body["text"] == "deploy: observed 0.25 (threshold 1%)\nLook at the deploy logs."
    assert body["severity"] == "critical"
    assert body["value"] == 0.25
    assert body["threshold"] == 0.01
    assert (body["workflow"], body["run_id"], body["step"]) == ("deploy", "r1", "build")
    assert body["event"] == "firing"
    assert body["state"] == "firing"
    assert body["key"] == "deploy"


def test_no_channels_no_notices() -> None:
    r = rule(channels=())
    change = evaluate(r, [seen(0.3)], [], T0)[0]
    assert change.event == "firing"
    assert notices(r, change, T0) == []


def test_values_are_written_in_their_unit() -> None:
    assert format_value("ratio", 0.0123) == "1.23%"
    assert format_value("ratio", 0.3) == "30%"
    assert format_value("duration", 245) == "4m05s"
    assert format_value("count", 3.0) == "3"
    assert format_value("flag", 1.0) == "down"
    assert format_value("count", None) == "-"


# -- parsing ---------------------------------------------------------------------------------
SEED = """\
error-rate:
  kind: error_rate
  threshold: 1%
  severity: warning
response-time:
  kind: http_latency
  threshold: 2s
  severity: warning
service-down:
  kind: service_down
  url: http://127.0.0.1:8080/ready
  severity: critical
  for: 1m
"""


def test_every_kind_parses_with_its_defaults() -> None:
    specs = {
        "failure_rate": {"threshold": "1%"},
        "run_duration": {"threshold": "30m"},
        "step_retries": {"threshold": 2},
        "schedule_missed": {},
        "worker_silent": {},
        "error_rate": {"threshold": 0.01},
        "http_latency": {"threshold": "2s"},
        "service_down": {"url": "http://127.0.0.1:8080/ready"},
        "anomaly": {},
    }
    assert set(specs) == set(KINDS)
    for kind, spec in specs.items():
        parsed = parse_rule("r", {"kind": kind, **spec})
        assert parsed.kind == kind
        assert parsed.severity == "warning"
        assert parsed.enabled
    assert parse_rule("r", {"kind": "schedule_missed"}).threshold == 300.0  # grace
    assert parse_rule("r", {"kind": "worker_silent"}).threshold == 120.0
    assert parse_rule("r", {"kind": "error_rate", "threshold": "1%"}).min_count == 10
    assert parse_rule("r", {"kind": "run_duration", "threshold": "1h30m"}).threshold == 5400.0


def test_common_fields_parse() -> None:
    r = parse_rule(
        "deploys",
        {
            "kind": "failure_rate",
            "threshold": "5 %",
            "window": "2h",
            "min_runs": 3,
            "for": "5m",
            "repeat": "1h",
            "severity": "critical",
            "labels": {"team": "ops", "tier": 1},
            "channels": "ops",
            "workflow": "deploy",
            "group_by": "none",
            "send_resolved": False,
        },
    )
    assert (r.threshold, r.window, r.min_count, r.for_, r.repeat) == (0.05, 7200, 3, 300, 3600)
    assert r.labels == {"team": "ops", "tier": "1"}
    assert r.channels == ("ops",)
    assert (r.workflow, r.group_by, r.send_resolved) == ("deploy", "none", False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "nope"}, "kind must be one of failure_rate"),
        ({"kind": "failure_rate"}, "threshold: required for failure_rate rules"),
        ({"kind": "failure_rate", "threshold": "150%"}, "not between 0% and 100%"),
        ({"kind": "failure_rate", "threshold": 5}, "write 5% or 0.05"),
        ({"kind": "failure_rate", "threshold": "lots"}, "is not a ratio"),
        ({"kind": "run_duration", "threshold": "soon"}, "is not a duration"),
        ({"kind": "step_retries", "threshold": -1}, "threshold"),
        ({"kind": "failure_rate", "threshold": 0.1, "grace": "1m"}, "not a field of failure_rate"),
        ({"kind": "failure_rate", "threshold": 0.1, "severity": "high"}, "severity"),
        ({"kind": "failure_rate", "threshold": 0.1, "channels": [1]}, "channels"),
        ({"kind": "service_down", "url": "ftp://x"}, "http:// or https:// URL"),
        ({"kind": "http_latency", "threshold": "1s", "quantile": 1.5}, "quantile"),
        ("failure_rate", "expected a mapping"),
    ],
)
def test_bad_rules_are_refused_with_the_field_named(spec: object, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule("bad", spec)
    assert message in str(caught.value)
    assert str(caught.value).startswith("rule 'bad': ")


def test_every_problem_of_every_rule_is_reported_at_once() -> None:
    text = "a: {kind: failure_rate}\nb: {kind: run_duration, threshold: x, bogus: 1}\n"
    with pytest.raises(RuleError) as caught:
        load_text(text, "alerts.yaml")
    assert len(caught.value.problems) == 3
    assert all(p.startswith("alerts.yaml: rule ") for p in caught.value.problems)


def test_a_bad_rule_name_is_refused() -> None:
    with pytest.raises(RuleError, match="a rule name is letters"):
        parse_rule("no spaces", {"kind": "worker_silent"})


def test_the_seed_defaults_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(SEED)
    specs = load_file(path)
    assert sorted(specs) == ["error-rate", "response-time", "service-down"]
    assert specs["service-down"]["kind"] == "service_down"


def test_yaml_errors_give_the_position(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text("a:\n  kind: [unclosed\n")
    with pytest.raises(RuleError, match=r"alerts.yaml:\d+:\d+: not valid YAML"):
        load_file(path)
    with pytest.raises(RuleError, match="cannot read"):
        load_file(tmp_path / "missing.yaml")
    with pytest.raises(RuleError, match="expected a mapping of rule names"):
        load_text("- a\n- b\n", "x.yaml")


def test_kind_fields_name_each_kinds_own_fields() -> None:
    assert "min_runs" in KIND_FIELDS["failure_rate"]
    assert "grace" in KIND_FIELDS["schedule_missed"]
    assert "kind" not in KIND_FIELDS["worker_silent"]


# -- HTTP -------------------------------------------------------------------------------------
def test_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.3)
    assert quantile(0.95, buckets) == pytest.approx(0.75)
    assert quantile(0.5, [(float("inf"), 0.0)]) is None
    # beyond the largest finite bucket: that bucket's bound
    assert quantile(0.99, [(1.0, 1.0), (float("inf"), 10.0)]) == 1.0


METRICS = """\
# TYPE plait_http_requests_total counter
plait_http_requests_total{method="GET",route="/api/v1/runs",status="200"} %(ok)s
plait_http_requests_total{method="GET",route="/api/v1/runs",status="503"} %(bad)s
plait_http_requests_total{method="GET",route="/metrics",status="500"} 7
# TYPE plait_http_request_duration_seconds histogram
plait_http_request_duration_seconds_bucket{le="1.0",method="GET",route="/api/v1/runs"} %(fast)s
plait_http_request_duration_seconds_bucket{le="2.5",method="GET",route="/api/v1/runs"} %(mid)s
plait_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/api/v1/runs"} %(all)s
"""


def _scrape(at: float, **counts: float) -> Snapshot:
    return parse(METRICS % counts, at)


def test_the_error_rate_is_over_the_window_and_leaves_out_excluded_routes() -> None:
    r = parse_rule("e", {"kind": "error_rate", "threshold": "1%"})
    old = _scrape(T0, ok=100, bad=0, fast=100, mid=100, all=100)
    new = _scrape(T0 + 300, ok=190, bad=10, fast=100, mid=100, all=200)
    found = error_rate(r, new.minus(old), "host:8080")
    assert found.count == 100
    assert found.value == pytest.approx(0.1)
    assert "10 of 100 requests answered 5xx (10%)" in found.detail
    assert found.labels == {"instance": "host:8080"}


def test_latency_is_the_quantile_of_the_window() -> None:
    r = parse_rule("l", {"kind": "http_latency", "threshold": "2s"})
    old = _scrape(T0, ok=100, bad=0, fast=100, mid=100, all=100)
    new = _scrape(T0 + 300, ok=200, bad=0, fast=110, mid=150, all=200)
    found = latency(r, new.minus(old), "i")
    assert found.count == 100
    assert found.value == 2.5  # p95 lies beyond 2.5 s: the largest finite bound
    assert "p95 response time" in found.detail


def test_a_reset_counter_counts_from_zero() -> None:
    old = _scrape(T0, ok=100, bad=5, fast=1, mid=1, all=1)
    new = _scrape(T0 + 60, ok=3, bad=1, fast=1, mid=1, all=1)
    delta = new.minus(old)
    assert delta.requests[("/api/v1/runs", "200")] == 3
    assert delta.requests[("/api/v1/runs", "503")] == 1


def test_every_rule_in_the_operations_guide_is_valid() -> None:
    """The ready alerts.yaml and each kind's example in docs/operations.md parse."""
    import re

    import yaml

    guide = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
    text = guide.read_text()
    start = text.index("## Alert rules\n")
    section = text[start : text.find("\n## ", start + 1)]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(blocks) >= 8
    kinds: set[str] = set()
    for block in blocks:
        rules = load_text(block, "docs/operations.md")
        kinds |= {spec["kind"] for spec in rules.values()}
    assert kinds == set(KINDS)
    seed = yaml.safe_load(blocks[0])
    assert seed["error-rate"]["threshold"] == "1%"
    assert seed["response-time"]["threshold"] == "2s"
    assert seed["service-down"]["severity"] == "critical"
