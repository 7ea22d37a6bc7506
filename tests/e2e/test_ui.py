"""The web UI in a real browser (Debian's Chromium) against a real ``plait serve``.

Skipped when Chromium, Playwright or the built UI (``make ui``) is missing. Screenshots
of each screen go to ``tests/e2e/screenshots/`` (ignored by git).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import ui_support as ui

SHOTS = Path(__file__).resolve().parent / "screenshots"
USER, PASSWORD = ui.USER, ui.PASSWORD

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.skipif(not Path(ui.CHROMIUM).exists(), reason="no Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(not ui.STATIC.exists(), reason="the UI is not built (make ui)"),
]

APPROVAL = """name: ui-approval
description: Waits for a person
steps:
  - id: prepare
    run: echo preparing
  - id: sign-off
    uses: approval
    with: {message: Ship it?}
  - id: ship
    run: echo shipped
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ui.serve(tmp_path_factory.mktemp("plait-ui-home")) as base:
        yield base


def _api(base: str, method: str, path: str, body: Any = None, ctype: str = "") -> Any:
    return ui.call(base, method, path, body, ctype)


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    with ui.new_page(browser, server, SHOTS) as (pg, problems):
        yield pg
    assert problems == [], f"console errors: {problems}"


def _login(page: Any, path: str = "/") -> None:
    page.goto(path)
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.screenshot(path=str(SHOTS / "login.png"))
    page.get_by_role("button", name="Sign in").click()


def test_serves_app_without_shadowing_the_api(server: str) -> None:
    with urllib.request.urlopen(server + "/runs/deep/link") as r:
        assert '<div id="root">' in r.read().decode()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/api/v1/nope")
    assert e.value.code == 404
    with urllib.request.urlopen(server + "/health") as r:
        assert json.load(r)["status"] == "ok"


def test_run_a_workflow_and_read_its_logs(page: Any, server: str) -> None:
    _login(page, "/workflows")
    page.get_by_role("heading", name="Workflows").wait_for()
    page.get_by_role("link", name="hello", exact=True).wait_for()
    page.screenshot(path=str(SHOTS / "workflows.png"))
    page.get_by_role("link", name="hello", exact=True).click()
    page.get_by_role("heading", name="hello", exact=True).wait_for()  # its chunk loads on demand
    page.locator("#input-name").fill("Playwright")
    page.screenshot(path=str(SHOTS / "workflow.png"))
    page.get_by_role("button", name="Start run").click()
    page.get_by_role("heading", name="Run of hello").wait_for()
    page.locator("h1 .badge.status-succeeded").wait_for()
    logs = page.get_by_test_id("logs")
    playwright_api.expect(logs).to_contain_text("Hello, Playwright!")
    page.locator(".react-flow__node").first.wait_for()
    playwright_api.expect(page.locator(".step-node.status-succeeded")).to_have_count(2)
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)
    page.get_by_role("link", name="Runs").click()
    page.get_by_role("heading", name="Runs").wait_for()
    page.locator("td .badge.status-succeeded").first.wait_for()
    page.screenshot(path=str(SHOTS / "runs.png"))
    page.get_by_role("link", name="Dashboard").click()
    page.get_by_role("heading", name="Workflows (failing first)").wait_for()
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)


def test_approve_a_waiting_approval(page: Any, server: str) -> None:
    _api(server, "POST", "/api/v1/workflows", APPROVAL, "application/yaml")
    run = _api(server, "POST", "/api/v1/workflows/ui-approval/runs", {"inputs": {}})
    _login(page, f"/runs/{run['id']}")
    page.get_by_role("button", name="Approve sign-off").wait_for()
    page.get_by_label("Comment for sign-off").fill("looks good")
    page.screenshot(path=str(SHOTS / "approval.png"), full_page=True)
    page.get_by_role("button", name="Approve sign-off").click()
    page.locator("h1 .badge.status-succeeded").wait_for()
    playwright_api.expect(page.get_by_test_id("logs")).to_contain_text("shipped")


