"""Insights and drafting in Debian's Chromium against a real ``plait serve``: failure
clusters of real failed runs, the anomaly badge of a run that took far longer than its
history, the suggestions tab, and *Draft with AI* in the editor against a real
OpenAI-compatible server (``tests/ai/openai_server.py``) reached through an ``llm``
connection created over the API.

Skipped when Chromium, Playwright or the built UI (``make ui``) is missing. Screenshots
go to ``tests/e2e/screenshots/`` (ignored by git), or to ``$PLAIT_UI_SHOTS`` — the ones
in docs/images were taken with ``PLAIT_UI_SHOTS=docs/images``.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ai.openai_server import OpenAiServer
from tests.e2e import ui_support as ui

SHOTS = Path(os.environ.get("PLAIT_UI_SHOTS") or Path(__file__).resolve().parent / "screenshots")

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [
    pytest.mark.skipif(not Path(ui.CHROMIUM).exists(), reason="no Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(not ui.STATIC.exists(), reason="the UI is not built (make ui)"),
]

REFUSED = (
    'psycopg.OperationalError: connection to server at "db.internal" (10.0.4.7), '
    "port 5432 failed: Connection refused"
)

# Two workflows that fail in two distinct ways: a refused database connection (from both)
# and a full disk (from the first only).
IMPORT = """name: import-orders
description: Imports the day's orders into the warehouse
inputs:
  fault: {type: string, default: db, enum: [db, disk]}
steps:
  - id: load
    run: |
      echo "loading orders"
      if [ "${{ inputs.fault }}" = db ]; then
        echo '@REFUSED@' >&2
        exit 2
      fi
      echo "OSError: [Errno 28] No space left on device: '/var/lib/import/orders-$$.csv'" >&2
      exit 1
""".replace("@REFUSED@", REFUSED)

SYNC = """name: sync-invoices
description: Copies new invoices to the accounting database
steps:
  - id: push
    run: |
      echo '@REFUSED@' >&2
      exit 2
""".replace("@REFUSED@", REFUSED)

# A report whose duration is set by its input: a steady history, then one slow run. Its
# publish step has no timeout and two items a run: after ten runs, enough successful
# attempts (20) for the server to suggest one.
REPORT = """name: weekly-report
description: Builds the weekly report
inputs:
  pause: {type: number, default: 0.3}
steps:
  - id: build
    run: sleep ${{ inputs.pause }}
  - id: publish
    for_each: "${{ ['intranet', 'mail'] }}"
    run: echo "publishing to ${{ item }}"
"""

DRAFT_PROMPT = "every night back up the database and tell ops if it fails"

# What the model answers: first a draft with two problems (twice: the server sends the
# errors back once for a repair), then a valid one.
INVALID_DRAFT = """name: nightly-db-backup
triggers:
  - schedule: {cron: "0 2 * * *"}
steps:
  - id: backup
    run: pg_dump "$DATABASE_URL" > /backups/app.sql
    retries: lots
    on_error: sometimes
"""

VALID_DRAFT = """name: nightly-db-backup
description: Back up the database every night and tell ops if it fails
triggers:
  - schedule: {cron: "0 2 * * *"}
steps:
  - id: backup
    run: pg_dump "$DATABASE_URL" > /backups/app-$(date +%F).sql
    timeout: 30m
    retries: {max: 2, backoff: exponential, initial: 30s}
on_failure:
  - id: tell-ops
    uses: notify
    with: {channel: ops, message: "Nightly backup failed (run ${{ run.id }})"}
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plait-ui-ai")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    with ui.serve(home, deploy=None) as base:
        yield base


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAiServer]:
    with OpenAiServer(api_key="sk-test-ui") as provider:
        yield provider


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = ui.launch(p)
        yield b
        b.close()


@pytest.fixture
def expected_errors() -> list[re.Pattern[str]]:
    """Console errors a test provokes on purpose (a 502 the dialog explains)."""
    return []


@pytest.fixture
def page(browser: Any, server: str, expected_errors: list[re.Pattern[str]]) -> Iterator[Any]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(base_url=server, viewport={"width": 1360, "height": 860})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    pg = context.new_page()
    pg.set_default_timeout(20000)
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    yield pg
    context.close()
    unexpected = [p for p in problems if not any(e.search(p) for e in expected_errors)]
    assert unexpected == [], f"console errors: {problems}"


def _snap(page: Any, name: str, full: bool = False) -> None:
    page.wait_for_timeout(300)  # let transitions settle
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def _deploy(server: str, source: str) -> None:
    ui.call(server, "POST", "/api/v1/workflows", source, ctype="application/yaml")


