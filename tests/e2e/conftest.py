"""End-to-end tests: the real `plait` command as a subprocess, with its own home."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.serve_support import ROOT, Serve, free_port, serve_env

if TYPE_CHECKING:
    from tests.server.conftest import LiveServer

EXAMPLES = ROOT / "examples"


@pytest.fixture
def plait_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env["PLAIT_HOME"] = str(tmp_path / "home")
    env["PLAIT_DEMO_DIR"] = str(tmp_path / "demo")
    env["COLUMNS"] = "120"
    return env


Plait = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def plait(plait_env: dict[str, str], tmp_path: Path) -> Plait:
    """Run `plait ARGS…` in the repository root; returns the completed process."""

    def run(*args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plait.cli", *args],
            cwd=ROOT,
            env=plait_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kw,  # type: ignore[call-overload]
        )

    return run


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """The real ``plait serve`` in ``tmp_path/home`` (not started yet), stopped after."""
    server = Serve(serve_env(tmp_path / "home"), free_port(), tmp_path / "serve.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one per test module (the browser tests
    skip themselves when Playwright is missing)."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.ui_support import launch

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A server in this process (API, worker and scheduler on SQLite in ``tmp_path/srv``)
    for the command to talk to; stopped after."""
    from tests.server.conftest import start_server

    server, runner = start_server(tmp_path / "srv", f"sqlite:///{tmp_path / 'srv' / 'p.db'}")
    try:
        yield server
    finally:
        runner.stop()
        server.services.store.close()


@pytest.fixture
def remote(live: LiveServer, plait_env: dict[str, str]) -> LiveServer:
    """``live``, named to the command by PLAIT_SERVER and PLAIT_TOKEN."""
    plait_env["PLAIT_SERVER"] = live.url
    plait_env["PLAIT_TOKEN"] = live.token
    return live
