"""Observability of a live server: run and step counters and histograms on /metrics,
the Grafana dashboard's queries against them, server spans, and request ids in logs."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from plait.ops import logging as logctx
from plait.ops import tracing
from plait.server.app import create_app

from .conftest import LiveServer
from .test_runs import ENDED, deploy, start, wait_for

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "plait.json"

WORKFLOW = """name: observed
steps:
  - id: ok
    run: echo fine
  - id: flaky
    run: exit 1
    retries: {max: 2, backoff: constant, initial: 10ms}
    on_error: continue
  - id: group
    parallel:
      - id: left
        run: "true"
      - id: right
        uses: sleep
        with: {duration: 10ms}
"""


def _scrape(server: LiveServer) -> str:
    with server.anonymous() as anon:
        r = anon.get("/metrics")
    assert r.status_code == 200
    return r.text


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def _run_twice(server: LiveServer) -> None:
    deploy(server, WORKFLOW)
    with server.client() as c:
        for _ in range(2):
            run = wait_for(c, start(c, "observed").json()["id"], ENDED)
            assert run["status"] == "succeeded", run


def test_runs_steps_retries_and_durations_are_counted(server: LiveServer) -> None:
    _scrape(server)  # counting starts with the server, whatever the first scrape sees
    _run_twice(server)
    got = _samples(_scrape(server))
    wf = ("workflow", "observed")
    assert got[("plait_runs_started_total", (wf,))] == 2
    assert got[("plait_runs_ended_total", (("status", "succeeded"), wf))] == 2
    shell_ok = (("status", "succeeded"), ("uses", "shell"), wf)
    assert got[("plait_steps_ended_total", shell_ok)] == 4  # ok and left, twice
    assert got[("plait_steps_ended_total", (("status", "failed"), ("uses", "shell"), wf))] == 2
    assert got[("plait_steps_ended_total", (("status", "succeeded"), ("uses", "sleep"), wf))] == 2
    assert got[("plait_step_retries_total", (("uses", "shell"), wf))] == 4  # 2 retries, twice
    # groups are not counted as steps: their children are
    assert not any(k[0] == "plait_steps_ended_total" and ("uses", "group") in k[1] for k in got)
    assert got[("plait_run_duration_seconds_count", (("status", "succeeded"), wf))] == 2
    total = got[("plait_run_duration_seconds_sum", (("status", "succeeded"), wf))]
    assert 0 < total < 60
    # each attempt once: ok, flaky (3 attempts), left — twice
    assert got[("plait_step_duration_seconds_count", (("uses", "shell"), wf))] == 10
    inf = (("le", "+Inf"), ("uses", "shell"), wf)
    assert got[("plait_step_duration_seconds_bucket", inf)] == 10
    # a second scrape reads nothing twice
    assert _samples(_scrape(server))[("plait_runs_started_total", (wf,))] == 2


def test_schedule_lag_and_misses(server: LiveServer) -> None:
    _scrape(server)
    now = time.time()
    store = server.services.server_store
    assert store.record_fire("nightly/abc", "nightly/abc@1", now - 3.0, None, "fired")
    assert store.record_fire("nightly/abc", "nightly/abc@2", now - 100.0, None, "missed")
    got = _samples(_scrape(server))
    wf = ("workflow", "nightly")
    assert got[("plait_schedule_lag_seconds_count", (wf,))] == 1
    assert 2.5 < got[("plait_schedule_lag_seconds_sum", (wf,))] < 60
    assert got[("plait_schedule_lag_seconds_bucket", (("le", "2.0"), wf))] == 0
    assert got[("plait_schedule_lag_seconds_bucket", (("le", "5.0"), wf))] == 1
    assert got[("plait_schedule_misses_total", (wf,))] == 1


def _queried_metrics(dashboard: dict[str, Any]) -> set[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return {name for e in exprs for name in re.findall(r"\bplait_[a-z_]+\b", e)}


def test_the_dashboard_is_grafana_json_over_exported_metrics(sqlite_server: LiveServer) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"]
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
        assert all(t["expr"] for t in panel["targets"])
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("status", "failure", "p95", "queue", "lag", "heartbeat", "latency"):
        assert topic in titles, topic

    _scrape(sqlite_server)
    _run_twice(sqlite_server)
    text = _scrape(sqlite_server)
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    missing = []
    for name in sorted(_queried_metrics(dashboard)):
        base = re.sub(r"_(bucket|sum|count|total)$", "", name)
        if name not in families and base not in families:
            missing.append(name)
    assert not missing, f"the dashboard queries metrics /metrics does not export: {missing}"


def test_requests_get_server_spans_and_ids_in_json_logs(sqlite_server: LiveServer) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    traced = tracing.Tracing(exporter, batch=False)
    tracing.set_current(traced)
    records: list[dict[str, Any]] = []
    formatter = logctx.JsonFormatter()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(json.loads(formatter.format(record)))

    keep = Keep()
    app = create_app(sqlite_server.services)

    @app.get("/probe-log")
    def probe() -> dict[str, str]:  # logs from a handler in the thread pool
        logging.getLogger("plait.test.probe").warning("inside a request")
        return {}

    app.router.routes.insert(0, app.router.routes.pop())  # before the UI's catch-all
    logging.getLogger("plait.test.probe").addHandler(keep)
    try:
        with TestClient(app) as c:
            headers = {"Authorization": f"Bearer {sqlite_server.token}", "X-Request-Id": "req-42"}
            assert c.get("/api/v1/runs/nope", headers=headers).status_code == 404
            parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            r = c.get("/probe-log", headers={"X-Request-Id": "req-43", "traceparent": parent})
            assert r.status_code == 200
    finally:
        logging.getLogger("plait.test.probe").removeHandler(keep)
        tracing.set_current(None)
        traced.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    run = spans["GET /api/v1/runs/{run_id}"]
    assert run.kind is SpanKind.SERVER
    assert run.attributes is not None
    assert run.attributes["http.response.status_code"] == 404
    assert run.attributes["http.route"] == "/api/v1/runs/{run_id}"
    probe_span = spans["GET /probe-log"]
    assert probe_span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C  # joined the caller's
    (line,) = records
    assert line["request_id"] == "req-43"
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert line["message"] == "inside a request"


def test_a_run_ended_by_the_api_gets_its_run_span(sqlite_server: LiveServer) -> None:
    """A run cancelled while it waits for an approval ends in the API process, not in a
    worker: that process sends the run span."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    traced = tracing.Tracing(exporter, batch=False)
    deploy(sqlite_server, "name: gated\nsteps:\n  - id: gate\n    uses: approval\n")
    tracing.set_current(traced)
    try:
        with sqlite_server.client() as c:
            run_id = start(c, "gated").json()["id"]
            wait_for(c, run_id, ("waiting",))
            assert c.post(f"/api/v1/runs/{run_id}/cancel").status_code in (200, 202)
            wait_for(c, run_id, ("cancelled",))
    finally:
        tracing.set_current(None)
        traced.shutdown()
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "run gated"]
    assert span.context.trace_id == tracing.trace_id_of(run_id)
    assert span.context.span_id == tracing.run_span_id(run_id)
    assert span.attributes is not None
    assert span.attributes["plait.status"] == "cancelled"
