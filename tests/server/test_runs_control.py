"""Driving runs over HTTP: cancel (the process dies), retry from failure, approvals."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .conftest import LiveServer
from .test_runs import ENDED, deploy, start, step_of, wait_for


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its parent's wait counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" not in state.split()[1]


def test_cancel_kills_the_running_process_and_ends_the_run(
    server: LiveServer, tmp_path: Path
) -> None:
    pidfile = tmp_path / "sleep.pid"
    deploy(
        server,
        f"""\
name: slow
steps:
  - id: nap
    run: echo $$ > {pidfile}; exec sleep 30
  - id: never
    run: echo never
finally:
  - id: tidy
    run: echo tidy
""",
    )
    with server.client() as c:
        run_id = start(c, "slow").json()["id"]
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        assert _alive(pid)
        retry_active = c.post(f"/api/v1/runs/{run_id}/retry")
        r = c.post(f"/api/v1/runs/{run_id}/cancel")
        assert r.status_code in (200, 202), r.text
        assert r.json()["cancel_requested"] is True
        run = wait_for(c, run_id, ENDED, timeout=20)
        again = c.post(f"/api/v1/runs/{run_id}/cancel")
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, "the step's process survived the cancel"
        time.sleep(0.05)
    assert retry_active.status_code == 409
    assert run["status"] == "cancelled"
    assert step_of(run, "nap")["status"] == "cancelled"
    assert step_of(run, "never")["status"] in ("skipped", "cancelled")
    assert step_of(run, "tidy")["status"] == "succeeded"
    assert again.status_code == 409
    assert "already ended" in again.json()["error"]["message"]


def test_retry_from_failure_keeps_what_succeeded(server: LiveServer, tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    deploy(
        server,
        f"""\
name: flaky
steps:
  - id: prepare
    run: echo "token=abc" >> "$PLAIT_OUTPUT"
  - id: check
    run: test -f {marker}
  - id: use
    run: echo "using ${{{{ steps.prepare.outputs.token }}}}"
""",
    )
    with server.client() as c:
        run_id = start(c, "flaky").json()["id"]
        failed = wait_for(c, run_id, ENDED)
        marker.touch()
        r = c.post(f"/api/v1/runs/{run_id}/retry", json={"version": "original"})
        assert r.status_code == 200, r.text
        assert r.json()["attempt"] == 2
        done = wait_for(c, run_id, ENDED)
        twice = c.post(f"/api/v1/runs/{run_id}/retry")
        bad = c.post(f"/api/v1/runs/{run_id}/retry", json={"version": "newest"})
    assert failed["status"] == "failed"
    assert step_of(failed, "check")["status"] == "failed"
    assert done["status"] == "succeeded", done
    prepare = step_of(done, "prepare")
    assert prepare["outputs"]["token"] == "abc"
    assert [a["status"] for a in prepare["attempts"]] == ["succeeded"]
    check = step_of(done, "check")
    assert [a["status"] for a in check["attempts"]] == ["failed", "succeeded"]
    assert step_of(done, "use")["status"] == "succeeded"
    assert twice.status_code == 409
    assert bad.status_code == 422


def test_retry_on_the_current_version(server: LiveServer, tmp_path: Path) -> None:
    source = "name: fixable\nsteps:\n  - id: only\n    run: exit 3\n"
    deploy(server, source)
    with server.client() as c:
        run_id = start(c, "fixable").json()["id"]
        assert wait_for(c, run_id, ENDED)["status"] == "failed"
        deploy(server, source.replace("exit 3", "exit 0"))
        r = c.post(f"/api/v1/runs/{run_id}/retry", json={"version": "current"})
        assert r.status_code == 200, r.text
        done = wait_for(c, run_id, ENDED)
    assert done["status"] == "succeeded"
    assert done["version"] == 2


GATED = """\
name: gated
steps:
  - id: gate
    uses: approval
    with: {approvers: APPROVERS, timeout: 1h, message: "go?"}
  - id: after
    run: echo "approved=${{ steps.gate.outputs.approved }}"
