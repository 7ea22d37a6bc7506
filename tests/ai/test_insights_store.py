"""Insights over a real store — a SQLite file and a fresh PostgreSQL database — with
seeded histories: failures of three causes (numbers, paths, ids and log tails varying)
come out as three clusters with the right counts, times, workflows and steps; slow and
fast runs and steps stand out of a steady history while small or thin ones do not; and
a history of transient failures, useless retries, slow and hanging steps gives the
retry and timeout suggestions it argues for. The failure query reads the partial index
of failed attempts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plait.actions.registry import ActionRegistry
from plait.model import load_workflow
from plait.model.plan import Plan
from plait.ops.insights import HistoryFilter, Insights, as_json
from plait.ops.insights_records import RunTiming
from plait.store.migrate import open_store
from plait.store.server import ServerStore
from plait.store.sql import SqlStore
from tests.pg import fresh_database

from .test_insights_seed import T0, History, Try, fail, ok

HOUR = 3600.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path / 'plait.db'}")
        try:
            yield opened
        finally:
            opened.close()
        return
    with fresh_database("plait_insights") as url:
        opened = open_store(url)
        try:
            yield opened
        finally:
            opened.close()


def tokens(store: SqlStore) -> Insights:
    return Insights(ServerStore(store), method="tokens")


# -- failures ------------------------------------------------------------------------------
REFUSED = 'connection to server at "10.0.{i}.{j}", port {port} failed: Connection refused'
DISK = "could not write /var/backups/2026-05-{day:02d}/db-{n}.dump: No space left on device"
UNAVAILABLE = "HTTP 503 Service Unavailable from https://api.example.com/v1/orders/{n}?req={h}"


def seed_three_causes(history: History, start: float = T0) -> dict[str, list[float]]:
    """12 refused connections (two workflows), 7 full disks, 5 unavailable services
    (items of a for_each step), among successes, an hour apart from ``start``; each
    failure's end time by cause."""
    ends: dict[str, list[float]] = {"refused": [], "disk": [], "unavailable": []}
    at = start
    for i in range(12):
        wf, step = ("etl", "load") if i % 3 else ("report", "query")
        error = REFUSED.format(i=i, j=i * 7 % 250, port=5432 + i)
        log = [f"psql: attempt {i} at 2026-05-01T0{i % 10}:00:00Z", error]
        history.run(wf, {step: [fail(error, took=2.0, log=log)]}, at=at)
        ends["refused"].append(at + 2.0)
        history.run(wf, {step: [ok(3.0)]}, at=at + 600)
        at += HOUR
    for n in range(7):
        error = DISK.format(day=n + 1, n=1000 + n * 17)
        history.run("backup", {"dump": [ok(5.0), fail(error, took=4.0)]}, at=at)
        ends["disk"].append(at + 9.0)
        at += HOUR
    for n in range(5):
        error = UNAVAILABLE.format(n=88000 + n, h=f"{n:04x}ab12cd34ef")
        item = f"fetch[{n % 2}]"
        tries = [fail(error, took=0.5, log=[f"GET /v1/orders/{88000 + n} -> 503"]), ok(0.5)]
        history.run("sync", {item: tries}, at=at)
        ends["unavailable"].append(at + 0.5)
        at += HOUR
    return ends


def test_three_causes_make_three_clusters(store: SqlStore) -> None:
    history = History(store)
    history.run("etl", {"load": [fail("ancient failure", took=1.0)]}, at=T0 - 30 * 86400)
    ends = seed_three_causes(history)
    report = tokens(store).failures(T0 - 86400, HistoryFilter())
    assert report.method == "tokens"
    assert [c.count for c in report.clusters] == [12, 7, 5]
    refused, disk, unavailable = report.clusters
    assert (refused.first_seen, refused.last_seen) == (min(ends["refused"]), max(ends["refused"]))
    assert (disk.first_seen, disk.last_seen) == (min(ends["disk"]), max(ends["disk"]))
    assert unavailable.last_seen == max(ends["unavailable"])
    assert refused.workflows == ("etl", "report")
    assert [(s.workflow, s.step, s.count) for s in refused.steps] == [
        ("etl", "load", 8),
        ("report", "query", 4),
    ]
    assert [(s.workflow, s.step, s.count) for s in unavailable.steps] == [("sync", "fetch", 5)]
    assert disk.label == DISK.format(day=7, n=1102)  # the newest of the representative text
    assert refused.label.endswith("Connection refused")
    assert "HTTP 503" in unavailable.label
    assert len(refused.examples) == 5
    assert [e.at for e in refused.examples] == sorted(ends["refused"], reverse=True)[:5]
    assert {e.step for e in unavailable.examples} == {"fetch[0]", "fetch[1]"}
    assert all(e.attempt == 1 for e in unavailable.examples)
    assert all(e.attempt == 2 for e in disk.examples)
    assert len({c.id for c in report.clusters}) == 3
    again = tokens(store).failures(T0 - 86400, HistoryFilter())
    assert as_json(again) == as_json(report)  # deterministic, ids included


