"""`plait doctor` on a healthy home and on homes broken the ways operators break them:
a key file others can read, the wrong key, a lost key, an old schema, no worker while
steps wait, a schedule that stopped firing, a channels file that does not parse, an
unreachable database, a full disk."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import ROOT

PASSWORD = "correct-horse-battery-staple"
SCHEDULED = """
name: nightly
triggers:
  - schedule: {cron: "0 3 * * *"}
steps:
  - id: work
    run: echo working
"""


class Home:
    """A PLAIT_HOME, the `plait` command on it, and the server processes started."""

    def __init__(self, root: Path) -> None:
        self.path = root / "home"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        self.env["PLAIT_HOME"] = str(self.path)
        self.procs: list[subprocess.Popen[bytes]] = []

    def plait(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plait.cli", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def doctor(self, *args: str, code: int) -> dict[str, dict[str, str]]:
        """`plait doctor --json`: the findings by check, after checking the exit code."""
        done = self.plait("doctor", "--json", "--min-free", "1MB", *args)
        assert done.returncode == code, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        doc = json.loads(done.stdout)
        assert doc["ok"] is (code == 0)
        return {c["check"]: c for c in doc["checks"]}

    def start(self, command: str) -> str:
        """`plait serve` or `plait api` on a free port; its URL once it is ready."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "plait.cli", command, "--port", str(port)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, f"plait {command} exited"
            assert time.monotonic() < deadline, f"plait {command} is not ready"
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.procs.clear()

    def client(self, url: str) -> httpx.Client:
        r = httpx.post(f"{url}/api/v1/auth/token", data={"username": "admin", "password": PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})

    def sql(self, statement: str, *params: Any) -> None:
        db = sqlite3.connect(self.path / "plait.db")
        try:
            db.execute(statement, params)
            db.commit()
        finally:
            db.close()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    h = Home(tmp_path)
    created = h.plait("users", "create", "admin", "--admin", "--password-stdin", stdin=PASSWORD)
    assert created.returncode == 0, created.stderr
    stored = h.plait("secrets", "set", "*", "deploy_key", "--value-stdin", stdin="s3cr3t-value")
    assert stored.returncode == 0, stored.stderr
    (h.path / "channels.yaml").write_text("ops: {type: webhook, url: 'http://127.0.0.1:9/x'}\n")
    try:
        yield h
    finally:
        h.stop()


def statuses(found: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: c["status"] for name, c in found.items()}


def test_a_healthy_home_passes_every_check(home: Home) -> None:
    url = home.start("serve")
    with home.client(url) as c:
        r = c.post(
            "/api/v1/workflows", content=SCHEDULED, headers={"Content-Type": "application/yaml"}
        )
        assert r.status_code in (200, 201), r.text
    found = home.doctor(code=0)
    assert set(statuses(found).values()) == {"ok"}, found
    assert list(found) == [
        "home", "store", "migrations", "secret key", "token key", "admin", "workers",
        "schedules", "disk", "channels",
    ]  # fmt: skip
    assert "1 alive" in found["workers"]["message"]
    assert "1 schedule(s); next: nightly" in found["schedules"]["message"]
    assert "opens the store's 1 sealed value(s)" in found["secret key"]["message"]
    assert found["admin"]["message"] == "admin(s): admin"
    assert found["channels"]["message"] == "1 channel(s): ops (webhook)"

    text = home.plait("doctor", "--min-free", "1MB")
    assert text.returncode == 0
    assert "ok    workers     1 alive" in text.stdout
    assert text.stdout.rstrip().endswith("10 ok, 0 warning(s), 0 failed")

    # a server stopped cleanly: nothing is broken, but nothing will run either
    home.stop()
    found = home.doctor(code=0)
    assert found["workers"]["status"] == "warn"
    assert "no worker is alive" in found["workers"]["message"]


