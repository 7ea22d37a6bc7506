"""Alert rules on a live server, on SQLite and PostgreSQL, with real runs and a real
webhook: a failing workflow pushes the failure rate over its threshold and the
evaluator notifies once, and once more when it recovers; long runs, retried steps,
missed schedules, silent workers and HTTP rules; two evaluators at once notify once;
the API, its permissions and alerts.yaml.

Two servers per database: ``live`` runs the evaluator every 0.3 s on the real clock;
``manual`` has it off (``PLAIT_ALERT_INTERVAL=0``), and its tests drive
:class:`AlertService` passes at chosen times.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from plait.ops.alert_rules import KIND_FIELDS, parse_rule
from plait.ops.alert_service import AlertService, PassReport
from plait.ops.alerts import Observation, Rule, evaluate
from plait.server.compose import build_services
from plait.settings import Settings
from plait.store.server import ServerStore

from .conftest import LiveServer, _drop, _postgres_database, free_port, start_server
from .test_runs import ENDED, deploy, start, wait_for

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Receiver:
    """A webhook on 127.0.0.1 that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.bodies.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def of(self, rule: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.bodies if b.get("alert") == rule]

    def wait(self, rule: str, count: int, timeout: float = 40) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.of(rule)) < count:
            assert time.monotonic() < deadline, f"{rule}: {found}"
            time.sleep(0.05)
        return found


#: each server's webhook, by the server's URL
INBOXES: dict[str, Receiver] = {}


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Receiver:
    """The webhook of the server the test uses (its channel ``ops``)."""
    name = next(n for n in ("live", "manual", "fresh") if n in request.fixturenames)
    server: LiveServer = request.getfixturevalue(name)
    return INBOXES[server.url]


def _server(backend: str, home: Path, interval: str) -> Iterator[LiveServer]:
    receiver = Receiver()
    home.mkdir(parents=True)
    (home / "channels.yaml").write_text(f"ops: {{type: webhook, url: {receiver.url!r}}}\n")
    admin = name = None
    try:
        if backend == "sqlite":
            url = f"sqlite:///{home / 'plait.db'}"
        else:
            url, admin, name = _postgres_database()
        before = os.environ.get("PLAIT_ALERT_INTERVAL")
        os.environ["PLAIT_ALERT_INTERVAL"] = interval  # read once, when the server starts
        try:
            live, runner = start_server(home, url)
        finally:
            if before is None:
                os.environ.pop("PLAIT_ALERT_INTERVAL", None)
            else:
                os.environ["PLAIT_ALERT_INTERVAL"] = before
        INBOXES[live.url] = receiver
        try:
            yield live
        finally:
            runner.stop()
            live.services.store.close()
    finally:
        receiver.httpd.shutdown()
        if admin is not None and name is not None:
            _drop(admin, name)


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("live") / "home"
    yield from _server(request.param, home, "0.3")


