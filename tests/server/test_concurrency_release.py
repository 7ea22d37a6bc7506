"""Releasing concurrency slots through the run service, with no worker and no scheduler
so nothing moves unless the test moves it: held runs start oldest first, exactly once
even when several callers release at the same moment, and never past the limit — on
SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.engine.state import RunState
from plait.model import load_workflow
from plait.server.compose import build_services
from plait.server.services import Services
from plait.settings import Settings

from .conftest import _drop, _postgres_database

SOURCE = """\
name: deploy
namespace: ops
concurrency: {key: "deploy-${{ inputs.environment }}", limit: 1}
inputs:
  environment: {type: string, default: staging}
steps:
  - id: work
    run: "true"
"""
KEY = "deploy-staging"


@pytest.fixture(params=["sqlite", "postgres"])
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    admin = name = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'plait.db'}"
    else:
        url, admin, name = _postgres_database()
    built = build_services(Settings(home=tmp_path, database_url=url))
    plan = load_workflow(SOURCE, "deploy.yaml", built.registry.input_models()).plan
    checksum = hashlib.sha256(SOURCE.encode()).hexdigest()
    built.server_store.deploy(plan.namespace, plan.name, SOURCE, checksum, "admin")
    try:
        yield built
    finally:
        built.store.close()
        if admin is not None and name is not None:
            _drop(admin, name)


def start(services: Services, environment: str = "staging") -> RunState:
    version = services.server_store.current_version("deploy")
    return services.runs.start(version, {"environment": environment})


def status(services: Services, run_id: str) -> str:
    return str(services.store.load_run(run_id).run.status)


def test_held_runs_start_oldest_first_once_each_when_released_concurrently(
    services: Services,
) -> None:
    active, *held = [start(services) for _ in range(4)]
    assert [str(r.status) for r in (active, *held)] == ["running"] + ["queued"] * 3
    assert services.runs.release("ops", KEY) == []  # the slot is taken
    services.runs.cancel(active.id)  # no worker: its queued step ends, so does the run
    assert status(services, active.id) == "cancelled"

    results: list[list[RunState]] = []
    gate = threading.Barrier(4)

    def release() -> None:
        gate.wait()
        results.append(services.runs.release("ops", KEY))

    threads = [threading.Thread(target=release) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.id for found in results for r in found] == [held[0].id]
    assert [status(services, r.id) for r in held] == ["running", "queued", "queued"]
    assert services.runs.release_all() == 0


def test_a_cancelled_held_run_is_passed_over(services: Services) -> None:
    active, skipped, next_ = (start(services) for _ in range(3))
    cancelled = services.runs.cancel(skipped.id)
    assert (str(cancelled.status), cancelled.started_at) == ("cancelled", None)
    services.runs.cancel(active.id)
    assert services.store.load_run(next_.id).run.status == "queued"
    assert [r.id for r in services.runs.release("ops", KEY)] == [next_.id]


def test_the_sweep_releases_every_key_with_free_slots(services: Services) -> None:
    staging, production = start(services), start(services, "production")
    waiting = [start(services), start(services, "production")]
    assert services.runs.release_all() == 0
    services.runs.cancel(staging.id)
    services.runs.cancel(production.id)
    assert services.runs.release_all() == 2
    assert {status(services, r.id) for r in waiting} == {"running"}
    assert {services.store.load_run(r.id).run.concurrency_key for r in waiting} == {
        "deploy-staging",
        "deploy-production",
    }
