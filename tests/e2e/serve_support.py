"""The real ``plait serve`` as a subprocess, for the tests that kill and restart it:
started in its own home with an admin account, its output in a log file (a pipe nobody
reads could fill up and stall it), stopped, killed with ``kill -9``, or asked over HTTP.
The ``serve`` fixture of ``conftest.py`` gives one per test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery-staple"
ENDED = ("succeeded", "failed", "cancelled", "timed_out")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(home: Path) -> dict[str, str]:
    """This environment without its ``PLAIT_*`` settings, with ``home`` as PLAIT_HOME and
    the admin ``admin`` / :data:`PASSWORD`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(home), PLAIT_ADMIN_USER="admin", PLAIT_ADMIN_PASSWORD=PASSWORD)
    return env


class Serve:
    """`plait serve` on ``port``; ``env`` may be changed between starts."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, cwd: Path = ROOT) -> None:
        """Start it (``args`` added to ``plait serve --port N``) and wait until healthy."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "plait.cli", "serve", "--port", str(self.port), *args],
                cwd=cwd,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.1)
        raise AssertionError("plait serve did not come up")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> httpx.Client:
        """An API client logged in as the admin."""
        r = httpx.post(
            f"{self.url}/api/v1/auth/token",
            data={"username": "admin", "password": PASSWORD},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        return httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )


def wait_run(client: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """The run once it has ended; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in ENDED:
            return dict(run)
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end")
