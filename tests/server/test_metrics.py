"""``/metrics``: store gauges read at scrape time, HTTP counts by route template."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from plait.server import metrics
from plait.server.app import create_app

from .conftest import LiveServer
from .test_runs import ENDED, deploy, start, wait_for


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_metrics_count_runs_steps_and_the_queue(server: LiveServer) -> None:
    deploy(server, "name: m\nsteps:\n  - id: a\n    run: echo a\n  - id: b\n    run: exit 1\n")
    with server.client() as c:
        for _ in range(2):
            wait_for(c, start(c, "m").json()["id"], ENDED)
    with server.anonymous() as anon:
        r = anon.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    got = _samples(r.text)
    assert got[("plait_runs", (("status", "failed"), ("workflow", "m")))] == 2
    assert got[("plait_steps", (("status", "succeeded"),))] == 2
    assert got[("plait_steps", (("status", "failed"),))] == 2
    assert got[("plait_queue_depth", (("queue", "default"),))] == 0
    assert got[("plait_queue_oldest_age_seconds", (("queue", "default"),))] == 0
    assert got[("plait_workers", (("state", "running"),))] == 1  # the server's own worker
    assert got[("plait_workers", (("state", "lost"),))] == 0
    assert got[("plait_store_up", ())] == 1


def test_a_running_step_shows_its_worker_heartbeat(server: LiveServer) -> None:
    deploy(server, "name: busy\nsteps:\n  - id: s\n    run: sleep 30\n")
    with server.client() as c:
        run_id = start(c, "busy").json()["id"]
        wait_for(c, run_id, ("running",))
        text = c.get("/metrics").text
        c.post(f"/api/v1/runs/{run_id}/cancel")
    beats = [
        v for (name, _), v in _samples(text).items() if name == "plait_worker_heartbeat_age_seconds"
    ]
    assert len(beats) == 1
    assert 0 <= beats[0] < 30


def test_http_requests_are_counted_by_route_template(server: LiveServer) -> None:
    app = create_app(server.services)
    if not any(m.cls is metrics.HttpMetrics for m in app.user_middleware):
        metrics.install(app)
    with TestClient(app) as c:
        headers = {"Authorization": f"Bearer {server.token}"}
        assert c.get("/api/v1/runs/abc", headers=headers).status_code == 404
        assert c.get("/api/v1/runs/def", headers=headers).status_code == 404
        # a bare unknown path is the UI's (single-page app fallback); an API one is 404
        assert c.get("/api/v1/nowhere").status_code == 404
        text = c.get("/metrics").text
    got = _samples(text)
    key = (("method", "GET"), ("route", "/api/v1/runs/{run_id}"), ("status", "404"))
    assert got[("plait_http_requests_total", key)] == 2
    others = [
        value
        for (name, labels), value in got.items()
        if name == "plait_http_requests_total" and ("status", "404") in labels and labels != key
    ]
    assert others == [1]  # the unknown path, under its own label, not the runs route
    count = (("method", "GET"), ("route", "/api/v1/runs/{run_id}"))
    assert got[("plait_http_request_duration_seconds_count", count)] == 2