@pytest.fixture(scope="module", params=BACKENDS)
def manual(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("manual") / "home"
    yield from _server(request.param, home, "0")


@pytest.fixture
def fresh(manual: LiveServer) -> Iterator[LiveServer]:
    """The manual server; the test's rules are deleted afterwards, so that no later
    pass evaluates them."""
    yield manual
    store = manual.services.server_store
    for rule in store.list_alert_rules():
        store.delete_alert_rule(rule.name, source=None)


def put_rule(server: LiveServer, name: str, spec: dict[str, Any]) -> None:
    with server.client() as c:
        r = c.put(f"/api/v1/alerts/rules/{name}", json=spec)
    assert r.status_code in (200, 201), r.text


def run(c: httpx.Client, workflow: str, **inputs: Any) -> dict[str, Any]:
    r = start(c, workflow, inputs)
    assert r.status_code == 201, r.text
    return wait_for(c, r.json()["id"], ENDED, timeout=60)


def alerts_of(server: LiveServer, rule: str) -> list[dict[str, Any]]:
    with server.client() as c:
        r = c.get("/api/v1/alerts", params={"rule": rule})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def tick(service: AlertService, now: float) -> PassReport:
    return asyncio.run(service.tick(now))


FLAKY = """\
name: flaky
inputs:
  fail: {type: boolean, default: false}
steps:
  - id: work
    run: '[ "${{ inputs.fail }}" = "false" ] || exit 3'
"""


# -- the evaluator on the real clock ----------------------------------------------------------
def test_failure_rate_notifies_once_and_once_more_on_recovery(
    live: LiveServer, receiver: Receiver
) -> None:
    deploy(live, FLAKY)
    put_rule(
        live,
        "flaky-failures",
        {
            "kind": "failure_rate",
            "workflow": "flaky",
            "threshold": "40%",
            "min_runs": 2,
            "channels": ["ops"],
        },
    )
    with live.client() as c:
        assert run(c, "flaky", fail=True)["status"] == "failed"
        time.sleep(1.0)
        assert receiver.of("flaky-failures") == []  # one run: below min_runs
        run(c, "flaky", fail=True)
        [fired] = receiver.wait("flaky-failures", 1)
        assert fired["status"] == "firing"
        assert fired["severity"] == "warning"
        assert fired["title"] == "[WARNING] flaky-failures"
        assert fired["workflow"] == "flaky"
        assert fired["value"] == 1.0
        assert "flaky: 2 of 2 runs failed (100%) in the last 1h00m" in fired["text"]
        [alert] = alerts_of(live, "flaky-failures")
        assert alert["state"] == "firing"
        assert alert["notifications"] == 1
        time.sleep(1.5)  # several passes: nothing new to say
        assert len(receiver.of("flaky-failures")) == 1
        for _ in range(3):  # 2 of 5 failed: 40% is not above 40%
            assert run(c, "flaky")["status"] == "succeeded"
    fired, resolved = receiver.wait("flaky-failures", 2)
    assert resolved["status"] == "resolved"
    assert resolved["title"] == "[RESOLVED] flaky-failures"
    assert resolved["resolved_at"] >= resolved["since"]
    time.sleep(1.0)
    assert len(receiver.of("flaky-failures")) == 2
    [alert] = alerts_of(live, "flaky-failures")
    assert alert["state"] == "resolved"
    assert alert["resolved_at"]
    assert alert["notifications"] == 2


def test_a_long_run_fires_while_it_runs_and_resolves_after_the_window(
    live: LiveServer, receiver: Receiver
) -> None:
    deploy(live, "name: slow\nsteps:\n  - id: nap\n    run: sleep 3\n")
    put_rule(
        live,
        "slow-runs",
        {
            "kind": "run_duration",
            "workflow": "slow",
            "threshold": "1s",
            "window": "2s",
            "severity": "critical",
            "channels": ["ops"],
        },
    )
    with live.client() as c:
        run_id = start(c, "slow").json()["id"]
        [fired] = receiver.wait("slow-runs", 1)
        assert wait_for(c, run_id, ENDED, timeout=60)["status"] == "succeeded"
    assert fired["run_id"] == run_id
    assert fired["severity"] == "critical"
    assert f"run {run_id} of slow has been running for" in fired["text"]
    assert fired["title"] == "[CRITICAL] slow-runs"
    _, resolved = receiver.wait("slow-runs", 2)
    assert resolved["status"] == "resolved"


def test_a_step_retried_too_often_fires_and_deleting_the_rule_closes_it_quietly(
    live: LiveServer, receiver: Receiver
) -> None:
    deploy(
        live,
        """\
name: shaky
steps:
  - id: flap
    run: exit 1
    retries: {max: 2, backoff: constant, initial: 100ms}
""",
    )
    put_rule(
        live,
        "retries",
        {"kind": "step_retries", "workflow": "shaky", "threshold": 1, "channels": ["ops"]},
    )
    with live.client() as c:
        run_id = run(c, "shaky")["id"]
        [fired] = receiver.wait("retries", 1)
        assert fired["step"] == "flap"
        assert fired["run_id"] == run_id
        assert f"step flap of run {run_id} was retried 2 times (threshold 1)" in fired["text"]
        assert c.delete("/api/v1/alerts/rules/retries").status_code == 204
    [alert] = alerts_of(live, "retries")
    assert alert["state"] == "resolved"
    time.sleep(1.0)
    assert len(receiver.of("retries")) == 1  # closed without a notice


# -- passes at chosen times -------------------------------------------------------------------
def test_a_missed_schedule_fires_and_resolves_once_it_fires(
    fresh: LiveServer, receiver: Receiver
) -> None:
    # Hourly, at the minute half an hour from now: the server's own scheduler (on the
    # real clock) must not fire it while the test moves the clock by hand.
    minute = (time.gmtime().tm_min + 30) % 60
    cron = f"{minute} * * * *"
    deploy(
        fresh,
        f"""\
name: hourly
triggers:
  - schedule: {{cron: "{cron}", catch_up: latest}}
steps:
  - id: tick
    run: echo tick
""",
    )
    put_rule(
        fresh,
        "hourly-missed",
        {"kind": "schedule_missed", "workflow": "hourly", "window": "1d", "channels": ["ops"]},
    )
    service = AlertService(fresh.services)
    scheduler = fresh.services.extras["triggers"]
    [schedule] = fresh.services.server_store.list_schedules("hourly")
    assert schedule.next_fire is not None
    assert tick(service, schedule.next_fire + 60).applied == 0  # within the 5m grace
    late = schedule.next_fire + 600
    tick(service, late)
    [fired] = receiver.wait("hourly-missed", 1)
    assert f"schedule '{cron}' (UTC) of hourly did not fire at" in fired["text"]
    assert "(10m00s late)" in fired["text"]
    # The scheduler catches up: the fire runs. Called directly rather than through
    # tick(), which fires only while this process leads (a leadership check that a
    # loaded machine can lose for a moment is not what this test is about).
    scheduler.fire_schedules(late)
    tick(service, late + 1)
    _, resolved = receiver.wait("hourly-missed", 2)
    assert resolved["status"] == "resolved"
    # down for five hours with catch_up latest: the skipped fires are recorded as missed
    scheduler.fire_schedules(late + 5 * 3600)
    tick(service, late + 5 * 3600 + 1)
    fired_again = receiver.wait("hourly-missed", 3)[2]
    assert fired_again["status"] == "firing"
    assert "fires were missed in the last 24h00m" in fired_again["text"]


def test_two_evaluators_at_once_notify_once(fresh: LiveServer, receiver: Receiver) -> None:
    deploy(fresh, "name: doomed\nsteps:\n  - id: fail\n    run: exit 1\n")
    put_rule(
        fresh,
        "doomed",
        {"kind": "failure_rate", "workflow": "doomed", "threshold": 0, "channels": ["ops"]},
    )
    with fresh.client() as c:
        run(c, "doomed")
    settings = fresh.services.settings
    other = build_services(Settings(home=settings.home, database_url=settings.database_url))
    try:
        evaluators = [AlertService(fresh.services), AlertService(other)]
        now = time.time()
        for moment, count in ((now, 1), (now + 7200, 2)):  # fire; then the window is clear
            reports = _at_once(evaluators, moment)
            assert sum(r.sent for r in reports) == 1, reports
            assert sum(r.applied for r in reports) == 1, reports
            time.sleep(0.5)
            assert len(receiver.wait("doomed", count)) == count
        assert [b["status"] for b in receiver.of("doomed")] == ["firing", "resolved"]
    finally:
        other.store.close()


def _at_once(evaluators: list[AlertService], now: float) -> list[PassReport]:
    barrier = threading.Barrier(len(evaluators))
    reports: list[PassReport] = []

    def one(service: AlertService) -> None:
        barrier.wait()
        reports.append(tick(service, now))

    threads = [threading.Thread(target=one, args=(s,)) for s in evaluators]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return reports


def test_a_silent_worker_fires(fresh: LiveServer, receiver: Receiver) -> None:
    deploy(fresh, "name: sleepy\nsteps:\n  - id: nap\n    run: sleep 4\n")
    put_rule(
        fresh, "silent", {"kind": "worker_silent", "severity": "critical", "channels": ["ops"]}
    )
    service = AlertService(fresh.services)
    with fresh.client() as c:
        run_id = start(c, "sleepy").json()["id"]
        wait_for(c, run_id, ("running",))
        deadline = time.monotonic() + 30
        while not fresh.services.server_store.worker_heartbeats():
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.1)
        tick(service, time.time() + 300)  # five minutes on, no heartbeat since
        [fired] = receiver.wait("silent", 1)
        assert fired["severity"] == "critical"
        assert "last heartbeat" in fired["text"]
        wait_for(c, run_id, ENDED, timeout=60)
    tick(service, time.time() + 1)
    _, resolved = receiver.wait("silent", 2)
    assert resolved["status"] == "resolved"