"""


def _gated(server: LiveServer, approvers: str = '["role:operator"]') -> None:
    deploy(server, GATED.replace("APPROVERS", approvers))


def test_approve_lets_the_run_continue(server: LiveServer) -> None:
    _gated(server)
    with server.client() as c:
        run_id = start(c, "gated").json()["id"]
        waiting = wait_for(c, run_id, ("waiting",))
        wrong_step = c.post(f"/api/v1/runs/{run_id}/steps/after/approve")
        r = c.post(f"/api/v1/runs/{run_id}/steps/gate/approve", json={"comment": "ship it"})
        assert r.status_code == 200, r.text
        done = wait_for(c, run_id, ENDED)
        twice = c.post(f"/api/v1/runs/{run_id}/steps/gate/approve")
        missing = c.post(f"/api/v1/runs/{run_id}/steps/nope/approve")
    assert "approval" in (step_of(waiting, "gate")["reason"] or "")
    assert wrong_step.status_code == 400
    assert done["status"] == "succeeded"
    gate = step_of(done, "gate")
    assert gate["outputs"]["approved"] is True
    assert gate["outputs"]["approver"] == "admin"
    assert gate["outputs"]["comment"] == "ship it"
    assert twice.status_code == 409
    assert missing.status_code == 404


def test_reject_fails_the_step_with_the_comment(server: LiveServer) -> None:
    _gated(server)
    with server.client() as c:
        run_id = start(c, "gated").json()["id"]
        wait_for(c, run_id, ("waiting",))
        r = c.post(f"/api/v1/runs/{run_id}/steps/gate/reject", json={"comment": "not today"})
        assert r.status_code == 200, r.text
        done = wait_for(c, run_id, ENDED)
    assert done["status"] == "failed"
    gate = step_of(done, "gate")
    assert gate["status"] == "failed"
    assert gate["error"] == "rejected by admin: not today"
    assert step_of(done, "after")["status"] == "skipped"


def test_only_the_named_approvers_may_decide(server: LiveServer) -> None:
    from plait.server.bootstrap import create_user

    _gated(server, '["user:alice"]')
    create_user(server.services, "alice", "wonderland-pass-123", role="operator")
    create_user(server.services, "bob", "builder-pass-12345", role="operator")
    create_user(server.services, "vic", "viewer-password-123", role="viewer")
    with server.client() as c:
        run_id = start(c, "gated").json()["id"]
        wait_for(c, run_id, ("waiting",))
    with server.client(server.login("vic", "viewer-password-123")) as v:
        viewer = v.post(f"/api/v1/runs/{run_id}/steps/gate/approve")
    with server.client(server.login("bob", "builder-pass-12345")) as b:
        bob = b.post(f"/api/v1/runs/{run_id}/steps/gate/approve")
    with server.client() as c:
        admin = c.post(f"/api/v1/runs/{run_id}/steps/gate/approve")
    with server.client(server.login("alice", "wonderland-pass-123")) as a:
        alice = a.post(f"/api/v1/runs/{run_id}/steps/gate/approve")
    assert viewer.status_code == 403
    assert bob.status_code == 403
    assert "user:alice" in bob.json()["error"]["message"]
    assert admin.status_code == 403
    assert alice.status_code == 200, alice.text
    assert step_of(alice.json(), "gate")["outputs"]["approver"] == "alice"


def test_a_lower_role_does_not_satisfy_a_higher_one(server: LiveServer) -> None:
    """Roles include the ones below them, never the ones above."""
    from plait.server.bootstrap import create_user

    _gated(server, '["role:editor"]')
    create_user(server.services, "opal", "operator-password-1", role="operator")
    with server.client() as c:
        run_id = start(c, "gated").json()["id"]
        wait_for(c, run_id, ("waiting",))
    with server.client(server.login("opal", "operator-password-1")) as o:
        refused = o.post(f"/api/v1/runs/{run_id}/steps/gate/reject")
    with server.client() as c:
        admin = c.post(f"/api/v1/runs/{run_id}/steps/gate/reject")
    assert refused.status_code == 403
    assert admin.status_code == 200


def test_process_ids_are_real(tmp_path: Path) -> None:
    """The liveness probe the cancel test relies on tells a live process from a gone one."""
    assert _alive(os.getpid())
    assert not _alive(2**22 + 7)
