"""Runs with nothing else running: ``plait run``, ``plait resume`` and ``Workflow.run()``.

This module is a composition root (outside ``runtime/``, which reaches storage only
through the store interface): it opens the store, keys, actions and runner. The
embedded store lives in ``$PLAIT_HOME`` (SQLite, WAL); secret values at rest are sealed
with the home's key. Steps' connections come from that store (``plait connections
set``), then from ``PLAIT_CONNECTION_<NAME>`` variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plait.actions.connections import Connection, ConnectionSource
from plait.actions.registry import ActionRegistry
from plait.engine.state import RunState, StepState
from plait.model.plan import Plan
from plait.runtime.runner import RunListener, Runner
from plait.settings import Settings, env_secrets
from plait.store.base import Store


@dataclass
class StepResult:
    id: str
    name: str
    status: str
    attempts: int
    duration: float | None
    outputs: dict[str, Any] | None
    error: str | None


@dataclass
class RunResult:
    """The result file of DESIGN §6, also what ``Workflow.run()`` returns."""

    run_id: str
    workflow_name: str
    success: bool
    status: str
    duration: float | None
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def step(self, step_id: str) -> StepResult:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def build_result(plan: Plan, run: RunState, steps: Mapping[str, StepState]) -> RunResult:
    """The public (masked) record of a run, steps in definition order, items after their
    step."""
    ordered: list[StepResult] = []
    by_parent: dict[str, list[StepState]] = {}
    for s in steps.values():
        if s.parent is not None:
            by_parent.setdefault(s.parent, []).append(s)
    for key, node in plan.nodes.items():
        state = steps.get(key)
        if state is None:
            continue
        ordered.append(_step_result(state, node.name or key))
        for item in sorted(by_parent.get(key, []), key=lambda s: s.index or 0):
            ordered.append(_step_result(item, f"{node.name or key}[{item.index}]"))
    end = run.finished_at
    duration = (end - run.started_at) if end and run.started_at else None
    return RunResult(
        run_id=run.id,
        workflow_name=run.workflow,
        success=run.status == "succeeded",
        status=str(run.status),
        duration=_round(duration),
        inputs=dict(run.inputs),
        outputs=run.outputs,
        steps=ordered,
        error=run.error,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _step_result(state: StepState, name: str) -> StepResult:
    duration = None
    if state.started_at is not None and state.finished_at is not None:
        duration = state.finished_at - state.started_at
    return StepResult(
        id=state.key,
        name=name,
        status=str(state.status),
        attempts=state.attempt,
        duration=_round(duration),
        outputs=state.outputs,
        error=state.error,
    )


def write_result(result: RunResult, directory: Path) -> Path:
    """``DIR/workflow_<name>_<timestamp>.json``, written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    path = directory / f"workflow_{result.workflow_name}_{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"workflow_{result.workflow_name}_{stamp}_{n}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def open_home_store(settings: Settings) -> Store:
    """The store of ``settings``, migrated, sealing secrets with the home's key."""
    from plait.security.crypto import Keyring
    from plait.store.migrate import open_store

    keyring = Keyring.load_or_create(settings.home)
    return open_store(settings.database_url, keyring, lite=True)


def home_connections(store: Store) -> ConnectionSource:
    """The connections of the home store (the run's namespace, then ``*``; credentials
    unsealed with the home's key), then ``PLAIT_CONNECTION_<NAME>`` variables. A store
    that is not SQL (an in-memory test store) has only the variables. The store's
    part is built when a step first asks for a connection: most runs never do, and
    it needs SQLAlchemy, which ``plait run`` otherwise does without."""
    from plait.actions.connections import ChainedConnections, EnvConnections
    from plait.store.sql import SqlStore

    if not isinstance(store, SqlStore):
        return EnvConnections()
    sql_store = store

    class _HomeConnections:
        def __init__(self) -> None:
            self._chain: ConnectionSource | None = None

        def get(self, namespace: str, name: str) -> Connection:
            if self._chain is None:
                from plait.store.server_connections import ConnectionStore, StoreConnections

                own = StoreConnections(ConnectionStore(sql_store))
                self._chain = ChainedConnections(own, EnvConnections())
            return self._chain.get(namespace, name)

    return _HomeConnections()


def load_source(source: str, filename: str, registry: ActionRegistry) -> Plan:
    from plait.model import load_workflow

    return load_workflow(source, filename, registry.input_models()).plan


class LocalSession:
    """One process driving runs on the embedded store."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        listener: RunListener | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.store = store or open_home_store(self.settings)
        self.registry = ActionRegistry()
        self.runner = Runner(
            self.store,
            self.registry,
            listener=listener,
            services={"connections": home_connections(self.store)},
        )

    async def run(
        self,
        plan: Plan,
        source: str,
        inputs: Mapping[str, Any],
        *,
        workdir: Path | None = None,
        on_start: Any = None,
    ) -> RunResult:
        version = self.store.save_version(
            plan.namespace, plan.name, source, _checksum(source), author=_author()
        )
        workdir = (workdir or Path.cwd()).resolve()
        run_id = await self.runner.start(
            plan,
            inputs,
            version_id=version.id,
            secrets=env_secrets(),
            workdir=workdir,
            trigger={"type": "manual", "origin": "cli", "workdir": str(workdir)},
            on_created=on_start,
        )
        return await self._finish(plan, run_id)

    async def resume(
        self, run_id: str, *, workdir: Path | None = None, force: bool = False, on_start: Any = None
    ) -> RunResult:
        snap = self.store.load_run(run_id)
        version = self.store.get_version(snap.run.version_id) if snap.run.version_id else None
        if version is None:
            from plait.errors import PlaitError

            raise PlaitError(f"run {run_id} has no stored workflow version to resume from")
        plan = load_source(version.source, f"{snap.run.workflow}@v{version.version}", self.registry)
        recorded = snap.run.trigger.get("workdir")
        where = workdir or (Path(recorded) if isinstance(recorded, str) else None)
        if on_start is not None:
            on_start(run_id)
        await self.runner.resume(plan, run_id, secrets=env_secrets(), workdir=where, force=force)
        return await self._finish(plan, run_id)

    def cancel(self, run_id: str) -> None:
        self.runner.cancel(run_id, "cancelled by user (interrupt)")

    async def _finish(self, plan: Plan, run_id: str) -> RunResult:
        await self.runner.wait(run_id)
        run, steps = self.runner.committed(run_id)
        return build_result(plan, run, steps)

    async def close(self) -> None:
        await self.runner.close()
        self.store.close()


def _checksum(source: str) -> str:
    import hashlib

    return hashlib.sha256(source.encode()).hexdigest()


def _author() -> str | None:
    try:
        import getpass

        return getpass.getuser()
    except (ImportError, KeyError, OSError):
        return None


def run_plan(
    plan: Plan,
    inputs: Mapping[str, Any] | None = None,
    *,
    source: str | None = None,
    home: str | Path | None = None,
    workdir: Path | None = None,
) -> RunResult:
    """Run a plan to completion on the embedded store (what ``Workflow.run()`` calls)."""
    from plait.model.inputs import validate_inputs

    values = validate_inputs(plan, dict(inputs or {}))
    text = source if source is not None else json.dumps({"name": plan.name})

    async def go() -> RunResult:
        session = LocalSession(Settings.from_env(home))
        try:
            return await session.run(plan, text, values, workdir=workdir)
        finally:
            await session.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(go())
    from plait.errors import PlaitError

    raise PlaitError("Workflow.run() cannot be called from a running event loop; use arun()")
