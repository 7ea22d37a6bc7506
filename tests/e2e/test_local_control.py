"""Deciding approvals and cancelling a `plait run` from another terminal, with no
server: both go through the local store, and the waiting process reacts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .conftest import ROOT, Plait

GATED = """
name: gated-local
steps:
  - id: gate
    uses: approval
    with: {timeout: 1h, message: "ship it?"}
  - id: after
    run: echo "approved by ${{ steps.gate.outputs.approver }}"
"""


def _start(plait_env: dict[str, str], wf: Path, results: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "plait.cli", "run", str(wf), "--results-dir", str(results)],
        cwd=ROOT,
        env=plait_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_status(plait: Plait, run_id: str, status: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        shown = plait("runs", "show", run_id, "--json")
        if shown.returncode == 0 and json.loads(shown.stdout)["status"] == status:
            return
        assert time.monotonic() < deadline, shown.stdout + shown.stderr
        time.sleep(0.2)


def test_approve_a_waiting_local_run(
    plait: Plait, plait_env: dict[str, str], tmp_path: Path
) -> None:
    wf = tmp_path / "gated.yaml"
    wf.write_text(GATED)
    proc = _start(plait_env, wf, tmp_path / "res")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    _wait_status(plait, run_id, "waiting")
    decided = plait("approve", run_id, "gate", "--comment", "go")
    assert decided.returncode == 0, decided.stderr
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert "approved by" in out
    again = plait("approve", run_id, "gate")
    assert again.returncode == 2
    assert "Traceback" not in again.stderr


def test_reject_fails_the_local_run(
    plait: Plait, plait_env: dict[str, str], tmp_path: Path
) -> None:
    wf = tmp_path / "gated.yaml"
    wf.write_text(GATED)
    proc = _start(plait_env, wf, tmp_path / "res")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    _wait_status(plait, run_id, "waiting")
    assert plait("reject", run_id, "gate", "--comment", "not today").returncode == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, out + err
    doc = json.loads(next((tmp_path / "res").glob("*.json")).read_text())
    gate = next(s for s in doc["steps"] if s["id"] == "gate")
    assert gate["status"] == "failed"
    assert "not today" in gate["error"]


def test_cancel_a_local_run_from_another_terminal(
    plait: Plait, plait_env: dict[str, str], tmp_path: Path
) -> None:
    wf = tmp_path / "slow.yaml"
    wf.write_text(
        "name: slow-local\nsteps:\n  - id: nap\n    run: sleep 30\n"
        "finally:\n  - id: tidy\n    run: echo tidied\n"
    )
    proc = _start(plait_env, wf, tmp_path / "res")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    _wait_status(plait, run_id, "running")
    time.sleep(0.3)
    assert plait("runs", "cancel", run_id).returncode == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, out + err
    assert "tidied" in out
    doc = json.loads(next((tmp_path / "res").glob("*.json")).read_text())
    assert doc["status"] == "cancelled"


def test_cancelling_a_finished_local_run_is_refused(plait: Plait, tmp_path: Path) -> None:
    done = plait("run", str(ROOT / "examples" / "hello.yaml"), "--results-dir", str(tmp_path))
    run_id = done.stdout.split()[1]
    res = plait("runs", "cancel", run_id)
    assert res.returncode == 2
    assert "already ended (succeeded)" in res.stderr
    shown = json.loads(plait("runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "succeeded"
