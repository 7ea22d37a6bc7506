"""Cluster mode across hosts: `plait worker` processes in two network namespaces, each
with its own hostname, reaching PostgreSQL only over its veth link (through a relay in
the root namespace, where PostgreSQL listens on 127.0.0.1), and `plait api` in the root
namespace.

Checked: both workers register with their own host and distinct ids; every step routed
with ``runs_on: {host: …}`` runs in that host's namespace and unrouted ones on either,
and the attempt's worker id names the host the step really ran on; each host's
connections to the database arrived over its own link. Then host B's link is pulled
(silently, from the root side) while B runs a step: A takes the step over once B's lease
has run out, the run succeeds, and when the link is back B runs work again while its late
result of the step is refused — the step keeps A's outputs and one successful attempt.

No option shortens the 30 s lease, so the test ends B's lease in the store as soon as
the link is down instead of waiting it out: what a lapsed lease looks like, as B can no
longer renew it.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
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
import sqlalchemy as sa

from tests.e2e.serve_support import ROOT
from tests.netns import Host, Relay, hosts
from tests.pg import ADMIN_URL, fresh_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PASSWORD = "correct-horse-battery-staple"
ENDED = ("succeeded", "failed", "cancelled", "timed_out")
IP = shutil.which("ip") or "ip"

# Each step says where it ran: its network namespace and its hostname.
WHERE = (
    f'echo "netns=$({IP} netns identify $$)" >> "$PLAIT_OUTPUT"; '
    'echo "host=$(uname -n)" >> "$PLAIT_OUTPUT"'
)

HOSTS = f"""\
name: hosts
defaults: {{queue: edge}}
steps:
  - {{id: on_a, needs: [], runs_on: {{host: a}}, run: '{WHERE}'}}
  - {{id: on_b, needs: [], runs_on: {{host: b}}, run: '{WHERE}'}}
  - {{id: either, needs: [], run: '{WHERE}'}}
  - {{id: then_b, needs: [on_a], runs_on: {{host: b}}, run: '{WHERE}'}}
  - {{id: last, needs: [on_b, either, then_b], run: '{WHERE}'}}
