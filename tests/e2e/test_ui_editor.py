"""The editor's server-driven palette and forms, grouping, TOTP and the virtualised run
list, in Debian's Chromium against a real ``plait serve``.

Skipped when Chromium, Playwright or the built UI (``make ui``) is missing. Screenshots
go to ``tests/e2e/screenshots/`` (ignored by git).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.security import totp
from tests.e2e import ui_support as ui

SHOTS = Path(__file__).resolve().parent / "screenshots"

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [
    pytest.mark.skipif(not Path(ui.CHROMIUM).exists(), reason="no Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(not ui.STATIC.exists(), reason="the UI is not built (make ui)"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plait-ui-editor")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    with ui.serve(home) as base:
        yield base


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    with ui.new_page(browser, server, SHOTS) as (pg, problems):
        yield pg
    # a wrong code (400) or a login still missing its second factor (401) is logged by
    # the browser as a failed resource: the tests provoke them, the app shows them
    expected = re.compile(r"^Failed to load resource: .* status of 40[01] ")
    assert [p for p in problems if not expected.match(p)] == [], f"console errors: {problems}"


def _node(page: Any, step: str) -> Any:
    return page.locator(f'.react-flow__node[data-id="{step}"]')


def _drop(page: Any, action: str, x: float, y: float, expect_id: str) -> None:
    canvas = page.get_by_test_id("canvas")
    page.locator(f'[data-action="{action}"]').drag_to(canvas, target_position={"x": x, "y": y})
    _node(page, expect_id).wait_for()


def test_palette_form_grouping_and_deploy(page: Any, server: str) -> None:
    ui.login(page, "/editor")
    page.get_by_role("heading", name="New workflow").wait_for()
    # the palette is the server's action list, plugins included
    actions = {a["name"] for a in ui.call(server, "GET", "/api/v1/actions")["items"]}
    assert {"shell", "http", "approval"} <= actions
    for name in ("shell", "http", "approval"):
        page.locator(f'[data-action="{name}"]').wait_for()
    assert page.locator("[data-action]").count() == len(actions)

    page.get_by_label("Workflow name").fill("ui-grouped")
    page.get_by_label("Workflow name").press("Enter")
    _drop(page, "shell", 120, 120, "step")
    _drop(page, "shell", 120, 320, "step-2")
    _drop(page, "http", 520, 200, "http")

    # the http step's form comes from the action's input schema
    _node(page, "http").click()
    side = page.get_by_role("form", name="Step http")
    side.get_by_label("Url", exact=True).fill("http://127.0.0.1:9/health")
    side.get_by_label("Url", exact=True).press("Enter")
    follow = side.get_by_label("Follow Redirects")
    expect(follow).to_have_value("")  # not set: the placeholder option names the default
    expect(follow.locator("option").first).to_have_text("(default: true)")
    status = side.get_by_label("Expect Status")
    status.fill("[200, 201")  # not YAML: refused on the field, the document is untouched
    status.blur()
    expect(side.locator(".field-error")).to_contain_text("not valid YAML")
    status.fill("ok")  # YAML, but not an integer or a list: marked on the field and the node
    status.blur()
    expect(side.locator(".field-error")).to_have_text("expected a whole number or a list")
    expect(_node(page, "http").locator(".step-error")).to_contain_text("expect_status")
    status.fill("[200, 201]")
    status.blur()
    expect(side.locator(".field-error")).to_have_count(0)
    # step fields: a retry policy with its own generated form, a timeout checked in the browser
    side.get_by_label("Retry a failed attempt").select_option("policy")
    side.get_by_label("Backoff").select_option("constant")
    timeout = side.get_by_label("Timeout (e.g. 5m)")
    timeout.fill("soon")
    timeout.press("Enter")
    expect(side.locator(".field-error")).to_have_text("expected a number or text")
    timeout.fill("30s")
    timeout.press("Enter")
    expect(side.locator(".field-error")).to_have_count(0)
    page.screenshot(path=str(SHOTS / "editor-form.png"), full_page=True)

    # a shell step's command is its `run:`
    _node(page, "step-2").click()
    command = page.get_by_role("form", name="Step step-2").get_by_label("Command (required)")
    command.fill("echo second")
    command.blur()

    # select the two shell steps and group them
    _node(page, "step").click()
    _node(page, "step-2").click(modifiers=["Control"])
    expect(page.locator(".react-flow__node.selected")).to_have_count(2)
    page.get_by_role("button", name="Group as parallel").click()
    group = _node(page, "group")
    group.wait_for()
    expect(group).to_contain_text("parallel")
    # the group is a sub-flow: its steps are drawn inside its box
    gbox = group.bounding_box()
    for step in ("step", "step-2"):
        b = _node(page, step).bounding_box()
        assert gbox["x"] <= b["x"]
        assert b["x"] + b["width"] <= gbox["x"] + gbox["width"] + 1
        assert gbox["y"] <= b["y"]
        assert b["y"] + b["height"] <= gbox["y"] + gbox["height"] + 1
    # an action dropped on the group's box joins the group
    canvas = page.get_by_test_id("canvas").bounding_box()
    at = {"x": gbox["x"] - canvas["x"] + 20, "y": gbox["y"] - canvas["y"] + gbox["height"] - 8}
    page.locator('[data-action="approval"]').drag_to(
        page.get_by_test_id("canvas"), target_position=at
    )
    _node(page, "approval").wait_for()
    page.screenshot(path=str(SHOTS / "editor-group.png"), full_page=True)

    page.get_by_role("tab", name="YAML").click()
    text = page.locator(".cm-content").inner_text()
    assert re.search(r"- id: group\n\s+parallel:\n\s+- id: step\n", text), text
    assert re.search(r"\n      - id: approval\n        uses: approval\n  - id: http\n", text), text
    assert "run: echo second" in text, text
    assert "expect_status: [200, 201]" in text, text
    assert "backoff: constant" in text, text
    assert "timeout: 30s" in text, text

    page.get_by_role("button", name="Deploy…").click()
    page.get_by_role("button", name="Confirm deploy").click()
    page.get_by_text("Deployed ui-grouped version 1.").wait_for()
    source = ui.call(server, "GET", "/api/v1/workflows/ui-grouped")["source"]
    assert "parallel:" in source
    assert "expect_status: [200, 201]" in source

    # ungroup: the steps go back in place and the YAML says so
    page.get_by_role("tab", name="Canvas").click()
    group.locator(".group-head").click()
    page.get_by_role("form", name="Group group").get_by_role("button", name="Ungroup").click()
    expect(_node(page, "group")).to_have_count(0)
    _node(page, "step-2").wait_for()


def test_totp_enrol_then_login_with_a_code(page: Any, server: str) -> None:
    user, password = "tess", "purple-monkey-dishwasher-42"
    ui.call(server, "POST", "/api/v1/users", {"name": user, "password": password, "role": "viewer"})
    ui.login(page, "/account", user, password)
    page.get_by_role("heading", name=f"Account: {user}").wait_for()
    page.get_by_role("button", name="Set up two-factor authentication").click()
    qr = page.get_by_role("img", name=re.compile("QR code"))
    expect(qr).to_have_attribute("src", re.compile(r"^data:image/svg\+xml"))
    # the SVG decodes as an image (namespace added, CSP allows data: images)
    assert page.evaluate("el => el.naturalWidth", qr.element_handle()) > 0
    secret = page.get_by_label("Secret key").inner_text().replace(" ", "")
    page.screenshot(path=str(SHOTS / "account-enrol.png"), full_page=True)
    page.get_by_label("Code from the app").fill(
        "000000" if _code(secret, 0) != "000000" else "111111"
    )
    page.get_by_role("button", name="Confirm and turn on").click()
    page.get_by_text("wrong code").wait_for()
    page.get_by_label("Code from the app").fill(_code(secret, -30))
    page.get_by_role("button", name="Confirm and turn on").click()
    codes = page.get_by_role("list", name="Recovery codes").locator("li")
    expect(codes).to_have_count(10)
    recovery = codes.first.inner_text()
    page.get_by_text("They are shown only this once.").wait_for()
    page.screenshot(path=str(SHOTS / "account-recovery.png"), full_page=True)
    page.get_by_role("button", name="I have saved them").click()
    expect(codes).to_have_count(0)
    page.get_by_text("recovery codes left").wait_for()

    # signing in now asks for the second factor
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("This account has two-factor authentication").wait_for()
    expect(page.get_by_label("One-time code")).to_be_focused()
    page.screenshot(path=str(SHOTS / "login-otp.png"))
    page.get_by_label("One-time code").fill(_code(secret, 0))
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()

    # and turning it off needs the password and a code (here a recovery code)
    page.get_by_role("link", name=f"Account of {user}").click()
    page.get_by_label("Password").fill(password)
    page.get_by_label("Code from the app or a recovery code").fill(recovery)
    page.get_by_role("button", name="Turn off two-factor authentication").click()
    page.get_by_text("Two-factor authentication is off.").wait_for()
    assert ui.call(server, "GET", "/api/v1/auth/mfa", bearer=ui.token(server, user, password)) == {
        "enabled": False,
        "pending": False,
        "recovery_codes_left": 0,
    }


def _code(secret: str, offset: float) -> str:
    """The code ``offset`` seconds from now, away from a 30 s step boundary (so the
    server computes the same step)."""
    while time.time() % 30 > 27:
        time.sleep(0.5)
    return totp.code_at(secret, time.time() + offset)


def test_runs_list_with_many_runs_scrolls(page: Any, server: str, home: Path) -> None:
    run = ui.call(server, "POST", "/api/v1/workflows/hello/runs", {"inputs": {"name": "seed"}})
    ui.wait_run(server, run["id"])
    ui.seed_runs(home, run["id"], 5_000)
    ui.login(page, "/runs")
    box = page.get_by_role("region", name="Runs, newest first")
    rows = box.locator("tbody tr.vrow")
    rows.first.wait_for()
    expect(page.get_by_text("100 runs loaded; scroll for more")).to_be_visible()
    page.screenshot(path=str(SHOTS / "runs-virtual.png"))
    rendered = rows.count()
    assert 10 < rendered < 80, rendered
    # scroll to the end of what is loaded a few times: pages arrive, the DOM stays small
    for _ in range(4):
        box.evaluate(
            "el => { el.scrollTop = el.scrollHeight; el.dispatchEvent(new Event('scroll')); }"
        )
        page.wait_for_timeout(300)
    status = page.locator(".list-status").inner_text()
    loaded = int(re.search(r"([\d,]+) runs loaded", status).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert loaded >= 400, status
    assert rows.count() < 80
    last = int(rows.last.get_attribute("aria-rowindex"))
    assert last > 400, last
    # each rendered row is one run, newest first
    first_id = rows.first.locator("a.mono").get_attribute("href")
    assert first_id
    assert first_id.startswith("/runs/")


def test_yaml_tab_completes_from_action_schemas(page: Any, server: str) -> None:
    ui.login(page, "/editor")
    page.locator('[data-action="http"]').wait_for()  # the actions are loaded
    page.get_by_role("tab", name="YAML").click()
    editor = page.locator(".cm-content")
    popup = page.locator(".cm-tooltip-autocomplete")
    editor.fill("name: t\nsteps:\n  - id: a\n    uses: h")
    page.keyboard.press("Control+End")
    page.keyboard.type("t")
    expect(popup).to_contain_text("http")
    page.wait_for_timeout(200)  # CodeMirror ignores Enter just after the list opens
    page.keyboard.press("Enter")
    expect(editor).to_contain_text("uses: http")
    editor.fill("name: t\nsteps:\n  - id: a\n    uses: http\n    with:\n      u")
    page.keyboard.press("Control+End")
    page.keyboard.type("r")
    expect(popup).to_contain_text("url")
    page.wait_for_timeout(200)
    page.keyboard.press("Enter")
    expect(editor).to_contain_text("url: ")