def test_build_deploy_and_roll_back_in_the_editor(page: Any, server: str) -> None:
    _login(page, "/editor")
    page.get_by_role("heading", name="New workflow").wait_for()
    page.get_by_label("Workflow name").fill("ui-built")
    page.get_by_label("Workflow name").press("Enter")
    canvas = page.get_by_test_id("canvas")
    shell = page.locator('[data-action="shell"]')
    box = canvas.bounding_box()
    shell.drag_to(canvas, target_position={"x": 150, "y": 150})
    page.locator('.react-flow__node[data-id="step"]').wait_for()
    shell.drag_to(canvas, target_position={"x": box["width"] - 250, "y": 300})
    page.locator('.react-flow__node[data-id="step-2"]').wait_for()
    # connect step -> step-2 by dragging from the output handle to the input handle
    handle = '.react-flow__node[data-id="{}"] .react-flow__handle.{}'
    src = page.locator(handle.format("step", "source")).bounding_box()
    dst = page.locator(handle.format("step-2", "target")).bounding_box()
    page.mouse.move(src["x"] + src["width"] / 2, src["y"] + src["height"] / 2)
    page.mouse.down()
    page.mouse.move(dst["x"] + 2, dst["y"] + 2, steps=12)
    page.mouse.move(dst["x"] + dst["width"] / 2, dst["y"] + dst["height"] / 2, steps=4)
    page.mouse.up()
    page.locator('.react-flow__edge[data-id="step->step-2"]').wait_for()
    # edit the second step in the side panel
    page.locator('.react-flow__node[data-id="step-2"]').click()
    page.get_by_label("Command (required)").fill("echo second")
    page.get_by_label("Timeout (e.g. 5m)").fill("1m")
    page.get_by_label("Timeout (e.g. 5m)").press("Enter")
    page.screenshot(path=str(SHOTS / "editor.png"), full_page=True)
    page.get_by_role("tab", name="YAML").click()
    yaml_text = page.locator(".cm-content").inner_text()
    assert "needs: [step]" in yaml_text, yaml_text
    assert "echo second" in yaml_text, yaml_text
    page.screenshot(path=str(SHOTS / "editor-yaml.png"))
    page.get_by_role("button", name="Deploy…").click()
    page.get_by_role("button", name="Confirm deploy").click()
    page.get_by_text("Deployed ui-built version 1.").wait_for()
    # a second version through the side panel, then roll back to the first
    page.get_by_role("tab", name="Canvas").click()
    page.locator('.react-flow__node[data-id="step"]').click()
    page.get_by_label("Command (required)").fill("echo changed")
    page.get_by_label("Command (required)").blur()
    page.get_by_role("button", name="Deploy…").click()
    playwright_api.expect(page.get_by_label("diff")).to_contain_text("echo changed")
    page.screenshot(path=str(SHOTS / "deploy-diff.png"))
    page.get_by_role("button", name="Confirm deploy").click()
    page.get_by_text("Deployed ui-built version 2.").wait_for()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Roll back to version 1").click()
    page.get_by_text("Version 1 is current.").wait_for()
    page.screenshot(path=str(SHOTS / "history.png"), full_page=True)
    versions = _api(server, "GET", "/api/v1/workflows/ui-built/versions")
    assert [v["version"] for v in versions if v["current"]] == [1]


def test_administration_screens(page: Any, server: str) -> None:
    _login(page, "/admin/users")
    page.get_by_role("heading", name="Administration").wait_for()
    page.get_by_label("User name").fill("olga")
    page.get_by_label("Password").fill("a-long-enough-passphrase-9")
    page.get_by_role("button", name="Create user").click()
    page.get_by_text("User olga created.").wait_for()
    page.screenshot(path=str(SHOTS / "admin-users.png"), full_page=True)
    page.get_by_role("link", name="Secrets").click()
    page.get_by_label("Secret name", exact=True).fill("API_KEY")
    page.get_by_label("Value", exact=True).fill("s3cret-value")
    page.get_by_role("button", name="Save secret").click()
    page.get_by_text("Secret default/API_KEY saved.").wait_for()
    assert "s3cret-value" not in page.content()
    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Actor").fill("admin")
    page.locator("table.list tbody tr").first.wait_for()
    page.screenshot(path=str(SHOTS / "admin-audit.png"), full_page=True)
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Token name").fill("ci")
    page.get_by_role("button", name="Create token").click()
    playwright_api.expect(page.get_by_label("New token")).to_have_value(re.compile(r"^plt_"))
    page.get_by_text("shown only once").wait_for()


def test_keyboard_only_login(page: Any, server: str) -> None:
    page.goto("/")
    # the user name field takes focus once the app has rendered
    page.locator("input[name=username]:focus").wait_for()
    page.keyboard.type(USER)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Dashboard").wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
