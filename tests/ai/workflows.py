"""Running a workflow of AI steps on a real SQLite store, as ``plait run`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plait.local import LocalSession, RunResult
from plait.model import load_workflow
from plait.settings import Settings


async def run(tmp_path: Path, source: str, inputs: dict[str, Any] | None = None) -> RunResult:
    """Run ``source`` to its end in a fresh home under ``tmp_path``."""
    home = tmp_path / "home"
    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    try:
        plan = load_workflow(source, "wf.yaml", session.registry.input_models()).plan
        return await session.run(plan, source, inputs or {}, workdir=tmp_path)
    finally:
        await session.close()
