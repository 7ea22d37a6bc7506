"""What the browser tests, the UI benchmark and the screenshot script share: a real
``plait serve`` in its own home, Debian's Chromium driven by Playwright, the API over
plain HTTP, and runs seeded straight into the SQLite store (100,000 runs through the API
would take minutes; the list only reads the ``runs`` table).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "plait" / "server" / "static" / "index.html"
CHROMIUM = os.environ.get("PLAIT_CHROMIUM", "/usr/bin/chromium")
USER, PASSWORD = "admin", "correct-horse-battery-staple"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(
    home: Path, deploy: Path | None = ROOT / "examples", env: dict[str, str] | None = None
) -> Iterator[str]:
    """``plait serve`` on a free port with ``home`` as PLAIT_HOME; yields its base URL.
    ``env`` adds to (or overrides) the server's environment."""
    port = free_port()
    full_env = {
        **os.environ,
        "PLAIT_HOME": str(home),
        "PLAIT_ADMIN_USER": USER,
        "PLAIT_ADMIN_PASSWORD": PASSWORD,
        # browser tests log in many times a minute from one address
        "PLAIT_RATE_LOGIN": "off",
        "PLAIT_RATE_LOGIN_USER": "off",
        "PLAIT_EXAMPLES": str(ROOT / "examples"),
        **(env or {}),
    }
    args = [sys.executable, "-m", "plait.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if deploy is not None:
        args += ["--deploy", str(deploy)]
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, proc, log_path)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"plait serve exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"plait serve not ready in 40 s:\n{log.read_text()}")


def token(base: str, user: str = USER, password: str = PASSWORD, otp: str | None = None) -> str:
    form = f"username={user}&password={password}" + (f"&otp={otp}" if otp else "")
    req = urllib.request.Request(base + "/api/v1/auth/token", data=form.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(json.load(r)["access_token"])


_ADMIN_TOKENS: dict[str, str] = {}


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    ctype: str = "",
    bearer: str | None = None,
    timeout: float = 20,
) -> Any:
    """One API request as the admin (one login per server, renewed when refused) or
    with ``bearer``; the JSON answer, None for 204."""
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode() if body else None
    for attempt in (1, 2):
        req = urllib.request.Request(base + path, data=data, method=method)
        if bearer is None and base not in _ADMIN_TOKENS:
            _ADMIN_TOKENS[base] = token(base)
        req.add_header("Authorization", f"Bearer {bearer or _ADMIN_TOKENS[base]}")
        if data is not None:
            req.add_header("Content-Type", ctype or "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            if e.code != 401 or bearer is not None or attempt == 2:
                raise
            _ADMIN_TOKENS.pop(base, None)
    raise AssertionError("unreachable")


def wait_run(base: str, run_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = call(base, "GET", f"/api/v1/runs/{run_id}")
        if run["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {run['status']}")
        time.sleep(0.2)


def _uuid7(ms: int) -> str:
    rand = random.getrandbits(74)
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


STATUSES = ["succeeded"] * 8 + ["failed", "cancelled"]


def seed_runs(home: Path, template_run: str, count: int, batch: int = 20_000) -> float:
    """Copy the finished run ``template_run`` ``count`` times into the ``runs`` table of
    the SQLite store in ``home``, one a minute going back in time; returns seconds taken.
    Only run rows are written (no steps): enough for lists, which read nothing else."""
    started = time.perf_counter()
    db = sqlite3.connect(home / "plait.db", timeout=30)
    try:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM runs WHERE id = ?", (template_run,)).fetchone()
        if row is None:
            raise LookupError(f"no run {template_run} in {home}")
        cols = list(row.keys())
        sql = f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        base = dict(row)
        t0 = float(base["created_at"]) - 60
        rng = random.Random(7)
        for first in range(0, count, batch):
            rows = []
            for i in range(first, min(first + batch, count)):
                created = t0 - 60 * i
                duration = rng.uniform(0.05, 30)
                item = {
                    **base,
                    "id": _uuid7(int(created * 1000)),
                    "status": rng.choice(STATUSES),
                    "created_at": created,
                    "started_at": created + 0.01,
                    "finished_at": created + duration,
                }
                rows.append(tuple(item[c] for c in cols))
            db.executemany(sql, rows)
            db.commit()
    finally:
        db.close()
    return time.perf_counter() - started


def launch(playwright: Any) -> Any:
    """Debian's Chromium (never a downloaded browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextlib.contextmanager
def new_page(
    browser: Any,
    base: str,
    shots: Path,
    *,
    width: int = 1400,
    height: int = 1000,
    wait_ms: int = 15000,
) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh browser context on ``base`` (``shots``, the folder for its
    screenshots, made if missing); yields it with the console errors it logs, which the
    caller checks once the context is closed."""
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(base_url=base, viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(wait_ms)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    yield page, problems
    context.close()


def login(page: Any, path: str = "/", user: str = USER, password: str = PASSWORD) -> None:
    page.goto(path)
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
