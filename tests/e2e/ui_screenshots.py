"""Screenshots of every screen for docs/ui.md, written to ``docs/images/``.

    .venv/bin/python -m tests.e2e.ui_screenshots [--out DIR]

Starts a real ``plait serve`` in a temporary home with the examples deployed, runs a few
of them (one deployment that succeeds, one that rolls back, one waiting for approval),
seeds 3,000 more runs into the store, then drives Debian's Chromium through each screen.
Needs ``make ui`` and Chromium at ``/usr/bin/chromium``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from plait.security import totp
from tests.e2e import ui_support as ui

APPROVAL = """name: release-sign-off
description: Waits for a person before shipping
namespace: ops
labels: {stage: production, service: web, automation: semi-automated, trigger: manual}
steps:
  - id: prepare
    run: echo preparing the release
  - id: sign-off
    uses: approval
    with: {message: Ship release 2.3 to production?, approvers: ["role:admin"]}
  - id: ship
    run: echo shipped
"""


def _runs(base: str) -> str:
    """Some history to show; returns the id of a successful deployment run."""
    ok = ui.call(
        base, "POST", "/api/v1/workflows/deployment/runs", {"inputs": {"version": "1.4.2"}}
    )
    ui.wait_run(base, ok["id"], 60)
    bad = {"inputs": {"version": "1.4.3", "fail_deploy": True}}
    ui.wait_run(base, ui.call(base, "POST", "/api/v1/workflows/deployment/runs", bad)["id"], 60)
    for name in ("hello", "fan-out", "retries"):
        inputs = {"name": "docs"} if name == "hello" else {}
        ui.wait_run(
            base,
            ui.call(base, "POST", f"/api/v1/workflows/{name}/runs", {"inputs": inputs})["id"],
            60,
        )
    ui.call(base, "POST", "/api/v1/workflows", APPROVAL, "application/yaml")
    ui.call(base, "POST", "/api/v1/workflows/release-sign-off/runs", {"inputs": {}})
    return str(ok["id"])


def shoot(out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="plait-shots-") as tmp:
        home = Path(tmp) / "home"
        with ui.serve(home) as base, sync_playwright() as p:
            deployment_run = _runs(base)
            seed_from = ui.call(base, "POST", "/api/v1/workflows/hello/runs", {"inputs": {}})
            ui.wait_run(base, seed_from["id"])
            ui.seed_runs(home, seed_from["id"], 3_000)
            waiting = ui.call(base, "GET", "/api/v1/runs?workflow=release-sign-off")["items"][0]
            browser = ui.launch(p)
            ctx = browser.new_context(base_url=base, viewport={"width": 1360, "height": 860})
            page: Any = ctx.new_page()
            page.set_default_timeout(20000)

            def snap(name: str, full: bool = False) -> None:
                page.wait_for_timeout(400)  # transitions and fitView settle
                page.screenshot(path=str(out / f"{name}.png"), full_page=full)

            page.goto("/login")
            page.get_by_label("User name").fill(ui.USER)
            page.get_by_label("Password").fill(ui.PASSWORD)
            snap("login")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Workflows (failing first)").wait_for()
            snap("dashboard", full=True)

            page.get_by_role("link", name="Workflows", exact=True).click()
            page.get_by_role("link", name="deployment", exact=True).wait_for()
            snap("workflows")
            page.get_by_role("link", name="deployment", exact=True).click()
            page.get_by_role("button", name="Start run").wait_for()
            page.locator("#input-version").fill("1.5.0")
            snap("workflow", full=True)

            page.get_by_role("link", name="Runs", exact=True).click()
            page.locator("tr.vrow").first.wait_for()
            snap("runs")

            page.goto(f"/runs/{deployment_run}")
            page.locator("h1 .badge.status-succeeded").wait_for()
            page.locator(".react-flow__node").first.wait_for()
            snap("run", full=True)

            page.goto(f"/runs/{waiting['id']}")
            page.get_by_role("button", name="Approve sign-off").wait_for()
            page.get_by_label("Comment for sign-off").fill("Checked the release notes")
            snap("approval", full=True)

            # the editor on a file with groups, a step inside a group selected
            page.goto("/editor/deployment")
            page.locator('.react-flow__node[data-id="health-check"]').wait_for()
            page.locator('.react-flow__node[data-id="health-check"]').click()
            page.get_by_role("form", name="Step health-check").wait_for()
            snap("editor")
            page.get_by_role("tab", name="YAML").click()
            page.locator(".cm-content").wait_for()
            snap("editor-yaml")

            # a new workflow: steps from the palette, a generated form, a group
            page.goto("/editor")
            canvas = page.get_by_test_id("canvas")
            page.locator('[data-action="shell"]').drag_to(
                canvas, target_position={"x": 140, "y": 120}
            )
            page.locator('[data-action="shell"]').drag_to(
                canvas, target_position={"x": 140, "y": 300}
            )
            page.locator('[data-action="http"]').drag_to(
                canvas, target_position={"x": 520, "y": 200}
            )
            page.locator('.react-flow__node[data-id="step"]').click()
            page.locator('.react-flow__node[data-id="step-2"]').click(modifiers=["Control"])
            page.get_by_role("button", name="Group as parallel").click()
            page.locator('.react-flow__node[data-id="group"]').wait_for()
            page.get_by_role("button", name="Tidy layout").click()
            page.locator('.react-flow__node[data-id="http"]').click()
            form = page.get_by_role("form", name="Step http")
            form.get_by_label("Url", exact=True).fill("https://status.example.com/api")
            form.get_by_label("Url", exact=True).press("Enter")
            form.get_by_label("Expect Status").fill("two hundred")
            form.get_by_label("Expect Status").blur()
            expect(form.locator(".field-error")).to_be_visible()
            snap("editor-form")

            # deploy a change to the deployment workflow: the diff, then the history
            page.goto("/editor/deployment")
            page.locator('.react-flow__node[data-id="deploy"]').click()
            timeout = page.get_by_label("Timeout (e.g. 5m)")
            timeout.fill("15m")
            timeout.press("Enter")
            page.get_by_role("button", name="Deploy…").click()
            page.get_by_label("diff").wait_for()
            snap("deploy-diff")
            page.get_by_role("button", name="Confirm deploy").click()
            page.get_by_text("Deployed deployment version 2.").wait_for()
            page.get_by_role("button", name="Roll back to version 1").scroll_into_view_if_needed()
            snap("history", full=True)

            page.goto("/admin/users")
            page.get_by_role("heading", name="Administration").wait_for()
            page.locator("table.list tbody tr").first.wait_for()
            snap("admin-users", full=True)
            page.goto("/admin/audit")
            page.locator("tr.vrow").first.wait_for()
            snap("admin-audit")

            # the account page: TOTP enrolment, then a login that asks for the code
            page.goto("/account")
            page.get_by_role("button", name="Set up two-factor authentication").click()
            page.get_by_role(
                "img", name="QR code of the one-time password secret for your authenticator app"
            ).wait_for()
            snap("account-totp")
            secret = page.get_by_label("Secret key").inner_text().replace(" ", "")
            while time.time() % 30 > 27:
                time.sleep(0.5)
            page.get_by_label("Code from the app").fill(totp.code_at(secret, time.time() - 30))
            page.get_by_role("button", name="Confirm and turn on").click()
            page.get_by_role("list", name="Recovery codes").wait_for()
            snap("account-recovery-codes")
            page.get_by_role("button", name="I have saved them").click()
            page.get_by_role("button", name="Log out").click()
            page.get_by_label("User name").fill(ui.USER)
            page.get_by_label("Password").fill(ui.PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_label("One-time code").wait_for()
            snap("login-totp")
            browser.close()
    print(f"screenshots written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Screenshots of the web UI for docs/ui.md")
    parser.add_argument("--out", type=Path, default=ui.ROOT / "docs" / "images")
    shoot(parser.parse_args().out)


if __name__ == "__main__":
    main()