class _Metrics:
    """A /metrics endpoint whose counters the test sets."""

    def __init__(self) -> None:
        self.text = ""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = outer.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metrics"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def set(self, ok: int, errors: int, slow: int) -> None:
        """Counters since start: ``slow`` of the requests took between 1 and 5 s."""
        route = 'method="GET",route="/api/v1/runs"'
        total = ok + errors
        self.text = (
            f'plait_http_requests_total{{{route},status="200"}} {ok}\n'
            f'plait_http_requests_total{{{route},status="503"}} {errors}\n'
            f'plait_http_request_duration_seconds_bucket{{le="1.0",{route}}} {total - slow}\n'
            f'plait_http_request_duration_seconds_bucket{{le="5.0",{route}}} {total}\n'
            f'plait_http_request_duration_seconds_bucket{{le="+Inf",{route}}} {total}\n'
        )


def test_http_rules_watch_a_metrics_endpoint_over_a_window(
    fresh: LiveServer, receiver: Receiver
) -> None:
    metrics = _Metrics()
    try:
        for name, spec in {
            "api-errors": {"kind": "error_rate", "threshold": "1%"},
            "api-latency": {"kind": "http_latency", "threshold": "2s"},
        }.items():
            put_rule(fresh, name, {**spec, "url": metrics.url, "channels": ["ops"]})
        down = f"http://127.0.0.1:{free_port()}/health"
        put_rule(fresh, "api-down", {"kind": "service_down", "url": down, "channels": ["ops"]})
        service = AlertService(fresh.services)
        now = time.time()
        metrics.set(ok=1000, errors=2, slow=0)  # since start: 0.2% errors, all fast
        tick(service, now)
        [is_down] = receiver.wait("api-down", 1)
        assert is_down["severity"] == "warning"
        assert "cannot be reached" in is_down["text"]
        assert receiver.of("api-errors") == receiver.of("api-latency") == []
        metrics.set(ok=1090, errors=12, slow=20)  # the last minute: 10 of 100 failed
        tick(service, now + 60)
        [errors] = receiver.wait("api-errors", 1)
        [slow] = receiver.wait("api-latency", 1)
        assert "10 of 100 requests answered 5xx (10%)" in errors["text"]
        assert slow["value"] == pytest.approx(4.0)
        assert "p95 response time 4.0s" in slow["text"]
        assert errors["key"] == metrics.url
    finally:
        metrics.httpd.shutdown()
        with fresh.client() as c:
            for name in ("api-errors", "api-latency", "api-down"):
                c.delete(f"/api/v1/alerts/rules/{name}")