def test_failures_keep_to_the_filter_and_the_callers_namespaces(store: SqlStore) -> None:
    history = History(store)
    seed_three_causes(history)
    history.run("etl", {"load": [fail("elsewhere: permission denied")]}, at=T0, namespace="b")
    insights = tokens(store)
    only_backup = insights.failures(T0 - 86400, HistoryFilter(workflow="backup"))
    assert [c.count for c in only_backup.clusters] == [7]
    in_b = insights.failures(T0 - 86400, HistoryFilter(namespaces=frozenset({"b"})))
    assert [(c.count, c.workflows) for c in in_b.clusters] == [(1, ("etl",))]
    assert insights.failures(T0 - 86400, HistoryFilter(namespaces=frozenset())).clusters == ()
    asked = HistoryFilter(namespace="default", namespaces=frozenset({"b"}))
    assert insights.failures(T0 - 86400, asked).clusters == ()
    assert insights.failures(T0 + 400 * HOUR, HistoryFilter()).clusters == ()
    assert len(insights.failures(T0 - 86400, HistoryFilter(), limit=2).clusters) == 2


def test_the_log_tail_tells_apart_failures_with_the_same_error(store: SqlStore) -> None:
    history = History(store)
    for i in range(4):
        at = T0 + i * HOUR
        history.run(
            "ci", {"test": [fail("exit code 1", log=[f"ModuleNotFoundError: {i}x"])]}, at=at
        )
        history.run(
            "ci", {"lint": [fail("exit code 1", log=["E501 line too long (99 > 88)"])]}, at=at
        )
    report = tokens(store).failures(T0 - HOUR, HistoryFilter())
    assert sorted((c.steps[0].step, c.count) for c in report.clusters) == [("lint", 4), ("test", 4)]


def test_failed_attempts_are_read_from_their_partial_index(tmp_path: Path) -> None:
    opened = open_store(f"sqlite:///{tmp_path / 'plait.db'}")
    try:
        plan = opened.engine.connect().exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT * FROM attempts "
            "WHERE attempts.status IN ('failed', 'timed_out') AND started_at >= 0 "
            "ORDER BY started_at DESC LIMIT 10"
        )
        details = " ".join(str(row[-1]) for row in plan)
    finally:
        opened.close()
    assert "ix_attempts_failed" in details


# -- anomalies -----------------------------------------------------------------------------
def seed_durations(
    history: History, workflow: str, seconds: list[float], start: float
) -> list[str]:
    """Runs of ``workflow`` one hour apart taking ``seconds``; their ids."""
    return [history.simple(workflow, took, at=start + i * HOUR) for i, took in enumerate(seconds)]


def steady(n: int, around: float = 60.0) -> list[float]:
    return [around + ((i * 7) % 5 - 2) for i in range(n)]  # 58..62 s


