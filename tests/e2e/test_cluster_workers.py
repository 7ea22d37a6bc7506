"""Worker routing and graceful shutdown with real processes: `plait api` and several
`plait worker` processes sharing one store (PostgreSQL, and a SQLite file).

Each step runs on a worker its `queue:` and `runs_on:` pick (the attempt names the
worker); SIGTERM lets a running step finish, hands back the one that outlives the drain
(queued again at once, not after the lease) and leaves the registry row `stopped`;
`plait workers list` shows the registry from the local store and through the API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.pg import fresh_database

from .conftest import ROOT

PASSWORD = "correct-horse-battery-staple"
ENDED = ("succeeded", "failed", "cancelled", "timed_out")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """`plait api` and workers as subprocesses on one store; all killed at the end."""

    def __init__(self, tmp_path: Path, database_url: str | None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        env.update(
            PLAIT_HOME=str(tmp_path / "home"),
            PLAIT_ADMIN_USER="admin",
            PLAIT_ADMIN_PASSWORD=PASSWORD,
        )
        if database_url:
            env["PLAIT_DATABASE_URL"] = database_url
        self.env = env
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._token = ""

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "plait.cli", *args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def start_api(self) -> None:
        proc = self.spawn("api", "api", "--port", str(self.port))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, self.log("api")
            time.sleep(0.1)
        else:
            raise AssertionError(f"plait api did not come up: {self.log('api')}")
        r = httpx.post(
            f"{self.url}/api/v1/auth/token",
            data={"username": "admin", "password": PASSWORD},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        self._token = r.json()["access_token"]

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self._token}"}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def start_worker(self, name: str, *args: str) -> str:
        """Start `plait worker ARGS…`; returns its id once it is registered."""
        proc = self.spawn(name, "worker", *args)
        deadline = time.monotonic() + 60
        with self.client() as c:
            while time.monotonic() < deadline:
                assert proc.poll() is None, self.log(name)
                for w in c.get("/api/v1/workers").json()["items"]:
                    if w["pid"] == proc.pid and w["state"] == "running":
                        return str(w["id"])
                time.sleep(0.2)
        raise AssertionError(f"worker {name} did not register: {self.log(name)}")

    def plait(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plait.cli", *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    if request.param == "sqlite":
        made = Cluster(tmp_path, None)
        try:
            yield made
        finally:
            made.close()
        return
    with fresh_database("plait_cluster") as url:
        made = Cluster(tmp_path, url)
        try:
            yield made
        finally:
            made.close()


def deploy_and_start(c: httpx.Client, source: str, name: str) -> str:
    r = c.post("/api/v1/workflows", content=source, headers={"Content-Type": "application/yaml"})
    assert r.status_code in (200, 201), r.text
    r = c.post(f"/api/v1/workflows/{name}/runs", json={"inputs": {}})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def wait_run(c: httpx.Client, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = c.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in ENDED:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end: {run}")


def wait_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


ROUTED = """\
name: routed
steps:
  - {id: plain, run: "true", needs: []}
  - {id: cpu, run: "true", runs_on: {gpu: false}, needs: []}
  - {id: build, run: "true", queue: builds, needs: []}
  - {id: train, run: "true", queue: builds, runs_on: {gpu: true, region: eu}, needs: []}
