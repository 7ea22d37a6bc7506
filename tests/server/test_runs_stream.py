"""Following a run's log as Server-Sent Events, and paging through many runs."""

from __future__ import annotations

import json
import time
from typing import Any

from plait.client import parse_sse

from .conftest import LiveServer
from .test_runs import ENDED, deploy, start, wait_for

TICKER = """\
name: ticker
steps:
  - id: tick
    run: for i in 1 2 3 4; do echo "line $i"; sleep 0.3; done
  - id: tock
    run: echo done
"""


def test_follow_streams_lines_live_and_ends_with_the_run(server: LiveServer) -> None:
    deploy(server, TICKER)
    events: list[tuple[str, dict[str, Any]]] = []
    status_at_first_line = None
    with server.client() as c:
        run_id = start(c, "ticker").json()["id"]
        url = f"/api/v1/runs/{run_id}/logs"
        with c.stream("GET", url, params={"follow": "true"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for name, data in parse_sse(r.iter_lines()):
                events.append((name, data))
                if name == "log" and status_at_first_line is None:
                    status_at_first_line = c.get(f"/api/v1/runs/{run_id}").json()["status"]
    names = [n for n, _ in events]
    assert names[0] == "status"
    assert names[-1] == "end"
    assert events[-1][1]["status"] == "succeeded"
    lines = [d["line"] for n, d in events if n == "log"]
    assert lines[:4] == ["line 1", "line 2", "line 3", "line 4"]
    assert "done" in lines
    assert status_at_first_line == "running"  # the first line came while the run ran
    ids = [d["id"] for n, d in events if n == "log"]
    assert ids == sorted(ids)


def test_follow_resumes_after_the_last_event_id(server: LiveServer) -> None:
    deploy(server, TICKER)
    with server.client() as c:
        run_id = start(c, "ticker").json()["id"]
        wait_for(c, run_id, ENDED)
        first = c.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 2}).json()
        headers = {"Last-Event-ID": str(first["next_after"])}
        r = c.get(f"/api/v1/runs/{run_id}/logs", params={"follow": "true"}, headers=headers)
    events = list(parse_sse(iter(r.text.splitlines())))
    lines = [d["line"] for n, d in events if n == "log"]
    assert lines[0] == "line 3"
    assert events[-1] == ("end", {"status": "succeeded", "after": events[-2][1]["id"]})


def test_follow_stops_when_the_client_goes_away(server: LiveServer) -> None:
    deploy(server, "name: long\nsteps:\n  - id: s\n    run: echo start; sleep 30\n")
    with server.client() as c:
        run_id = start(c, "long").json()["id"]
        with c.stream("GET", f"/api/v1/runs/{run_id}/logs", params={"follow": "true"}) as r:
            for name, _ in parse_sse(r.iter_lines()):
                if name == "log":
                    break
        # the server is still answering: the abandoned stream does not hold it up
        assert c.get("/health").status_code == 200
        c.post(f"/api/v1/runs/{run_id}/cancel")


def test_paging_over_many_runs_with_cursors(server: LiveServer) -> None:
    deploy(server, "name: tiny\nsteps:\n  - id: s\n    uses: sleep\n    with: {duration: 0}\n")
    with server.client() as c:
        made = [start(c, "tiny").json()["id"] for _ in range(120)]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 50, "workflow": "tiny"}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/api/v1/runs", params=params).json()
            seen += [r["id"] for r in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == list(reversed(made))  # newest first, none twice, none lost
        deadline = time.monotonic() + 60
        while True:
            done = c.get("/api/v1/runs", params={"status": "succeeded", "limit": 500}).json()
            if len(done["items"]) == 120 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        several = c.get(
            "/api/v1/runs", params=[("status", "succeeded"), ("status", "failed"), ("limit", 5)]
        ).json()
    assert len(done["items"]) == 120
    assert len(several["items"]) == 5
    assert several["next_cursor"]
    assert json.dumps(several)  # plain JSON all the way down
