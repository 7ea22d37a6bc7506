"""The operations screens in Debian's Chromium against a real ``plait serve``: the worker
registry, connections (a form generated from the type's JSON Schema, write-only
credentials, the Test button), alerts and their rules, and log search.

The server evaluates alert rules every second (``PLAIT_ALERT_INTERVAL=1``), so a
failure-rate rule fires as soon as a failing run has ended. Skipped when Chromium,
Playwright or the built UI (``make ui``) is missing. Screenshots go to
``tests/e2e/screenshots/`` (ignored by git), or to ``$PLAIT_UI_SHOTS`` — the ones in
docs/images were taken with ``PLAIT_UI_SHOTS=docs/images``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import ui_support as ui

SHOTS = Path(os.environ.get("PLAIT_UI_SHOTS") or Path(__file__).resolve().parent / "screenshots")

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [
    pytest.mark.skipif(not Path(ui.CHROMIUM).exists(), reason="no Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(not ui.STATIC.exists(), reason="the UI is not built (make ui)"),
]

FAILING = """name: nightly-report
description: Builds the nightly report (its source table is gone, so it fails)
steps:
  - id: fetch
    run: |
      echo "fetching the report source"
      echo "source table is gone" >&2
      exit 3
"""


FLAKY = """name: flaky-checks
description: Fails when asked to
inputs:
  code: {type: integer, default: 0}
steps:
  - id: check
    run: exit ${{ inputs.code }}
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plait-ui-ops")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    with ui.serve(home, env={"PLAIT_ALERT_INTERVAL": "1"}) as base:
        yield base


@pytest.fixture
def expected_errors() -> list[re.Pattern[str]]:
    """Console errors a test provokes on purpose (a 422 the page explains)."""
    return []


@pytest.fixture
def page(browser: Any, server: str, expected_errors: list[re.Pattern[str]]) -> Iterator[Any]:
    opened = ui.new_page(browser, server, SHOTS, width=1360, height=860, wait_ms=20000)
    with opened as (pg, problems):
        yield pg
    unexpected = [p for p in problems if not any(e.search(p) for e in expected_errors)]
    assert unexpected == [], f"console errors: {problems}"


def _snap(page: Any, name: str, full: bool = False) -> None:
    page.wait_for_timeout(300)  # let transitions settle
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def _start(server: str, workflow: str, inputs: dict[str, Any]) -> dict[str, Any]:
    run = ui.call(server, "POST", f"/api/v1/workflows/{workflow}/runs", {"inputs": inputs})
    return ui.wait_run(server, run["id"], 60)


def _wait(what: str, check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.3)
    return found