"""


def test_each_step_runs_on_a_worker_its_queue_and_tags_pick(cluster: Cluster) -> None:
    cluster.start_api()
    cpu = cluster.start_worker("cpu", "--queue", "default", "--tags", "gpu=false")
    gpu = cluster.start_worker(
        "gpu", "--queue", "builds", "--tags", "gpu=true,region=eu", "--tags", "os=linux"
    )
    with cluster.client() as c:
        runs = [deploy_and_start(c, ROUTED, "routed") for _ in range(2)]
        for run_id in runs:
            run = wait_run(c, run_id)
            assert run["status"] == "succeeded", run
            ran_on = {s["id"]: [a["worker"] for a in s["attempts"]] for s in run["steps"]}
            assert ran_on == {"plain": [cpu], "cpu": [cpu], "build": [gpu], "train": [gpu]}

    listed = cluster.plait("workers", "list", "--json")  # the local store
    assert listed.returncode == 0, listed.stderr
    found = {w["id"]: w for w in json.loads(listed.stdout)}
    assert set(found) == {cpu, gpu}
    assert (found[gpu]["queues"], found[gpu]["tags"]) == (
        ["builds"],
        {"gpu": "true", "region": "eu", "os": "linux"},
    )
    assert {w["state"] for w in found.values()} == {"running"}
    remote = cluster.plait(
        "workers", "list", "--server", cluster.url, "--json", PLAIT_TOKEN=cluster._token
    )
    assert remote.returncode == 0, remote.stderr
    assert {w["id"] for w in json.loads(remote.stdout)} == {cpu, gpu}
    table = cluster.plait(
        "workers", "list", "--server", cluster.url, PLAIT_TOKEN=cluster._token, COLUMNS="250"
    )
    assert table.returncode == 0, table.stderr
    assert "running" in table.stdout
    assert "gpu=true" in table.stdout


def test_sigterm_lets_a_step_finish_and_hands_back_the_rest(
    cluster: Cluster, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    source = f"""\
name: drained
steps:
  - id: finishes
    needs: []
    run: touch {marks}/finishes; sleep 3; echo finished
  - id: outlives
    needs: []
    run: |
      if [ "$PLAIT_ATTEMPT" = "1" ]; then touch {marks}/outlives; sleep 300; fi
      echo second attempt
"""
    cluster.start_api()
    first = cluster.start_worker("first", "--drain-timeout", "6", "--concurrency", "4")
    with cluster.client() as c:
        run_id = deploy_and_start(c, source, "drained")
        wait_file(marks / "finishes")
        wait_file(marks / "outlives")
        proc = cluster.procs["first"]
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, cluster.log("first")
        took = time.monotonic() - stopping
        assert 2 < took < 40, took  # it waited for the step, not for the one beyond

        run = c.get(f"/api/v1/runs/{run_id}").json()
        steps = {s["id"]: s for s in run["steps"]}
        finished = steps["finishes"]
        assert finished["status"] == "succeeded"
        assert [a["worker"] for a in finished["attempts"]] == [first]
        handed = steps["outlives"]
        assert handed["status"] == "queued"  # at once: no lease to wait out
        [attempt] = handed["attempts"]
        assert (attempt["status"], attempt["worker"]) == ("interrupted", first)
        assert "handed back" in attempt["error"]
        row = next(w for w in c.get("/api/v1/workers").json()["items"] if w["id"] == first)
        assert row["state"] == "stopped"
        assert row["stopped_at"] is not None

        second = cluster.start_worker("second")
        run = wait_run(c, run_id, timeout=60)
    assert run["status"] == "succeeded", run
    attempts = next(s for s in run["steps"] if s["id"] == "outlives")["attempts"]
    assert [(a["attempt"], a["worker"]) for a in attempts] == [(1, first), (2, second)]


def test_bad_worker_options_are_refused_with_exit_2(plait: Any) -> None:
    bad = plait("worker", "--queue", "no spaces", "--tags", "gpu", "--tags", "-x=1")
    assert bad.returncode == 2
    assert "'no spaces' is not a queue name" in bad.stderr
    assert "--tags 'gpu': write tags as NAME=VALUE" in bad.stderr
    assert "'-x' is not a tag name" in bad.stderr
    listed = plait("workers", "list", "--state", "asleep")
    assert listed.returncode == 2
    assert "unknown state 'asleep'" in listed.stderr
    empty = plait("workers", "list")
    assert (empty.returncode, empty.stdout.strip()) == (0, "no workers registered")
    for command in (["worker", "--help"], ["workers", "list", "--help"]):
        helped = plait(*command)
        assert helped.returncode == 0
        assert "--json" in helped.stdout or "--drain-timeout" in helped.stdout