def test_a_broken_home_says_what_to_fix(home: Home) -> None:
    # an API without workers or a scheduler: a run is queued, a schedule comes due
    url = home.start("api")
    with home.client(url) as c:
        r = c.post(
            "/api/v1/workflows", content=SCHEDULED, headers={"Content-Type": "application/yaml"}
        )
        assert r.status_code in (200, 201), r.text
        r = c.post("/api/v1/workflows/nightly/runs", json={"inputs": {}})
        assert r.status_code in (200, 201, 202), r.text
    home.stop()
    now = time.time()
    home.sql("UPDATE steps SET available_at = ? WHERE status = 'queued'", now - 600)
    home.sql("UPDATE schedules SET next_fire = ?", now - 3600)
    key = home.path / "keys" / "secret.key"
    key.chmod(0o644)
    (home.path / "channels.yaml").write_text("ops: {type: webhook, url: [unclosed\n")

    found = home.doctor(code=1)
    state = statuses(found)
    assert state["store"] == state["migrations"] == state["admin"] == "ok"
    assert state["secret key"] == "fail"
    assert found["secret key"]["fix"] == f"chmod 600 {key}"
    assert state["workers"] == "fail"
    assert "no worker is alive and 1 step(s) are due" in found["workers"]["message"]
    assert "plait worker" in found["workers"]["fix"]
    assert state["schedules"] == "fail"
    assert "nightly (0 3 * * *) due 60 min ago" in found["schedules"]["message"]
    assert "plait scheduler" in found["schedules"]["fix"]
    assert state["channels"] == "fail"
    assert "channels.yaml" in found["channels"]["message"]

    text = home.plait("doctor", "--min-free", "1MB")
    assert text.returncode == 1
    assert f"→ chmod 600 {key}" in text.stdout
    assert text.stdout.rstrip().endswith("4 failed")

    # another key under the same id: it cannot open what the store holds
    key.chmod(0o600)
    good = key.read_text()
    key.write_text("1:" + "A" * 43 + "=\n")
    found = home.doctor(code=1)
    assert "failed authentication" in found["secret key"]["message"]
    # no key at all, with sealed values in the store
    key.unlink()
    found = home.doctor(code=1)
    assert "is missing, and the store holds 1 sealed value(s)" in found["secret key"]["message"]
    assert not key.exists()  # the doctor never creates a key
    key.write_text(good)
    key.chmod(0o600)

    # an old schema: everything that reads tables waits for `plait db upgrade`
    assert home.plait("db", "downgrade").returncode == 0
    found = home.doctor(code=1)
    assert found["migrations"]["status"] == "fail"
    assert found["migrations"]["fix"].startswith("stop the old processes, run `plait db upgrade`")
    assert "not checked" in found["admin"]["message"]
    assert home.plait("db", "upgrade").returncode == 0


def test_disk_space_and_bad_options(home: Home) -> None:
    done = home.plait("doctor", "--json", "--min-free", "1000TiB")
    assert done.returncode == 1
    disk = next(c for c in json.loads(done.stdout)["checks"] if c["check"] == "disk")
    assert disk["status"] == "fail"
    assert "under 1000.0 TiB" in disk["message"] or "under" in disk["message"]
    for bad in (["--min-free", "lots"], ["--schedule-grace", "soon"]):
        done = home.plait("doctor", *bad)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr


def test_an_unreachable_or_missing_store(tmp_path: Path) -> None:
    h = Home(tmp_path)
    found = h.doctor(code=1)
    assert found["store"]["status"] == "fail"
    assert "plait db upgrade" in found["store"]["fix"]
    assert not h.path.exists()  # looking created nothing

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    h.env["PLAIT_DATABASE_URL"] = f"postgresql+psycopg://plait:pw@127.0.0.1:{closed}/plait"
    started = time.monotonic()
    found = h.doctor(code=1)
    assert time.monotonic() - started < 60
    assert found["store"]["status"] == "fail"
    assert "does not answer" in found["store"]["message"]
    assert "pw" not in found["store"]["message"]  # the password is not shown