"""
ROUTE = {"on_a": "A", "on_b": "B", "then_b": "B"}


def cutoff(marks: Path) -> str:
    """One unrouted step; its first attempt outlives the moment B's link is pulled."""
    return f"""\
name: cutoff
defaults: {{queue: edge}}
steps:
  - id: slow
    run: |
      ns=$({IP} netns identify $$)
      echo "$PLAIT_ATTEMPT started $ns" >> {marks}
      if [ "$PLAIT_ATTEMPT" = 1 ]; then sleep 3; fi
      echo "$PLAIT_ATTEMPT finished $ns" >> {marks}
      echo "netns=$ns" >> "$PLAIT_OUTPUT"
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """`plait api` here and one `plait worker` per host, on one fresh database."""

    def __init__(self, url: str, relay: Relay, tmp_path: Path) -> None:
        self.url = sa.make_url(url)
        self.relay = relay
        self.tmp = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        self.env.update(  # what every host of a real cluster shares
            PLAIT_SECRET_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
            PLAIT_JWT_SECRET=secrets.token_hex(32),
            PLAIT_ADMIN_USER="admin",
            PLAIT_ADMIN_PASSWORD=PASSWORD,
            PLAIT_DB_POOL_SIZE="2",
            PLAIT_DB_MAX_OVERFLOW="3",
        )
        self.engine = sa.create_engine(url, poolclass=sa.NullPool)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.db_ports: dict[str, int] = {}  # the relay's port on each host's link
        self.base = f"http://127.0.0.1:{_port()}"
        self._token = ""

    def spawn(self, name: str, argv: list[str], database_url: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "PLAIT_HOME": str(self.tmp / name), "PLAIT_DATABASE_URL": database_url}
        with (self.tmp / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def start_api(self) -> None:
        port = self.base.rsplit(":", 1)[1]
        url = self.url.render_as_string(hide_password=False)
        proc = self.spawn("api", [sys.executable, "-m", "plait.cli", "api", "--port", port], url)
        _until(lambda: self._healthy(proc), 60, lambda: f"plait api: {self.log('api')}")
        r = httpx.post(
            f"{self.base}/api/v1/auth/token",
            data={"username": "admin", "password": PASSWORD},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        self._token = r.json()["access_token"]

    def _healthy(self, proc: subprocess.Popen[bytes]) -> bool:
        assert proc.poll() is None, self.log("api")
        try:
            return httpx.get(f"{self.base}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, host: Host, tag: str) -> subprocess.Popen[bytes]:
        """`plait worker --tags host=TAG` inside ``host``, reaching the database through
        the relay on its link's root side."""
        port = self.db_ports[host.name] = self.relay.listen(host.gateway)
        url = self.url.set(host=host.gateway, port=port).render_as_string(hide_password=False)
        argv = host.argv(sys.executable, "-m", "plait.cli", "worker", "--queue", "edge",
                         "--tags", f"host={tag}", "--concurrency", "4")  # fmt: skip
        return self.spawn(host.name, argv, url)

    def registered(self, proc: subprocess.Popen[bytes], name: str) -> dict[str, Any]:
        """The registry row of the worker ``proc``, once it runs."""

        def row() -> dict[str, Any] | None:
            assert proc.poll() is None, self.log(name)
            return next((w for w in self.workers() if w["pid"] == proc.pid), None)

        _until(lambda: (row() or {}).get("state") == "running", 60, lambda: self.log(name))
        found = row()
        assert found is not None
        return found

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self._token}"}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def workers(self) -> list[dict[str, Any]]:
        with self.client() as c:
            items: list[dict[str, Any]] = c.get("/api/v1/workers").json()["items"]
            return items

    def deploy(self, source: str) -> None:
        with self.client() as c:
            r = c.post(
                "/api/v1/workflows", content=source, headers={"Content-Type": "application/yaml"}
            )
            assert r.status_code in (200, 201), r.text

    def start_run(self, workflow: str) -> str:
        with self.client() as c:
            r = c.post(f"/api/v1/workflows/{workflow}/runs", json={"inputs": {}})
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        with self.client() as c:
            found: dict[str, Any] = c.get(f"/api/v1/runs/{run_id}").json()
            return found

    def wait_run(self, run_id: str, within: float = 30) -> dict[str, Any]:
        _until(lambda: self.run(run_id)["status"] in ENDED, within, lambda: self._stuck(run_id))
        return self.run(run_id)

    def _stuck(self, run_id: str) -> str:
        logs = "\n".join(f"--- {n}\n{self.log(n)}" for n in self.procs)
        return f"run {run_id} did not end: {self.run(run_id)}\n{logs}"

    def execute(self, query: str, **params: Any) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(sa.text(query), params).rowcount)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        self.engine.dispose()


def _until(ready: Any, within: float, why: Any) -> None:
    deadline = time.monotonic() + within
    while not ready():
        assert time.monotonic() < deadline, why()
        time.sleep(0.1)


@pytest.fixture
def net() -> Iterator[dict[str, Host]]:
    with hosts("A", "B") as made:
        yield made


@pytest.fixture
def relay(net: dict[str, Host]) -> Iterator[Relay]:
    """Needs ``net``: made after the namespaces, so closed before they are removed."""
    admin = sa.make_url(ADMIN_URL)
    made = Relay((admin.host or "127.0.0.1", admin.port or 5432))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def cluster(relay: Relay, tmp_path: Path) -> Iterator[Cluster]:
    with fresh_database("plait_netns") as url:
        made = Cluster(url, relay, tmp_path)
        try:
            yield made
        finally:
            made.stop()


def _where(step: dict[str, Any]) -> tuple[str, str, str]:
    """(namespace the step saw, hostname it saw, host named by its attempt's worker id)."""
    [attempt] = step["attempts"]
    outputs = step["outputs"]
    return outputs["netns"], outputs["host"], attempt["worker"].split(":")[0]