def test_a_slow_and_a_fast_run_stand_out_of_a_steady_history(store: SqlStore) -> None:
    history = History(store)
    seed_durations(history, "nightly", steady(30), T0)
    later = T0 + 30 * HOUR
    slow, normal, fast = seed_durations(history, "nightly", [300.0, 61.0, 5.0], later)
    seed_durations(history, "young", [*steady(5), 600.0], T0)  # 5 runs: too little history
    seed_durations(history, "tiny", [0.010] * 20 + [0.030], T0)  # 3× slower, by 20 ms
    found = tokens(store).anomalies(later - 1, HistoryFilter())
    runs = {(a.run_id, a.step): a for a in found}
    assert set(runs) == {(slow, None), (slow, "work"), (fast, None), (fast, "work")}
    flagged = runs[(slow, None)]
    assert flagged.direction == "slow"
    assert flagged.median == 60.0
    assert flagged.mad == 1.0
    assert flagged.score == round(0.6745 * 240 / 1.0, 2)
    assert flagged.duration == 300.0
    assert runs[(fast, None)].direction == "fast"
    assert runs[(fast, None)].score < -3.5
    assert [a.run_id for a in found][:2] == [fast, fast]  # newest first, the run first
    assert found[0].step is None
    assert normal not in {a.run_id for a in found}
    only_runs = tokens(store).anomalies(later - 1, HistoryFilter(), steps=False)
    assert {a.run_id for a in only_runs} == {slow, fast}
    assert all(a.step is None for a in only_runs)


def test_the_flag_of_one_run_is_its_flag_in_the_list(store: SqlStore) -> None:
    history = History(store)
    seed_durations(history, "nightly", steady(30), T0)
    slow = history.simple("nightly", 300.0, at=T0 + 30 * HOUR)
    seed_durations(history, "nightly", steady(3), T0 + 31 * HOUR)  # later runs change nothing
    server = ServerStore(store)
    timing = server.run_timing(slow)
    assert timing is not None
    one = tokens(store).run_anomaly(timing)
    listed = [a for a in tokens(store).anomalies(T0, HistoryFilter()) if a.step is None]
    assert one is not None
    assert listed == [one]
    normal = server.run_timing(history.runs[-1])
    assert normal is not None
    assert tokens(store).run_anomaly(normal) is None
    running = RunTiming("x", "nightly", "default", "running", T0 + 40 * HOUR, T0 + 40 * HOUR, None)
    assert tokens(store).run_anomaly(running) is None


def test_a_history_of_identical_durations_still_judges_by_size(store: SqlStore) -> None:
    history = History(store)
    seed_durations(history, "fixed", [60.0] * 20, T0)
    close, far = seed_durations(history, "fixed", [62.0, 90.0], T0 + 20 * HOUR)
    seed_durations(history, "same", [60.0] * 20, T0)
    [alone] = seed_durations(history, "same", [90.0], T0 + 20 * HOUR)
    found = {a.run_id: a for a in tokens(store).anomalies(T0, HistoryFilter(), steps=False)}
    assert close not in found  # 2 s is less than 20 % of the median
    assert found[far].mad == 0.0
    # MAD 0: the mean absolute deviation (2 s over 21 runs) stands in
    assert found[far].score == round(30 / (1.253314 * 2 / 21), 2)
    assert found[alone].mad == 0.0
    assert found[alone].score == round(30 / (1.4826 * 0.6), 2)  # then 1 % of the median


def test_failed_runs_are_history_neither_judged_nor_counted(store: SqlStore) -> None:
    history = History(store)
    seed_durations(history, "mixed", steady(12), T0)
    for i in range(5):
        history.simple("mixed", 1.0, at=T0 + (12 + i) * HOUR, status="failed")
    slow = history.simple("mixed", 400.0, at=T0 + 17 * HOUR)
    found = tokens(store).anomalies(T0, HistoryFilter(), steps=False)
    assert [(a.run_id, a.median) for a in found] == [(slow, 60.0)]


# -- suggestions ---------------------------------------------------------------------------
SHOP = """\
name: shop
steps:
  - id: fetch
    run: ./fetch.sh
  - id: flaky
    run: ./flaky.sh
    retries: {retries}
    on_error: continue
  - id: slow
    run: ./slow.sh
  - id: hang
    run: ./hang.sh
    timeout: 30s
  - id: quick
    run: 'true'
    timeout: 1h
  - id: approve
    uses: approval
    with: {{approvers: ["role:admin"]}}
"""