def test_http_latency_reads_the_servers_own_metrics_by_default(
    fresh: LiveServer, receiver: Receiver
) -> None:
    put_rule(
        fresh,
        "own-latency",
        {"kind": "http_latency", "threshold": 0.000001, "min_requests": 5, "channels": ["ops"]},
    )
    service = AlertService(fresh.services, metrics_url=f"{fresh.url}/metrics", instance="me")
    try:
        with fresh.client() as c:
            for _ in range(10):
                assert c.get("/api/v1/workflows").status_code == 200
        tick(service, time.time())
        [fired] = receiver.wait("own-latency", 1)
        assert fired["key"] == "me"
        assert fired["labels"]["instance"] == "me"
    finally:
        with fresh.client() as c:
            c.delete("/api/v1/alerts/rules/own-latency")


# -- the API -----------------------------------------------------------------------------------
def test_rules_through_the_api(fresh: LiveServer) -> None:
    from plait.server.bootstrap import create_user

    spec = {"kind": "run_duration", "threshold": "30m", "channels": "ops", "severity": "info"}
    with fresh.client() as c:
        bad = c.put("/api/v1/alerts/rules/api-rule", json={"kind": "run_duration", "bogus": 1})
        made = c.put("/api/v1/alerts/rules/api-rule", json=spec)
        again = c.put("/api/v1/alerts/rules/api-rule", json={**spec, "enabled": False})
        one = c.get("/api/v1/alerts/rules/api-rule")
        listed = c.get("/api/v1/alerts/rules").json()["items"]
        bad_name = c.put("/api/v1/alerts/rules/no%20spaces", json=spec)
        bad_state = c.get("/api/v1/alerts", params={"state": "bogus"})
    assert bad.status_code == 422
    messages = [d["message"] for d in bad.json()["error"]["details"]]
    assert any("threshold: required for run_duration rules" in m for m in messages)
    assert any("bogus: not a field of run_duration rules" in m for m in messages)
    assert made.status_code == 201
    assert made.json()["source"] == "api"
    assert made.json()["updated_by"] == "admin"
    assert made.json()["channels"] == ["ops"]
    assert again.status_code == 200
    assert again.json()["enabled"] is False
    assert one.json()["spec"] == {**spec, "enabled": False}
    assert "api-rule" in [r["name"] for r in listed]
    assert bad_name.status_code == 422
    assert bad_state.status_code == 422
    create_user(fresh.services, "vic", "a-long-viewer-passphrase", role="viewer")
    viewer = fresh.login("vic", "a-long-viewer-passphrase")
    with fresh.client(viewer) as c:
        assert c.get("/api/v1/alerts/rules/api-rule").status_code == 200
        assert c.get("/api/v1/alerts").status_code == 200
        assert c.put("/api/v1/alerts/rules/api-rule", json=spec).status_code == 403
        assert c.delete("/api/v1/alerts/rules/api-rule").status_code == 403
    with fresh.client() as c:
        assert c.delete("/api/v1/alerts/rules/api-rule").status_code == 204
        assert c.delete("/api/v1/alerts/rules/api-rule").status_code == 404
        assert c.get("/api/v1/alerts/rules/api-rule").status_code == 404


