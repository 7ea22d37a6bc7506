"""`kill -9` of the real `plait serve` process during a run and between schedule fires:
after a restart the run finishes, finished steps do not run again, and no schedule fire
is lost or doubled."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .serve_support import ROOT, Serve, wait_run


def test_kill_serve_mid_run_then_restart(serve: Serve, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    source = f"""
name: durable-serve
steps:
  - id: first
    run: echo "$PLAIT_ATTEMPT" >> {marks}/first
  - id: slow
    run: |
      echo "$PLAIT_ATTEMPT" >> {marks}/slow
      if [ "$PLAIT_ATTEMPT" = "1" ]; then touch {marks}/slow-started; sleep 60; fi
  - id: last
    run: echo "$PLAIT_ATTEMPT" >> {marks}/last
"""
    serve.start()
    with serve.client() as c:
        r = c.post(
            "/api/v1/workflows", content=source, headers={"Content-Type": "application/yaml"}
        )
        assert r.status_code in (200, 201), r.text
        r = c.post("/api/v1/workflows/durable-serve/runs", json={"inputs": {}})
        assert r.status_code in (200, 201, 202), r.text
        run_id = r.json()["id"]
    deadline = time.monotonic() + 30
    while not (marks / "slow-started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    serve.kill()
    serve.start()
    with serve.client() as c:
        run = wait_run(c, run_id, timeout=90)  # the old lease (30 s) must expire first
    assert run["status"] == "succeeded", run
    assert (marks / "first").read_text().split() == ["1"]
    assert (marks / "slow").read_text().split() == ["1", "2"]
    assert (marks / "last").read_text().split() == ["1"]


def test_schedule_fires_once_across_a_kill(serve: Serve, tmp_path: Path) -> None:
    marks = tmp_path / "fires"
    source = f"""
name: every-minute
triggers:
  - schedule: {{cron: "* * * * *", catch_up: all}}
steps:
  - id: tick
    run: echo "${{{{ trigger.scheduled_at }}}}" >> {marks}
"""
    serve.start()
    with serve.client() as c:
        r = c.post(
            "/api/v1/workflows", content=source, headers={"Content-Type": "application/yaml"}
        )
        assert r.status_code in (200, 201), r.text
    # wait for the first fire after the deploy, then kill, stay down over a minute
    # boundary, and restart: the missed minute fires once (catch_up: all), never twice
    deadline = time.monotonic() + 75
    while not marks.exists():
        assert time.monotonic() < deadline, "the schedule never fired"
        time.sleep(0.2)
    serve.kill()
    time.sleep(61)
    serve.start()
    deadline = time.monotonic() + 20
    while len(marks.read_text().split()) < 2:
        assert time.monotonic() < deadline, marks.read_text()
        time.sleep(0.2)
    time.sleep(2)
    fires = marks.read_text().split()
    assert len(fires) == len(set(fires)), fires  # no fire ran twice
    assert len(fires) >= 2


def test_serve_deploys_examples_and_runs_them(serve: Serve, tmp_path: Path) -> None:
    """What `make dev` does: serve with --deploy examples, then run the deployment
    example through the API and the remote CLI."""
    serve.env["PLAIT_EXAMPLES"] = str(ROOT / "examples")
    serve.env["PLAIT_DEMO_DIR"] = str(tmp_path / "demo")
    serve.start("--deploy", str(ROOT / "examples"), cwd=tmp_path)
    with serve.client() as c:
        names = {w["name"] for w in c.get("/api/v1/workflows").json()["items"]}
        token = c.headers["Authorization"].split()[1]
    assert {"hello", "deployment", "retries", "fan-out", "rollback"} <= names
    env = {**serve.env, "PLAIT_SERVER": serve.url, "PLAIT_TOKEN": token}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "plait.cli",
            "trigger",
            "deployment",
            "-i",
            "version=3.1.4",
            "--wait",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("run ")
