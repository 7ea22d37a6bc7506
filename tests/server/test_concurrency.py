"""Concurrency limits over real HTTP, on SQLite and PostgreSQL: queued runs wait their
turn in order and can be cancelled while held, cancel_running supersedes, skip records
a cancelled run, keys rendered from inputs are independent, and concurrent starts never
exceed the limit (checked with the times the steps themselves wrote)."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from .conftest import LiveServer
from .test_runs import ENDED, deploy, start, step_of, wait_for

#: Each run's one step writes when it started and ended (its own clock) as outputs.
TIMED = """\
name: {name}
inputs:
  environment: {{type: string, default: staging}}
  seconds: {{type: number, default: 0.3}}
concurrency: {concurrency}
steps:
  - id: work
    run: |
      echo "started=$(date +%s.%N)" >> "$PLAIT_OUTPUT"
      sleep ${{{{ inputs.seconds }}}}
      echo "ended=$(date +%s.%N)" >> "$PLAIT_OUTPUT"
"""
LONG = 30  # seconds: "runs until the test ends it"


def workflow(name: str, concurrency: str) -> str:
    return TIMED.format(name=name, concurrency=concurrency)


def span(run: dict[str, Any]) -> tuple[float, float]:
    outputs = step_of(run, "work")["outputs"]
    return float(outputs["started"]), float(outputs["ended"])


def started(c: httpx.Client, name: str, **inputs: Any) -> dict[str, Any]:
    r = start(c, name, inputs)
    assert r.status_code == 201, r.text
    run: dict[str, Any] = r.json()
    return run


def cancel(c: httpx.Client, run_id: str) -> None:
    r = c.post(f"/api/v1/runs/{run_id}/cancel")
    assert r.status_code in (200, 202), r.text


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans that overlap at one instant."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, change in edges:  # an end sorts before a start at the same instant
        now += change
        peak = max(peak, now)
    return peak


QUEUE_1 = '{key: "deploy-${{ inputs.environment }}", limit: 1, on_conflict: queue}'


def test_queue_holds_runs_with_a_reason_and_runs_them_one_after_another_in_order(
    server: LiveServer,
) -> None:
    deploy(server, workflow("deploy", QUEUE_1))
    with server.client() as c:
        first = started(c, "deploy", seconds=1)
        second, third = started(c, "deploy"), started(c, "deploy")
        assert first["status"] == "running"
        assert first["concurrency_key"] == "deploy-staging"
        for held in (second, third):
            assert held["status"] == "queued", held
            assert held["reason"] == "waiting for a concurrency slot: deploy-staging (limit 1)"
            assert held["started_at"] is None
            assert {s["status"] for s in held["steps"]} == {"pending"}
        runs = [wait_for(c, r["id"], ENDED, timeout=60) for r in (first, second, third)]
    assert [r["status"] for r in runs] == ["succeeded"] * 3
    spans = [span(r) for r in runs]
    assert spans[0][1] <= spans[1][0], spans
    assert spans[1][1] <= spans[2][0], spans
    assert runs[1]["started_at"] < runs[2]["started_at"]


def test_a_held_run_can_be_cancelled_and_runs_nothing(server: LiveServer) -> None:
    deploy(server, workflow("deploy", QUEUE_1))
    with server.client() as c:
        first = started(c, "deploy", seconds=LONG)
        held, after = started(c, "deploy"), started(c, "deploy")
        cancel(c, held["id"])
        gone = wait_for(c, held["id"], ENDED)
        assert gone["status"] == "cancelled"
        assert gone["started_at"] is None
        assert [a for s in gone["steps"] for a in s["attempts"]] == []
        assert wait_for(c, after["id"], ("queued",))["status"] == "queued"
        cancel(c, first["id"])  # frees the slot: the next held run (not the cancelled) runs
        assert wait_for(c, after["id"], ENDED, timeout=60)["status"] == "succeeded"
        assert c.get(f"/api/v1/runs/{held['id']}").json()["status"] == "cancelled"


def test_cancel_running_supersedes_the_active_run_and_starts_at_once(
    server: LiveServer,
) -> None:
    deploy(server, workflow("deploy", "{limit: 1, on_conflict: cancel_running}"))
    with server.client() as c:
        old = started(c, "deploy", seconds=LONG)
        wait_for(c, old["id"], ("running",))
        new = started(c, "deploy", seconds=0.1)
        assert new["status"] == "running"
        assert new["concurrency_key"] == "deploy"  # the workflow's name by default
        superseded = wait_for(c, old["id"], ENDED)
        assert superseded["status"] == "cancelled"
        assert superseded["reason"] == f"superseded by run {new['id']}"
        assert wait_for(c, new["id"], ENDED)["status"] == "succeeded"


def test_skip_records_a_cancelled_run_that_says_why(server: LiveServer) -> None:
    deploy(server, workflow("deploy", "{key: only-one, limit: 1, on_conflict: skip}"))
    with server.client() as c:
        busy = started(c, "deploy", seconds=LONG)
        skipped = started(c, "deploy")
        assert skipped["status"] == "cancelled"
        assert skipped["reason"] == "skipped: only-one already has 1 active run(s)"
        assert skipped["started_at"] is None
        assert {s["status"] for s in skipped["steps"]} == {"cancelled"}
        assert c.get(f"/api/v1/runs/{busy['id']}").json()["status"] == "running"
        cancel(c, busy["id"])
        wait_for(c, busy["id"], ENDED)
        assert started(c, "deploy", seconds=0.1)["status"] == "running"


def test_keys_rendered_from_inputs_keep_environments_independent(server: LiveServer) -> None:
    deploy(server, workflow("deploy", QUEUE_1))
    with server.client() as c:
        staging = started(c, "deploy", environment="staging", seconds=LONG)
        production = started(c, "deploy", environment="production", seconds=LONG)
        staging_again = started(c, "deploy", environment="staging")
        assert (staging["status"], production["status"]) == ("running", "running")
        assert production["concurrency_key"] == "deploy-production"
        assert staging_again["status"] == "queued"
        assert staging_again["reason"].endswith("deploy-staging (limit 1)")
        for run in (staging, production, staging_again):
            cancel(c, run["id"])


def test_concurrent_starts_never_exceed_the_limit(server: LiveServer) -> None:
    deploy(server, workflow("deploy", "{key: pool, limit: 2, on_conflict: queue}"))
    ids: list[str] = []
    errors: list[str] = []
    gate = threading.Barrier(8)

    def start_one() -> None:
        with server.client() as c:
            gate.wait()
            r = start(c, "deploy", {"seconds": 0.2})
            if r.status_code == 201:
                ids.append(r.json()["id"])
            else:
                errors.append(r.text)

    threads = [threading.Thread(target=start_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(ids) == 8
    with server.client() as c:
        runs = [wait_for(c, run_id, ENDED, timeout=90) for run_id in ids]
    assert {r["status"] for r in runs} == {"succeeded"}
    assert most_at_once([span(r) for r in runs]) <= 2


def test_concurrent_skips_let_exactly_one_run_start(server: LiveServer) -> None:
    deploy(server, workflow("deploy", "{limit: 1, on_conflict: skip}"))
    statuses: list[str] = []
    gate = threading.Barrier(6)

    def start_one() -> None:
        with server.client() as c:
            gate.wait()
            statuses.append(start(c, "deploy", {"seconds": 2}).json()["status"])

    threads = [threading.Thread(target=start_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == ["cancelled"] * 5 + ["running"]
