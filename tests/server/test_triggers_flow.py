"""Triggers and run-to-run links on a live server: sub-workflows, event triggers
(run endings and published events), notifications, and missed schedule fires."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest

from .conftest import LiveServer
from .test_runs import ENDED, deploy, start, step_of, wait_for

CHILD = """\
name: child
inputs:
  n: {type: integer, default: 1}
  fail: {type: boolean, default: false}
steps:
  - id: square
    run: |
      [ "${{ inputs.fail }}" = "false" ] || { echo "child failed" >&2; exit 3; }
      echo "square=$(( ${{ inputs.n }} * ${{ inputs.n }} ))" >> "$PLAIT_OUTPUT"
outputs:
  square: "${{ steps.square.outputs.square }}"
"""

PARENT = """\
name: parent
inputs:
  fail: {type: boolean, default: false}
steps:
  - id: call
    uses: workflow
    with: {workflow: child, inputs: {n: 7, fail: "${{ inputs.fail }}"}}
  - id: show
    run: echo "child said ${{ steps.call.outputs.square }}"
"""


def _latest_run(c: httpx.Client, workflow: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        items = c.get("/api/v1/runs", params={"workflow": workflow}).json()["items"]
        if items:
            return dict(items[0])
        assert time.monotonic() < deadline, f"no run of {workflow}"
        time.sleep(0.1)


def test_sub_workflow_passes_inputs_and_returns_outputs(server: LiveServer) -> None:
    deploy(server, CHILD)
    deploy(server, PARENT)
    with server.client() as c:
        run_id = start(c, "parent").json()["id"]
        run = wait_for(c, run_id, ENDED, timeout=40)
        child = _latest_run(c, "child")
    assert run["status"] == "succeeded", run
    call = step_of(run, "call")
    assert call["outputs"]["square"] == "49"
    assert call["outputs"]["run_id"] == child["id"]


def test_sub_workflow_failure_fails_the_step(server: LiveServer) -> None:
    deploy(server, CHILD)
    deploy(server, PARENT)
    with server.client() as c:
        run_id = start(c, "parent", {"fail": True}).json()["id"]
        run = wait_for(c, run_id, ENDED, timeout=40)
    assert run["status"] == "failed"
    assert "failed" in (step_of(run, "call")["error"] or "")
    assert step_of(run, "show")["status"] == "skipped"


def test_run_ending_and_published_events_start_workflows(server: LiveServer) -> None:
    deploy(server, "name: build\nsteps:\n  - id: compile\n    run: echo built\n")
    deploy(
        server,
        """\
name: after-build
triggers:
  - event: {type: run.succeeded, workflow: build}
steps:
  - id: report
    run: echo "build run ${{ trigger.run.id }} ${{ trigger.run.status }}"
""",
    )
    deploy(
        server,
        """\
name: on-request
triggers:
  - event: {type: deploy.requested, if: "event.payload.env == 'staging'"}
steps:
  - id: go
    run: echo "deploying ${{ trigger.payload.version }}"
""",
    )
    with server.client() as c:
        build_id = start(c, "build").json()["id"]
        wait_for(c, build_id, ENDED)
        after = _latest_run(c, "after-build")
        done = wait_for(c, after["id"], ENDED)
        detail = c.get(f"/api/v1/runs/{after['id']}").json()
        skipped = c.post(
            "/api/v1/events",
            json={"type": "deploy.requested", "source": "ci", "payload": {"env": "production"}},
        )
        fired = c.post(
            "/api/v1/events",
            json={
                "type": "deploy.requested",
                "source": "ci",
                "payload": {"env": "staging", "version": "9"},
            },
        )
        assert skipped.status_code == 202, skipped.text
        assert fired.status_code == 202, fired.text
        run = _latest_run(c, "on-request")
        run = wait_for(c, run["id"], ENDED)
        time.sleep(1.5)  # the production event had its chance to (wrongly) start one
        all_runs = c.get("/api/v1/runs", params={"workflow": "on-request"}).json()["items"]
        logs = c.get(f"/api/v1/runs/{run['id']}/logs").json()["items"]
    assert done["status"] == "succeeded"
    assert detail["trigger"]["type"] == "event"
    assert detail["trigger"]["payload"]["run"]["id"] == build_id
    assert run["status"] == "succeeded"
    assert len(all_runs) == 1
    assert any("deploying 9" in line["line"] for line in logs)


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.received = []
    httpd = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    finally:
        httpd.shutdown()


def test_notify_action_and_workflow_notifications(
    sqlite_server: LiveServer, receiver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_CHANNEL_OPS", receiver)
    deploy(
        sqlite_server,
        f"""\
name: noisy
notify:
  - {{on: [failed], channel: ops, message: "noisy failed"}}
steps:
  - id: tell
    uses: notify
    with: {{url: "{receiver}", type: slack, message: "hello from ${{{{ run.workflow }}}}"}}
  - id: break
    run: exit 1
