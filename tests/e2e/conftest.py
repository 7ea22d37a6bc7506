"""End-to-end tests: the real `plait` command as a subprocess, with its own home."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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