def plan_reader(store: SqlStore) -> Callable[[int], Plan]:
    """Compiled plans of the store's versions, by id (as the run service gives them)."""
    compiled: dict[int, Plan] = {}
    registry = ActionRegistry()

    def plan_of(version_id: int) -> Plan:
        if version_id not in compiled:
            source = store.get_version(version_id).source
            compiled[version_id] = load_workflow(source, "shop.yaml", registry.input_models()).plan
        return compiled[version_id]

    return plan_of


def seed_shop(history: History, start: float = T0) -> None:
    """Ten runs on v1 (flaky had 3 retries and they saved it), then forty on v2, an
    hour apart from ``start``."""
    v1 = history.version(SHOP.format(retries=3))
    v2 = history.version(SHOP.format(retries=2))
    at = start
    for _ in range(10):
        flaky = [fail("assertion failed: expected 10 rows"), Try(wait=2.0, took=0.5)]
        history.run("shop", {"flaky": flaky, "quick": [ok(2.0)]}, at=at, version_id=v1)
        at += HOUR
    for i in range(40):
        steps: dict[str, list[Try]] = {}
        if i % 8 == 3:
            steps["fetch"] = [
                fail(f"HTTP 503 Service Unavailable from https://api.shop/orders?page={i}")
            ]
        else:
            steps["fetch"] = [ok(1.0 + i % 3 * 0.2)]
        if i % 6 == 0:
            error = f"assertion failed: expected {i} rows, got {i + 3}"
            steps["flaky"] = [fail(error), fail(error, wait=2.0), fail(error, wait=4.0)]
        else:
            steps["flaky"] = [ok(0.5)]
        steps["slow"] = [ok(50.0 + (i * 37) % 60)]
        if i % 10 == 5:
            steps["hang"] = [Try("timed_out", 30.0, "step timed out after 30s")]
        else:
            steps["hang"] = [ok(20.0 + i % 9)]
        steps["quick"] = [ok(2.0 + i % 3)]
        steps["approve"] = [ok(5000.0)]
        history.run("shop", steps, at=at, version_id=v2)
        at += HOUR


def test_the_history_suggests_retries_and_timeouts(store: SqlStore) -> None:
    history = History(store)
    seed_shop(history)
    plan_of = plan_reader(store)
    now = T0 + 60 * HOUR
    found = tokens(store).suggestions(HistoryFilter(), plan_of, now)
    by = {(s.step, s.kind): s for s in found}
    assert sorted(by) == [
        ("fetch", "retries"),
        ("fetch", "timeout"),
        ("flaky", "retries"),
        ("flaky", "timeout"),
        ("hang", "retries"),
        ("hang", "timeout"),
        ("quick", "timeout"),
        ("slow", "timeout"),
    ]
    fetch = by[("fetch", "retries")]
    assert fetch.current == 0
    assert fetch.suggested == {"retries": {"max": 2, "backoff": "exponential", "initial": "1m"}}
    assert fetch.evidence["transient"] == 5
    assert fetch.evidence["causes"] == 1
    assert "failed in 5 of 40 runs" in fetch.reason
    flaky = by[("flaky", "retries")]
    assert flaky.current == {"max": 2, "backoff": "exponential", "initial": "1s"}
    assert flaky.suggested == {"retries": 0}
    assert flaky.evidence["failed_runs"] == 7  # the v1 runs it recovered in do not count
    assert "none of its 2 retries ever succeeded" in flaky.reason
    assert by[("slow", "timeout")].suggested == {"timeout": "4m"}
    assert by[("slow", "timeout")].current is None
    assert by[("slow", "timeout")].evidence["p99"] == 50.0 + max(i * 37 % 60 for i in range(40))
    hang = by[("hang", "timeout")]
    assert (hang.current, hang.suggested) == ("30s", {"timeout": "1m"})
    assert hang.evidence["timed_out"] == 4
    assert "hit its 30s timeout in 4 of 40 runs" in hang.reason
    quick = by[("quick", "timeout")]
    assert (quick.current, quick.suggested) == ("1h", {"timeout": "10s"})
    assert quick.evidence["runs"] == 50  # v1 gave quick the same settings: its runs count
    assert all(s.workflow == "shop" for s in found)
    assert all(s.reason.endswith(".") for s in found)
    assert tokens(store).suggestions(HistoryFilter(workflow="other"), plan_of, now) == []