""",
    )
    with sqlite_server.client() as c:
        run = wait_for(c, start(c, "noisy").json()["id"], ENDED)
    deadline = time.monotonic() + 10
    while len(_Receiver.received) < 2:
        assert time.monotonic() < deadline, _Receiver.received
        time.sleep(0.1)
    assert run["status"] == "failed"
    slack = next(m for m in _Receiver.received if m.get("text") == "hello from noisy")
    assert slack["blocks"][0]["text"]["text"] == "hello from noisy"  # Slack: text and blocks
    note = next(m for m in _Receiver.received if m.get("text") == "noisy failed")
    assert note["run_id"] == run["id"]
    assert note["status"] == "failed"


def test_missed_schedule_fires_are_recorded_and_visible(sqlite_server: LiveServer) -> None:
    deploy(
        sqlite_server,
        """\
name: hourly
triggers:
  - schedule: {cron: "0 * * * *", catch_up: latest}
steps:
  - id: tick
    run: echo "tick ${{ trigger.scheduled_at }}"
""",
    )
    triggers = sqlite_server.services.extras["triggers"]
    schedule = sqlite_server.services.server_store.list_schedules("hourly")[0]
    later = schedule.created_at + 5 * 3600 + 60  # five hourly fires came due while "down"
    asyncio.run(triggers.tick(later))
    asyncio.run(triggers.tick(later))  # a second pass (or scheduler) adds nothing
    with sqlite_server.client() as c:
        info = c.get("/api/v1/workflows/hourly/schedules").json()
        runs = c.get("/api/v1/runs", params={"workflow": "hourly"}).json()["items"]
    assert len(runs) == 1  # catch_up latest: only the newest fire runs
    text = json.dumps(info)
    assert text.count('"missed"') >= 4 or '"missed_count": 4' in text, info
    detail = sqlite_server.client().get(f"/api/v1/runs/{runs[0]['id']}").json()
    scheduled = datetime.fromisoformat(detail["trigger"]["payload"]["scheduled_at"])
    newest = datetime.fromtimestamp(later, UTC).replace(minute=0, second=0, microsecond=0)
    assert scheduled == newest


def test_store_secrets_reach_steps_and_are_masked(server: LiveServer) -> None:
    secret = "tr0ub4dor-and-3"
    with server.client() as c:
        put = c.put("/api/v1/secrets/default/DB_PASSWORD", json={"value": secret})
        assert put.status_code in (200, 201, 204), put.text
    deploy(
        server,
        """\
name: uses-secret
steps:
  - id: connect
    run: |
      echo "connecting with ${{ secrets.DB_PASSWORD }}"
      test "${{ secrets.DB_PASSWORD }}" = "tr0ub4dor-and-3"
      echo "dsn=postgres://app:${{ secrets.DB_PASSWORD }}@db/app" >> "$PLAIT_OUTPUT"
""",
    )
    with server.client() as c:
        run = wait_for(c, start(c, "uses-secret").json()["id"], ENDED)
        logs = c.get(f"/api/v1/runs/{run['id']}/logs").json()["items"]
        raw = c.get(f"/api/v1/runs/{run['id']}").text
    assert run["status"] == "succeeded", run
    assert any(line["line"] == "connecting with ***" for line in logs)
    assert step_of(run, "connect")["outputs"]["dsn"] == "postgres://app:***@db/app"
    assert secret not in raw


def test_two_schedulers_never_double_a_fire(sqlite_server: LiveServer) -> None:
    from plait.triggers.service import TriggerService

    deploy(
        sqlite_server,
        """\
name: contested
triggers:
  - schedule: {cron: "*/10 * * * *", catch_up: all}
steps:
  - id: tick
    run: echo tick
""",
    )
    schedule = sqlite_server.services.server_store.list_schedules("contested")[0]
    later = schedule.created_at + 3600 + 30  # six fires due
    schedulers = [TriggerService(sqlite_server.services) for _ in range(2)]
    threads = [threading.Thread(target=lambda t=t: asyncio.run(t.tick(later))) for t in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with sqlite_server.client() as c:
        runs = c.get("/api/v1/runs", params={"workflow": "contested", "limit": 50}).json()
    assert len(runs["items"]) == 6


def test_a_secret_passed_to_a_sub_workflow_stays_masked(server: LiveServer) -> None:
    token = "sub-w0rkflow-s3cret"
    with server.client() as c:
        c.put("/api/v1/secrets/default/PASS_ON", json={"value": token})
    deploy(
        server,
        """\
name: receiver
inputs:
  value: {type: string}
steps:
  - id: echo
    run: echo "got ${{ inputs.value }}"
""",
    )
    deploy(
        server,
        """\
name: sender
steps:
  - id: call
    uses: workflow
    with: {workflow: receiver, inputs: {value: "key=${{ secrets.PASS_ON }}"}}
""",
    )
    with server.client() as c:
        run = wait_for(c, start(c, "sender").json()["id"], ENDED, timeout=40)
        child = _latest_run(c, "receiver")
        detail = c.get(f"/api/v1/runs/{child['id']}")
        logs = c.get(f"/api/v1/runs/{child['id']}/logs").json()["items"]
    assert run["status"] == "succeeded", run
    assert token not in detail.text
    assert detail.json()["inputs"]["value"] == "***"
    assert any(line["line"] == "got ***" for line in logs), logs
