"""The `plait` command against a live server: login, deploy, trigger, runs, decisions."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.server.conftest import ADMIN_PASSWORD, ADMIN_USER, LiveServer
from tests.server.test_runs import ENDED, deploy, wait_for

from .conftest import Plait

OK = """\
name: ok
inputs:
  n: {type: integer, required: true}
steps:
  - id: say
    run: echo n=${{ inputs.n }}
"""
BAD = "name: bad\nsteps:\n  - id: boom\n    run: exit 4\n"


def _has_deploy_route(live: LiveServer) -> bool:
    with live.client() as c:
        return c.post("/api/v1/workflows", json={"source": "x"}).status_code not in (404, 405)


def test_deploy_prints_versions_and_reports_problems(
    remote: LiveServer, plait: Plait, tmp_path: Path
) -> None:
    if not _has_deploy_route(remote):
        pytest.skip("POST /api/v1/workflows is not there yet")
    good, broken = tmp_path / "ok.yaml", tmp_path / "broken.yaml"
    good.write_text(OK)
    broken.write_text("name: broken\nsteps:\n  - id: a\n    uses: nosuch\n")
    first = plait("deploy", str(good))
    again = plait("deploy", str(good))
    bad = plait("deploy", str(broken))
    assert first.returncode == 0, first.stderr
    assert "ok v1 created" in first.stdout
    assert "ok v1 unchanged" in again.stdout
    assert bad.returncode == 2
    assert f"{broken}:4:" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_trigger_wait_and_the_runs_commands(remote: LiveServer, plait: Plait) -> None:
    deploy(remote, OK)
    deploy(remote, BAD)
    res = plait("trigger", "ok", "-i", "n=7", "--wait")
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("run ")
    run_id = first.split()[1]
    assert "n=7" in res.stdout
    failed = plait("trigger", "bad", "--wait", "--json")
    assert failed.returncode == 1
    doc = json.loads(failed.stdout)
    assert doc["status"] == "failed"
    assert doc["steps"][0]["error"]
    listed = plait("runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert run_id in [r["id"] for r in json.loads(listed.stdout)]
    shown = plait("runs", "show", run_id, "--json")
    assert json.loads(shown.stdout)["steps"][0]["attempts"] == 1
    logs = plait("runs", "logs", run_id)
    assert "say | n=7" in logs.stdout
    follow = plait("runs", "logs", run_id, "--follow")
    assert "n=7" in follow.stdout
    assert follow.returncode == 0
    retried = plait("runs", "retry", doc["run_id"], "--wait")
    assert retried.returncode == 1  # still failing: exit 1, no traceback
    assert "Traceback" not in retried.stderr


def test_bad_input_unknown_run_and_bad_token(
    remote: LiveServer, plait: Plait, plait_env: dict[str, str]
) -> None:
    deploy(remote, OK)
    wrong = plait("trigger", "ok", "-i", "n=seven")
    assert wrong.returncode == 2
    assert "'n': expected an integer" in wrong.stderr
    missing = plait("runs", "show", "nope")
    assert missing.returncode == 2
    assert "not found" in missing.stderr
    plait_env["PLAIT_TOKEN"] = "not-a-token"
    denied = plait("runs", "list")
    assert denied.returncode == 1
    assert "Traceback" not in denied.stderr
    assert "error:" in denied.stderr


def test_cancel_and_approve_from_the_terminal(remote: LiveServer, plait: Plait) -> None:
    deploy(remote, "name: nap\nsteps:\n  - id: s\n    run: sleep 30\n")
    run_id = plait("trigger", "nap").stdout.split()[1]
    with remote.client() as c:
        wait_for(c, run_id, ("running",))
    res = plait("runs", "cancel", run_id)
    assert res.returncode == 0, res.stderr
    with remote.client() as c:
        assert wait_for(c, run_id, ENDED)["status"] == "cancelled"
    again = plait("runs", "cancel", run_id)
    assert again.returncode == 1
    assert "already ended" in again.stderr
    if "approval" not in remote.services.registry.names():
        return
    deploy(remote, "name: gate\nsteps:\n  - id: ok\n    uses: approval\n")
    run_id = plait("trigger", "gate").stdout.split()[1]
    with remote.client() as c:
        wait_for(c, run_id, ("waiting",))
    res = plait("approve", run_id, "ok", "--comment", "fine")
    assert res.returncode == 0, res.stderr
    with remote.client() as c:
        assert wait_for(c, run_id, ENDED)["status"] == "succeeded"


def test_login_saves_a_private_session(
    live: LiveServer, plait: Plait, plait_env: dict[str, str]
) -> None:
    res = plait(
        "login",
        "--server",
        live.url,
        "-u",
        ADMIN_USER,
        "--password-stdin",
        input=ADMIN_PASSWORD + "\n",
    )
    assert res.returncode == 0, res.stderr
    creds = Path(plait_env["PLAIT_HOME"]) / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    listed = plait("runs", "list", "--server", live.url)
    assert listed.returncode == 0, listed.stderr
    wrong = plait(
        "login", "--server", live.url, "-u", ADMIN_USER, "--password-stdin", input="nope\n"
    )
    assert wrong.returncode == 1
    assert "Traceback" not in wrong.stderr


def test_without_a_server_cancel_acts_on_the_local_store(plait: Plait) -> None:
    res = plait("runs", "cancel", "some-run")
    assert res.returncode == 2
    assert "some-run" in res.stderr
    assert "Traceback" not in res.stderr


def test_an_unreachable_server_is_a_clear_error(plait: Plait) -> None:
    res = plait("runs", "list", "--server", "http://127.0.0.1:9")
    assert res.returncode == 1
    assert "cannot reach" in res.stderr
    assert "Traceback" not in res.stderr
