"""Cluster mode for real: separate `plait api`, `plait worker` and `plait scheduler`
processes on one PostgreSQL database, while workers and the leading scheduler are
killed with SIGKILL and every database connection is cut under them.

What is checked, from the database itself: every run finishes, every finished step has
exactly one successful attempt (the attempts of a killed worker are recorded
``interrupted`` and run again), and a schedule fires exactly once for each of its times
across a takeover of the scheduler leadership.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.pg import ADMIN_URL, fresh_database

from .conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PASSWORD = "correct-horse-battery-staple"
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")

WORK = """
name: work
steps:
  - id: a
    run: sleep 1; echo "a of $PLAIT_RUN_ID"
  - id: b
    needs: [a]
    run: sleep 1; echo b
  - id: c
    needs: [a]
    run: sleep 1; echo c
  - id: d
    needs: [b, c]
    run: echo done
"""

TICK = """
name: tick
triggers:
  - schedule: {cron: "* * * * *"}
steps:
  - id: tick
    run: echo tick
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """The processes of one cluster on a fresh database, and a view into that database."""

    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.db = sa.make_url(url).database
        self.logs = home.parent / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        self.env.update(
            PLAIT_HOME=str(home),
            PLAIT_DATABASE_URL=url,
            PLAIT_ADMIN_USER="admin",
            PLAIT_ADMIN_PASSWORD=PASSWORD,
            # bounded pools: 7 processes stay far below max_connections
            PLAIT_DB_POOL_SIZE="2",
            PLAIT_DB_MAX_OVERFLOW="3",
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port = _port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.engine = sa.create_engine(url, poolclass=sa.NullPool)
        self._token = ""

    # -- processes ------------------------------------------------------------------
    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "plait.cli", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_api(self) -> None:
        self.start("api", "api", "--port", str(self.port))
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert self.procs["api"].poll() is None, self.log("api")
            assert time.monotonic() < deadline, "plait api did not come up"
            time.sleep(0.2)
        r = httpx.post(
            f"{self.base}/api/v1/auth/token",
            data={"username": "admin", "password": PASSWORD},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        self._token = r.json()["access_token"]

    def kill(self, name: str) -> None:
        """SIGKILL, and reap it (a zombie would still look alive to the others)."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.engine.dispose()

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- the API and the database ---------------------------------------------------
    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self._token}"}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def deploy(self, source: str) -> None:
        with self.client() as c:
            r = c.post(
                "/api/v1/workflows", content=source, headers={"Content-Type": "application/yaml"}
            )
            assert r.status_code in (200, 201), r.text

    def start_runs(self, workflow: str, count: int) -> list[str]:
        with self.client() as c:
            ids = []
            for _ in range(count):
                r = c.post(f"/api/v1/workflows/{workflow}/runs", json={"inputs": {}})
                assert r.status_code in (200, 201, 202), r.text
                ids.append(r.json()["id"])
            return ids

    def rows(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(query), params).all())

    def run_statuses(self, ids: list[str]) -> dict[str, str]:
        rows = self.rows("SELECT id, status FROM runs WHERE id = ANY(:ids)", ids=ids)
        return {row[0]: row[1] for row in rows}

    def wait_runs(self, ids: list[str], within: float) -> dict[str, str]:
        deadline = time.monotonic() + within
        while True:
            statuses = self.run_statuses(ids)
            if len(statuses) == len(ids) and all(s in TERMINAL for s in statuses.values()):
                return statuses
            if time.monotonic() > deadline:
                pending = Counter(statuses.values())
                logs = {n: self.log(n)[-1500:] for n in self.procs}
                raise AssertionError(f"runs did not finish: {pending}\n{logs}")
            time.sleep(0.5)

    def running_workers(self) -> Counter[str]:
        """Which worker ids hold running attempts now."""
        rows = self.rows("SELECT worker FROM attempts WHERE status = 'running'")
        return Counter(str(row[0]) for row in rows)

    def leader_pid(self) -> int | None:
        """The pid of the scheduler holding the leadership lock (its session's
        ``application_name`` is ``plait-leader HOST:PID``)."""
        rows = self.rows(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = :db",
            db=self.db,
        )
        names = [str(r[0]) for r in rows if str(r[0]).startswith("plait-leader")]
        assert len(names) <= 1, names
        return int(names[0].rsplit(":", 1)[1]) if names else None

    def check_attempts(self, ids: list[str]) -> Counter[str]:
        """Every step of these runs succeeded, with exactly one successful attempt;
        returns the count of attempts by status."""
        steps = self.rows("SELECT run_id, key, status FROM steps WHERE run_id = ANY(:ids)", ids=ids)
        assert steps
        assert {row[2] for row in steps} == {"succeeded"}, Counter(row[2] for row in steps)
        attempts = self.rows(
            "SELECT run_id, step, attempt, status FROM attempts WHERE run_id = ANY(:ids)", ids=ids
        )
        wins = Counter((row[0], row[1]) for row in attempts if row[3] == "succeeded")
        for run_id, key, _ in steps:
            assert wins[(run_id, key)] == 1, (run_id, key, wins[(run_id, key)])
        return Counter(str(row[3]) for row in attempts)

    def fires(self) -> Counter[str]:
        """Runs of the `tick` schedule, by scheduled time."""
        rows = self.rows("SELECT trigger FROM runs WHERE workflow = 'tick'")
        found: Counter[str] = Counter()
        for (trigger,) in rows:
            data = trigger if isinstance(trigger, dict) else json.loads(trigger)
            found[data["payload"]["scheduled_at"]] += 1
        return found


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with fresh_database("plait_cluster_e2e") as url:
        made = Cluster(url, tmp_path / "home")
        try:
            yield made
        finally:
            made.stop()


def _minutes(after: float, until: float) -> list[str]:
    """The whole minutes in (after, until], as the scheduler writes them."""
    first = datetime.fromtimestamp(after, UTC).replace(second=0, microsecond=0)
    found, at = [], first + timedelta(minutes=1)
    while at.timestamp() <= until:
        found.append(at.isoformat())
        at += timedelta(minutes=1)
    return found


def _wait(predicate: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_workers_and_the_leading_scheduler_killed_mid_run(cluster: Cluster) -> None:
    cluster.start_api()
    for n in (1, 2, 3):
        cluster.start(f"worker{n}", "worker", "--concurrency", "4")
    for n in (1, 2):
        cluster.start(f"scheduler{n}", "scheduler")
    cluster.deploy(WORK)
    cluster.deploy(TICK)
    created = cluster.rows("SELECT created_at FROM schedules WHERE workflow = 'tick'")[0][0]
    _wait(lambda: cluster.leader_pid() is not None, 30, "no scheduler leads")
    # The leader dies 4 s before a minute boundary, so that minute's fire is the new
    # leader's to make; the workload starts 20 s before it and runs across it.
    boundary = (int(time.time()) // 60 + 1) * 60
    if boundary - time.time() < 25:
        boundary += 60
    time.sleep(max(0.0, boundary - 20 - time.time()))
    ids = cluster.start_runs("work", 60)
    # a worker holding running steps is killed
    _wait(lambda: len(cluster.running_workers()) >= 2, 30, "no steps running")
    victim_id = cluster.running_workers().most_common(1)[0][0]
    victim_pid = int(victim_id.split(":")[1])
    victim = next(n for n, p in cluster.procs.items() if p.pid == victim_pid)
    held = cluster.running_workers()[victim_id]
    cluster.kill(victim)
    # the leading scheduler is killed just before the boundary
    time.sleep(max(0.0, boundary - 4 - time.time()))
    leader = cluster.leader_pid()
    assert leader is not None
    killed_leader = next(n for n, p in cluster.procs.items() if p.pid == leader)
    cluster.kill(killed_leader)
    killed_at = time.time()
    _wait(lambda: cluster.leader_pid() not in (None, leader), 15, "no scheduler took over")
    takeover = time.time() - killed_at
    # every run finishes, each step with exactly one successful attempt
    statuses = cluster.wait_runs(ids, within=240)
    assert Counter(statuses.values()) == {"succeeded": 60}
    by_status = cluster.check_attempts(ids)
    assert by_status["interrupted"] >= held >= 1  # the victim's attempts, run again
    # the boundary fired once, after the takeover; no minute was fired twice or lost
    boundary_at = datetime.fromtimestamp(boundary, UTC).isoformat()
    _wait(lambda: boundary_at in cluster.fires(), 30, f"the fire at {boundary_at} is lost")
    time.sleep(3)  # a doubled fire would show up by now
    fires = cluster.fires()
    assert set(fires) == set(_minutes(created, boundary)), fires
    assert set(fires.values()) == {1}, fires
    assert takeover < 10
    alive = cluster.alive()
    assert alive.pop(victim) is False
    assert alive.pop(killed_leader) is False
    assert all(alive.values()), alive


def test_runs_finish_after_every_connection_is_cut(cluster: Cluster) -> None:
    cluster.start_api()
    for n in (1, 2):
        cluster.start(f"worker{n}", "worker", "--concurrency", "4")
    cluster.start("scheduler", "scheduler")
    cluster.deploy(WORK)
    _wait(lambda: cluster.leader_pid() is not None, 30, "no scheduler leads")
    ids = cluster.start_runs("work", 20)
    _wait(lambda: len(cluster.running_workers()) >= 2, 30, "no steps running")
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        for _ in range(2):  # twice, while steps run and results come in
            with admin.connect() as conn:
                cut = conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": cluster.db},
                ).all()
            assert len(cut) >= 6  # pools, listeners and the leader's session
            time.sleep(1.5)
    finally:
        admin.dispose()
    # the API answers 503 for a request on a cut connection, never 4xx or 500, then 200
    with cluster.client() as c:
        codes = [c.get(f"/api/v1/runs/{ids[0]}").status_code for _ in range(4)]
    assert set(codes) <= {200, 503}, codes
    assert codes[-1] == 200, codes
    statuses = cluster.wait_runs(ids, within=240)
    assert Counter(statuses.values()) == {"succeeded": 20}
    cluster.check_attempts(ids)
    assert all(cluster.alive().values()), {n: cluster.log(n) for n in cluster.procs}
    # every process has its listener and the scheduler its leadership back
    names = [
        str(r[0])
        for r in cluster.rows(
            "SELECT application_name FROM pg_stat_activity WHERE datname = :db", db=cluster.db
        )
    ]
    assert sum(n.startswith("plait-listen") for n in names) == 3, names
    _wait(lambda: cluster.leader_pid() == cluster.procs["scheduler"].pid, 30, "no leader")