def test_alerts_yaml_is_applied_when_it_changes(fresh: LiveServer) -> None:
    path = fresh.services.settings.home / "alerts.yaml"
    service = AlertService(fresh.services)
    try:
        path.write_text("from-file:\n  kind: worker_silent\n  threshold: 10m\n")
        tick(service, time.time())
        with fresh.client() as c:
            rule = c.get("/api/v1/alerts/rules/from-file").json()
            refused = c.put("/api/v1/alerts/rules/from-file", json={"kind": "worker_silent"})
            kept = c.delete("/api/v1/alerts/rules/from-file")
        assert rule["source"] == "file"
        assert rule["spec"]["threshold"] == "10m"
        assert refused.status_code == kept.status_code == 409
        assert "comes from alerts.yaml" in refused.json()["error"]["message"]
        path.write_text("from-file: {kind: worker_silent, threshold: 5m}\nbroken: {kind: x}\n")
        tick(service, time.time())  # invalid: not applied, the rules stay as they were
        assert fresh.services.server_store.get_alert_rule("from-file").spec["threshold"] == "10m"
        path.write_text("other-file-rule: {kind: worker_silent}\n")
        tick(service, time.time())
        names = [r.name for r in fresh.services.server_store.list_alert_rules()]
        assert "other-file-rule" in names
        assert "from-file" not in names
    finally:
        path.unlink(missing_ok=True)
        tick(service, time.time())
    assert "other-file-rule" not in [r.name for r in fresh.services.server_store.list_alert_rules()]