def _worker(home: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "plait.cli", "worker", *args],
        cwd=ui.ROOT,
        env={**os.environ, "PLAIT_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_workers_page_shows_the_serve_worker(page: Any, server: str, home: Path) -> None:
    serving = ui.call(server, "GET", "/api/v1/workers")["items"]
    mine = next(w for w in serving if w["state"] == "running")
    # two more workers on their own queues: one stops, one dies and is seen late, then lost
    stops = _worker(home, "-q", "reports", "-t", "gpu=a100,zone=eu", "-c", "4")
    dies = _worker(home, "-q", "batch", "-c", "2")
    try:

        def registered() -> dict[str, str]:
            found = ui.call(server, "GET", "/api/v1/workers")["items"]
            by_queue = {w["queues"][0]: w["id"] for w in found}
            return by_queue if {"reports", "batch"} <= set(by_queue) else {}

        ids = _wait("the other workers register", registered)
        ui.login(page, "/workers")
        row = page.locator(f'tr[data-worker="{mine["id"]}"]')
        expect(row).to_contain_text(mine["host"])
        expect(row.locator(".badge")).to_have_text("running")
        expect(row).to_contain_text("default")
        expect(row).to_contain_text(f"0 / {mine['concurrency']}")
        expect(row).to_contain_text(re.compile(r"\d+ s ago"))
        second = page.locator(f'tr[data-worker="{ids["reports"]}"]')
        expect(second).to_contain_text("gpu=a100")
        expect(second).to_contain_text("zone=eu")
        expect(second).to_contain_text("0 / 4")
        expect(page.get_by_role("status")).to_contain_text("3 live workers")
        dies.kill()
        stops.send_signal(signal.SIGTERM)
        stops.wait(30)
        # the page asks again every 5 s: the stopped worker stays listed, greyed
        expect(second.locator(".badge")).to_have_text("stopped", timeout=20000)
        expect(second).to_have_class(re.compile("worker-gone"))
        # the killed one beats no more: late after two missed beats, lost after 30 s
        third = page.locator(f'tr[data-worker="{ids["batch"]}"]')
        expect(third).to_have_class(re.compile("worker-late"), timeout=40000)
        expect(third).to_contain_text("· late")
        expect(third).to_have_class(re.compile("worker-lost"), timeout=40000)
        expect(third.locator(".badge")).to_have_text("lost")
        expect(page.get_by_role("status")).to_contain_text("1 live worker,")
        expect(page.get_by_role("status")).to_contain_text("1 late or lost")
        _snap(page, "workers")
    finally:
        for proc in (stops, dies):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def test_create_and_test_connections(page: Any, server: str, home: Path) -> None:
    ui.login(page, "/admin/connections")
    page.get_by_role("heading", name="Connections").wait_for()
    page.get_by_role("button", name="New connection").click()
    form = page.get_by_role("form", name="New connection")
    form.get_by_label("Type").select_option("sqlite")
    form.get_by_label("Connection name", exact=True).fill("reports-db")
    # the fields come from the sqlite type's JSON Schema
    form.get_by_label("Path (required)").fill(str(home / "reports.db"))
    form.get_by_label("Create", exact=True).select_option("true")
    form.get_by_role("button", name="Create connection").click()
    page.get_by_text("Connection default/reports-db created.").wait_for()
    page.get_by_role("button", name="Test default/reports-db").click()
    expect(page.get_by_role("status").filter(has_text="✓ ok")).to_be_visible()
    stored = ui.call(server, "GET", "/api/v1/connections/default/reports-db")
    assert stored["config"] == {
        "path": str(home / "reports.db"),
        "create": True,
        "read_only": False,
    }

    # an HTTP API with a token: the token is write-only, shown as "set", kept when left empty
    page.get_by_role("button", name="New connection").click()
    form = page.get_by_role("form", name="New connection")
    form.get_by_label("Type").select_option("http")
    form.get_by_label("Connection name", exact=True).fill("status-api")
    form.get_by_label("Base Url (required)").fill(server)
    form.get_by_label("Bearer Token (credential)").fill("tok-very-secret-123")
    form.get_by_role("button", name="Create connection").click()
    page.get_by_text("Connection default/status-api created.").wait_for()
    expect(page.get_by_text("bearer_token: set")).to_be_visible()
    page.get_by_role("button", name="Edit default/status-api").click()
    form = page.get_by_role("form", name="Edit connection default/status-api")
    token = form.get_by_label("Bearer Token (credential)")
    expect(token).to_have_value("")
    expect(token).to_have_attribute("placeholder", "set — leave empty to keep it")
    form.get_by_label("Base Url (required)").fill(server + "/health")
    _snap(page, "admin-connections", full=True)
    form.get_by_role("button", name="Save connection").click()
    page.get_by_text("Connection default/status-api saved.").wait_for()
    assert "tok-very-secret-123" not in page.content()
    stored = ui.call(server, "GET", "/api/v1/connections/default/status-api")
    assert stored["config"]["base_url"] == server + "/health"
    assert stored["secrets"]["bearer_token"] is True

    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete default/status-api").click()
    page.get_by_text("Connection default/status-api deleted.").wait_for()
    assert [c["name"] for c in ui.call(server, "GET", "/api/v1/connections")["items"]] == [
        "reports-db"
    ]


def test_a_failing_workflow_fires_an_alert(page: Any, server: str) -> None:
    ui.call(server, "POST", "/api/v1/workflows", FAILING, "application/yaml")
    rule = {
        "kind": "failure_rate",
        "workflow": "nightly-report",
        "threshold": "10%",
        "window": "1h",
        "severity": "critical",
        "labels": {"team": "data"},
        "description": "Runbook: https://wiki.example.com/nightly-report",
    }
    ui.call(server, "PUT", "/api/v1/alerts/rules/report-failures", rule)
    # the same condition, but only after it held for an hour: pending
    sustained = {**rule, "for": "1h", "severity": "warning"}
    ui.call(server, "PUT", "/api/v1/alerts/rules/sustained-report-failures", sustained)
    # fires on one failure, resolves once as many runs succeeded
    ui.call(server, "POST", "/api/v1/workflows", FLAKY, "application/yaml")
    flaky = {"kind": "failure_rate", "workflow": "flaky-checks", "threshold": "50%"}
    ui.call(server, "PUT", "/api/v1/alerts/rules/flaky-failures", {**flaky, "severity": "info"})

    def alerts(state: str) -> list[str]:
        found = ui.call(server, "GET", f"/api/v1/alerts?state={state}")["items"]
        return sorted(a["rule"] for a in found)

    assert _start(server, "flaky-checks", {"code": 1})["status"] == "failed"
    _wait("flaky-failures fires", lambda: "flaky-failures" in alerts("firing"))
    for _ in range(2):
        assert _start(server, "flaky-checks", {"code": 0})["status"] == "succeeded"
    _wait("flaky-failures resolves", lambda: alerts("resolved") == ["flaky-failures"])
    assert _start(server, "nightly-report", {})["status"] == "failed"
    _wait("report-failures fires", lambda: alerts("firing") == ["report-failures"])
    _wait("the sustained rule waits", lambda: alerts("pending") == ["sustained-report-failures"])

    ui.login(page, "/alerts")
    rows = page.locator("tr.alert-row")
    expect(rows).to_have_count(3)
    # firing first, then pending, then resolved
    expect(rows.locator("td:first-child")).to_have_text(["firing", "pending", "resolved"])
    row = rows.nth(0)
    expect(row).to_contain_text("report-failures")
    expect(row).to_contain_text("critical")
    expect(row).to_contain_text("nightly-report: 1 of 1 runs failed")
    expect(row).to_contain_text("100% / 10%")
    expect(row).to_contain_text("team: data")
    expect(rows.nth(2)).to_contain_text("flaky-failures")
    expect(page.get_by_test_id("firing-count")).to_have_text("1")
    expect(page.get_by_role("link", name="Alerts, 1 firing")).to_be_visible()
    _snap(page, "alerts")
    page.get_by_label("State").select_option("resolved")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("flaky-failures")

    # the rules tab: change the rule through the generated form, add one, delete it
    page.get_by_role("link", name="Rules", exact=True).click()
    row = page.locator('tr[data-rule="report-failures"]')
    expect(row).to_contain_text("threshold 10% · window 1h · workflow nightly-report")
    expect(row).to_contain_text("api")
    page.get_by_role("button", name="Edit report-failures").click()
    form = page.get_by_role("form", name="Edit rule report-failures")
    form.get_by_label("Min runs").fill("2")
    form.get_by_label("Min runs").press("Enter")
    form.get_by_label("For", exact=True).fill("5m")
    form.get_by_label("For", exact=True).press("Enter")
    _snap(page, "alert-rules", full=True)
    form.get_by_role("button", name="Save rule").click()
    page.get_by_text("Rule report-failures saved.").wait_for()
    spec = ui.call(server, "GET", "/api/v1/alerts/rules/report-failures")["spec"]
    assert (spec["min_runs"], spec["for"], spec["severity"]) == (2, "5m", "critical")

    page.get_by_role("button", name="New rule").click()
    form = page.get_by_role("form", name="New alert rule")
    form.get_by_label("Rule name").fill("workers-down")
    form.get_by_label("Kind").select_option("worker_silent")
    form.get_by_label("Threshold").fill("2m")
    form.get_by_label("Threshold").press("Enter")
    form.get_by_role("tab", name="YAML").click()
    expect(form.get_by_label("Rule as YAML")).to_contain_text("kind: worker_silent")
    expect(form.get_by_label("Rule as YAML")).to_contain_text("threshold: 2m")
    form.get_by_role("tab", name="Form").click()
    form.get_by_role("button", name="Save rule").click()
    page.get_by_text("Rule workers-down saved.").wait_for()
    assert ui.call(server, "GET", "/api/v1/alerts/rules/workers-down")["kind"] == "worker_silent"
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete workers-down").click()
    page.get_by_text("Rule workers-down deleted.").wait_for()
    names = [r["name"] for r in ui.call(server, "GET", "/api/v1/alerts/rules")["items"]]
    assert "workers-down" not in names
    assert "report-failures" in names


def test_search_logs_and_open_the_run(
    page: Any, server: str, expected_errors: list[re.Pattern[str]]
) -> None:
    run = _start(server, "hello", {"name": "Quokka"})
    _start(server, "hello", {"name": "Wombat"})
    ui.login(page, "/logs")
    page.get_by_label("Search log lines").fill("quokka")
    page.get_by_label("Search log lines").press("Enter")
    hit = page.locator("tr.vrow").filter(has_text="Hello, Quokka!")
    expect(hit.locator("mark")).to_have_text("Quokka")
    expect(page.locator("tr.vrow")).to_have_count(1)
    expect(page.get_by_text("1 line", exact=True)).to_be_visible()
    _snap(page, "log-search")
    hit.get_by_role("link", name=re.compile(f"Open run {run['id']}")).click()
    page.get_by_role("heading", name="Run of hello").wait_for()
    assert f"/runs/{run['id']}" in page.url
    expect(page.get_by_test_id("logs").locator(".marked")).to_contain_text("Hello, Quokka!")
    # a query the server cannot read is explained on the page
    expected_errors.append(re.compile(r"^Failed to load resource: .* status of 422 "))
    page.goto("/logs?q=%22unclosed")
    expect(page.get_by_role("alert")).to_have_text("the quote at character 1 is not closed")