def _run(server: str, workflow: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    run = ui.call(server, "POST", f"/api/v1/workflows/{workflow}/runs", {"inputs": inputs or {}})
    return ui.wait_run(server, run["id"], 60)


def _wait(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.5)
    return found


def test_failure_clusters(page: Any, server: str) -> None:
    _deploy(server, IMPORT)
    _deploy(server, SYNC)
    for fault in ("db", "disk", "db", "disk", "db"):
        assert _run(server, "import-orders", {"fault": fault})["status"] == "failed"
    assert _run(server, "sync-invoices")["status"] == "failed"
    # The first answer loads the offline model into the server: seconds on a quiet
    # machine, tens of seconds on two busy cores shared with other test processes.
    found = _wait(
        "two failure clusters",
        lambda: (
            (c := ui.call(server, "GET", "/api/v1/insights/failures", timeout=120)["clusters"])
            and len(c) >= 2
            and c
        ),
    )
    assert [c["count"] for c in found[:2]] == [4, 2], found

    ui.login(page, "/insights")
    clusters = page.get_by_role("list", name="Failure clusters").locator(":scope > li")
    expect(clusters).to_have_count(2)
    refused, disk = clusters.nth(0), clusters.nth(1)
    expect(refused.get_by_role("heading")).to_contain_text("Connection refused")
    expect(refused).to_contain_text("4×")
    expect(refused).to_contain_text(re.compile(r"first seen (just now|\d+ min ago)"))
    expect(refused.get_by_role("link", name="import-orders", exact=True)).to_have_attribute(
        "href", "/workflows/import-orders"
    )
    expect(refused.get_by_role("link", name="sync-invoices", exact=True)).to_be_visible()
    expect(refused).to_contain_text("import-orders › load ×3")
    expect(disk.get_by_role("heading")).to_contain_text("No space left on device")
    expect(disk).to_contain_text("2×")
    expect(disk.get_by_role("link", name="sync-invoices", exact=True)).to_have_count(0)
    expect(page.get_by_role("status").first).to_contain_text(
        "6 failed step attempts in the last 7 days in 2 clusters"
    )
    refused.locator("summary").click()
    step_link = refused.get_by_role("link", name="load", exact=True).first
    expect(step_link).to_be_visible()
    _snap(page, "insights-failures")

    # the filter narrows to one workflow, through the address
    page.get_by_label("Workflow").select_option("sync-invoices")
    expect(page).to_have_url(re.compile(r"/insights\?workflow=sync-invoices$"))
    expect(clusters).to_have_count(1)
    expect(clusters.nth(0)).to_contain_text("1×")
    page.get_by_label("Time window").select_option("24h")
    expect(page).to_have_url(re.compile(r"workflow=sync-invoices&window=24h$"))
    expect(clusters).to_have_count(1)

    # an example opens its run on its step
    page.get_by_label("Workflow").select_option("")
    expect(clusters).to_have_count(2)
    clusters.nth(0).locator("summary").click()
    clusters.nth(0).get_by_role("link", name="load", exact=True).first.click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+\?step=load$"))
    expect(page.get_by_role("heading", name=re.compile("Run of import-orders"))).to_be_visible()
    expect(page.get_by_test_id("logs")).to_contain_text("Connection refused")


def test_anomaly_badge_and_tabs(page: Any, server: str) -> None:
    _deploy(server, REPORT)
    history = [_run(server, "weekly-report") for _ in range(10)]
    assert all(r["status"] == "succeeded" for r in history)
    usual = history[-1]
    slow = _run(server, "weekly-report", {"pause": 4})
    assert slow["status"] == "succeeded"
    flagged = _wait(
        "the slow run flagged",
        lambda: ui.call(server, "GET", f"/api/v1/runs/{slow['id']}").get("anomaly"),
    )
    assert flagged["direction"] == "slow"
    assert ui.call(server, "GET", f"/api/v1/runs/{usual['id']}").get("anomaly") is None

    ui.login(page, f"/runs/{slow['id']}")
    badge = page.get_by_test_id("anomaly-badge")
    expect(badge).to_contain_text(
        re.compile(r"unusual duration [\d.]+× slower than usual \(median")
    )
    expect(badge.locator(".badge")).to_have_attribute("title", re.compile(r"robust z-score"))
    _snap(page, "run-anomaly")
    badge.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/insights/anomalies\?workflow=weekly-report$"))
    table = page.get_by_role("table", name="Anomalies")
    row = table.locator(f'tr[data-run="{slow["id"]}"]').first
    expect(row).to_contain_text("weekly-report")
    expect(row).to_contain_text("slower than usual")
    expect(row.locator(".badge")).to_have_text("slow")
    _snap(page, "insights-anomalies")

    # a usual run has no badge
    page.goto(f"/runs/{usual['id']}")
    expect(page.get_by_role("heading", name=re.compile("Run of weekly-report"))).to_be_visible()
    expect(page.get_by_test_id("anomaly-badge")).to_have_count(0)

    # the publish step has no timeout: one is suggested, as YAML to copy into the step
    page.goto("/insights/suggestions?workflow=weekly-report")
    card = page.locator('li[data-suggestion="weekly-report/publish/timeout"]')
    expect(card).to_contain_text("weekly-report › publish")
    expect(card).to_contain_text("Now: none")
    snippet = card.get_by_label("Suggested timeout for publish", exact=True)
    expect(snippet).to_have_text(re.compile(r"^timeout: \d+[smh]$"))
    card.get_by_role("button", name="Copy the suggested timeout for publish").click()
    expect(card.get_by_role("status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == snippet.inner_text()
    _snap(page, "insights-suggestions")
    card.get_by_role("link", name="Open weekly-report in the editor").click()
    expect(page).to_have_url(re.compile(r"/editor/weekly-report$"))
    expect(page.get_by_role("heading", name="Edit weekly-report")).to_be_visible()


def test_draft_with_ai(page: Any, server: str, llm: OpenAiServer) -> None:
    ui.login(page, "/editor")
    opener = page.get_by_role("button", name="Draft with AI…")
    opener.click()
    dialog = page.get_by_role("dialog", name="Draft a workflow with AI")
    # no llm connection yet: the dialog says where to add one
    expect(dialog.get_by_test_id("no-llm-connection")).to_contain_text("no LLM connection")
    expect(dialog.get_by_role("link", name="Connections")).to_have_attribute(
        "href", "/admin/connections"
    )
    expect(dialog.get_by_role("button", name="Generate")).to_be_disabled()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(opener).to_be_focused()

    ui.call(
        server,
        "PUT",
        "/api/v1/connections/default/local-llm",
        {
            "type": "llm",
            "config": {"base_url": llm.base_url, "api_key": "sk-test-ui", "model": "test-model"},
        },
    )
    llm.reply(INVALID_DRAFT, prompt_tokens=900, completion_tokens=60)
    llm.reply(INVALID_DRAFT, prompt_tokens=1000, completion_tokens=60)
    opener.click()
    expect(dialog.get_by_label("Describe the workflow")).to_be_focused()
    dialog.get_by_label("Describe the workflow").fill(DRAFT_PROMPT)
    expect(dialog.get_by_label("LLM connection")).to_have_value("local-llm")
    dialog.get_by_role("button", name="Generate").click()
    problems = dialog.get_by_role("list", name="Problems in the draft")
    expect(problems).to_contain_text("7:14: ")
    expect(problems).to_contain_text("8:15: ")
    source = dialog.get_by_label("Draft YAML")
    expect(source.locator('[data-line="7"]')).to_have_class(re.compile("has-problem"))
    expect(source.locator('[data-line="6"]')).not_to_have_class(re.compile("has-problem"))
    expect(dialog.get_by_test_id("draft-usage")).to_contain_text(
        "test-model · 2,020 tokens (1,900 prompt + 120 completion)"
    )
    _snap(page, "editor-draft")
    asked = llm.chat_requests()
    assert len(asked) == 2  # the draft and one repair
    assert DRAFT_PROMPT in asked[0].last_user
    assert asked[0].headers["authorization"] == "Bearer sk-test-ui"

    llm.reply(VALID_DRAFT)
    dialog.get_by_role("button", name="Generate again").click()
    expect(dialog.get_by_role("status").filter(has_text="Valid")).to_contain_text("✓ Valid")
    expect(problems).to_have_count(0)
    dialog.get_by_role("button", name="Use this draft").click()
    expect(dialog).to_have_count(0)
    expect(page.get_by_role("status").filter(has_text="Loaded the AI draft")).to_be_visible()
    expect(page.get_by_text("unsaved changes")).to_be_visible()
    # on the canvas and in the YAML tab
    expect(page.locator('.react-flow__node[data-id="backup"]')).to_be_visible()
    page.get_by_role("tab", name="YAML").click()
    expect(page.locator(".cm-content")).to_contain_text("name: nightly-db-backup")
    expect(page.locator(".cm-content")).to_contain_text("id: tell-ops")
    # nothing was deployed
    with pytest.raises(urllib.error.HTTPError) as missing:
        ui.call(server, "GET", "/api/v1/workflows/nightly-db-backup")
    assert missing.value.code == 404


def test_a_failing_provider_is_explained(
    page: Any, server: str, llm: OpenAiServer, expected_errors: list[re.Pattern[str]]
) -> None:
    expected_errors.append(re.compile(r"^Failed to load resource: .* status of 502 "))
    ui.call(
        server,
        "PUT",
        "/api/v1/connections/default/broken-llm",
        {"type": "llm", "config": {"base_url": llm.base_url, "model": "test-model"}},
    )
    ui.login(page, "/editor")
    page.get_by_role("button", name="Draft with AI…").click()
    dialog = page.get_by_role("dialog", name="Draft a workflow with AI")
    dialog.get_by_label("Describe the workflow").fill(DRAFT_PROMPT)
    dialog.get_by_label("LLM connection").select_option("broken-llm")
    # no api key: the provider refuses every request
    dialog.get_by_role("button", name="Generate").click()
    expect(dialog.get_by_role("alert")).to_contain_text("The LLM provider failed")
    expect(dialog.get_by_role("button", name="Use this draft")).to_have_count(0)
