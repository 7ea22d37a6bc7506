"""`kill -9` of the real `plait run` process mid-step, then `plait resume`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, Plait

WORKFLOW = """
name: durable
steps:
  - id: first
    run: echo "first $PLAIT_ATTEMPT" >> {marks}/first
  - id: slow
    retries: 0
    run: |
      echo "slow $PLAIT_ATTEMPT" >> {marks}/slow
      if [ "$PLAIT_ATTEMPT" = "1" ]; then touch {marks}/slow-started; sleep 30; fi
      echo "done=yes" >> "$PLAIT_OUTPUT"
  - id: last
    run: echo "last $PLAIT_ATTEMPT" >> {marks}/last
"""


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _start(plait_env: dict[str, str], wf: Path, results: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "plait.cli", "run", str(wf), "--results-dir", str(results)],
        cwd=ROOT,
        env=plait_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_kill_during_a_step_then_resume(
    plait: Plait, plait_env: dict[str, str], tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    wf = tmp_path / "durable.yaml"
    wf.write_text(WORKFLOW.format(marks=marks))
    proc = _start(plait_env, wf, tmp_path / "res")
    assert proc.stdout is not None
    run_line = proc.stdout.readline().strip()
    assert run_line.startswith("run ")
    run_id = run_line.split()[1]
    _wait_for(marks / "slow-started")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    with pytest.raises(ProcessLookupError):  # the orphaned `sleep 30` is the only survivor
        os.kill(proc.pid, 0)

    res = plait("resume", run_id, "--results-dir", str(tmp_path / "res"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert (marks / "first").read_text() == "first 1\n"  # finished: never again
    assert (marks / "slow").read_text() == "slow 1\nslow 2\n"  # interrupted: once more
    assert (marks / "last").read_text() == "last 1\n"
    doc = json.loads(sorted((tmp_path / "res").glob("*.json"))[-1].read_text())
    assert doc["success"] is True
    slow = next(s for s in doc["steps"] if s["id"] == "slow")
    # retries: 0, yet the interrupted attempt ran again: interruptions use no retries
    assert slow["attempts"] == 2
    assert slow["outputs"]["done"] == "yes"

    again = plait("resume", run_id, "--results-dir", str(tmp_path / "res2"))
    assert again.returncode == 0  # resuming a finished run reports it and runs nothing
    assert (marks / "first").read_text() == "first 1\n"


CHAIN = """
name: chain
steps:
""" + "".join(
    f"""  - id: s{i}
    run: |
      echo "$PLAIT_ATTEMPT" >> {{marks}}/s{i}
      sleep 0.05
"""
    for i in range(12)
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_at_random_moments(
    plait: Plait, plait_env: dict[str, str], tmp_path: Path, seed: int
) -> None:
    """Killed at a random instant, over and over: every step runs to completion, each
    at most twice (once more only if it was interrupted), in order."""
    rng = random.Random(seed)
    marks = tmp_path / "marks"
    marks.mkdir()
    wf = tmp_path / "chain.yaml"
    wf.write_text(CHAIN.replace("{marks}", str(marks)))
    proc = _start(plait_env, wf, tmp_path / "res")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    time.sleep(rng.uniform(0.1, 0.6))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for _ in range(1):  # two kills at most: a step survives two interruptions
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plait.cli",
                "resume",
                run_id,
                "--results-dir",
                str(tmp_path / "res"),
            ],
            cwd=ROOT,
            env=plait_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.3, 0.8))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    res = plait("resume", run_id, "--results-dir", str(tmp_path / "final"))
    assert res.returncode == 0, res.stdout + res.stderr
    for i in range(12):
        lines = (marks / f"s{i}").read_text().split()
        assert 1 <= len(lines) <= 3, (i, lines)
    doc = json.loads(next((tmp_path / "final").glob("*.json")).read_text())
    assert doc["status"] == "succeeded"
    assert all(s["status"] == "succeeded" for s in doc["steps"])