def _hold(store: ServerStore, rule: Rule, keys: list[str], now: float) -> None:
    """One evaluation of ``rule`` seeing ``keys`` over its threshold (and no other)."""
    seen = [Observation(k, 600.0, f"{k}: silent") for k in keys]
    for change in evaluate(rule, seen, store.alert_states(rule.name), now):
        assert store.apply_alert(change, [], now)


def test_alerts_are_paged_with_a_cursor(fresh: LiveServer) -> None:
    store = fresh.services.server_store
    specs = {
        "paged-fires": {"kind": "worker_silent", "threshold": "1m"},
        "paged-waits": {"kind": "worker_silent", "threshold": "1m", "for": "1h"},
    }
    for name, spec in specs.items():
        put_rule(fresh, name, spec)
    fires, waits = (parse_rule(name, spec) for name, spec in specs.items())
    now = time.time()
    _hold(store, fires, [f"w{i}" for i in range(5)], now - 100)  # five fire at once
    _hold(store, fires, ["w3", "w4"], now - 50)  # three resolve at once
    _hold(store, waits, ["p0", "p1"], now - 10)  # two pending (for: 1h)
    with fresh.client() as c:

        def pages(**params: Any) -> list[dict[str, Any]]:
            found, cursor = [], None
            while True:
                at = {"cursor": cursor} if cursor else {}
                r = c.get("/api/v1/alerts", params={**params, **at})
                assert r.status_code == 200, r.text
                body = r.json()
                assert len(body["items"]) <= params.get("limit", 100)
                found.append(body["items"])
                cursor = body["next_cursor"]
                if cursor is None:
                    return found

        whole = c.get("/api/v1/alerts", params={"limit": 500}).json()
        paged = pages(limit=2)
        fired = pages(rule="paged-fires", limit=2)
        resolved = pages(rule="paged-fires", state="resolved", limit=2)
        bad = c.get("/api/v1/alerts", params={"cursor": "not-a-cursor"})
    assert whole["next_cursor"] is None
    assert [a for page in paged for a in page] == whole["items"]  # nothing lost or doubled
    mine = [
        (a["state"], a["key"])
        for a in whole["items"]
        if a["rule"] in specs  # the rest: alerts of the other tests on this server
    ]
    assert mine == [
        ("pending", "p0"),
        ("pending", "p1"),
        ("firing", "w4"),  # the same start: the later alert first
        ("firing", "w3"),
        ("resolved", "w2"),
        ("resolved", "w1"),
        ("resolved", "w0"),
    ]
    assert [[a["key"] for a in page] for page in fired] == [["w4", "w3"], ["w2", "w1"], ["w0"]]
    assert [[a["key"] for a in page] for page in resolved] == [["w2", "w1"], ["w0"]]
    assert bad.status_code == 400
    assert "invalid cursor" in bad.json()["error"]["message"]


def test_the_rule_routes_describe_every_kind_and_its_fields(fresh: LiveServer) -> None:
    with fresh.client() as c:
        paths = c.get("/api/v1/openapi.json").json()["paths"]
    listed = {p["name"] for p in paths["/api/v1/alerts"]["get"]["parameters"]}
    assert {"cursor", "limit"} <= listed
    for method, path in (("get", "/alerts/rules"), ("put", "/alerts/rules/{name}")):
        text = paths[f"/api/v1{path}"][method]["description"]
        for kind, fields in KIND_FIELDS.items():
            line = next(x for x in text.splitlines() if x.startswith(f"- `{kind}`:"))
            assert all(f"`{f}`" in line for f in fields), (kind, line)