def test_workers_on_two_hosts_route_steps_and_survive_a_pulled_link(
    net: dict[str, Host], relay: Relay, cluster: Cluster, tmp_path: Path
) -> None:
    a, b = net["A"], net["B"]
    cluster.start_api()
    procs = {"A": cluster.start_worker(a, "a"), "B": cluster.start_worker(b, "b")}
    rows = {label: cluster.registered(proc, net[label].name) for label, proc in procs.items()}
    assert {label: (w["host"], w["tags"]) for label, w in rows.items()} == {
        "A": (a.name, {"host": "a"}),
        "B": (b.name, {"host": "b"}),
    }
    ids = {label: w["id"] for label, w in rows.items()}
    assert ids["A"] != ids["B"]
    # the workers' connections came over their own links, from inside their namespaces
    assert relay.peers[a.address] > 0
    assert relay.peers[b.address] > 0
    assert set(relay.peers) == {a.address, b.address}

    cluster.deploy(HOSTS)
    runs = [cluster.start_run("hosts") for _ in range(4)]
    for run_id in runs:
        run = cluster.wait_run(run_id)
        assert run["status"] == "succeeded", run
        for step in run["steps"]:
            netns, hostname, worker_host = _where(step)
            assert netns == hostname == worker_host, step  # the worker id tells the truth
            assert netns in (a.name, b.name), step
            if step["id"] in ROUTE:
                assert netns == net[ROUTE[step["id"]]].name, step

    _cut_off_host_b(cluster, net, ids, tmp_path / "marks")


def _cut_off_host_b(
    cluster: Cluster, net: dict[str, Host], ids: dict[str, str], marks: Path
) -> None:
    a, b = net["A"], net["B"]
    cluster.deploy(cutoff(marks))
    worker_a = cluster.procs[a.name]
    os.kill(worker_a.pid, signal.SIGSTOP)  # so that B claims the unrouted step
    try:
        run_id = cluster.start_run("cutoff")
        _until(lambda: f"1 started {b.name}" in _read(marks), 30, lambda: _read(marks))
    finally:
        os.kill(worker_a.pid, signal.SIGCONT)

    b.link(up=False)
    try:
        probe = subprocess.run(
            b.argv(sys.executable, "-c", f"import socket; socket.create_connection("
                   f"({b.gateway!r}, {cluster.db_ports[b.name]}), timeout=1)"),
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert probe.returncode != 0, "host B still reaches the root namespace"
        # B cannot renew its lease any more; end it now rather than in 30 s
        ended = cluster.execute(
            "UPDATE attempts SET lease_until = :t WHERE worker = :b AND status = 'running'",
            t=time.time() - 1,
            b=ids["B"],
        )
        assert ended == 1

        run = cluster.wait_run(run_id)
        assert run["status"] == "succeeded", run
        _until(lambda: f"1 finished {b.name}" in _read(marks), 30, lambda: _read(marks))
    finally:
        b.link(up=True)

    # B is back: it runs a step routed to it, and its late result changed nothing
    again = cluster.wait_run(cluster.start_run("hosts"))
    assert again["status"] == "succeeded", again
    [step] = cluster.run(run_id)["steps"]
    assert step["outputs"]["netns"] == a.name
    first, second = step["attempts"]
    assert (first["attempt"], first["status"]) == (1, "interrupted")
    assert f"worker {ids['B']} stopped renewing its lease" in first["error"]
    assert first["worker"] == ids["B"]  # the interrupted attempt keeps who lost it
    assert (second["attempt"], second["status"], second["worker"]) == (2, "succeeded", ids["A"])
    assert sorted(_read(marks).split("\n")) == [  # it ran twice: at-least-once
        f"1 finished {b.name}",
        f"1 started {b.name}",
        f"2 finished {a.name}",
        f"2 started {a.name}",
    ]
    states = {w["id"]: w["state"] for w in cluster.workers()}
    assert states == {ids["A"]: "running", ids["B"]: "running"}


def _read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""
