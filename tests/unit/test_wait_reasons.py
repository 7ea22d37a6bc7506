"""Why a queued step waits, from the worker registry alone (no I/O): the reasons the
run detail gives, and which steps a worker's runner takes as it commits."""

from __future__ import annotations

from plait.engine.state import StepState, StepStatus
from plait.server.routes.workers import wait_reason
from plait.store.server_workers import WorkerRecord


def worker(queues: tuple[str, ...], tags: dict[str, str], state: str = "running") -> WorkerRecord:
    return WorkerRecord("h:1:a", "h", 1, queues, tags, 4, 0, "1", state, 0.0, 100.0)


def test_reasons_name_the_missing_queue_tags_or_backlog() -> None:
    live = [worker(("default",), {"gpu": "false"}), worker(("builds",), {"region": "eu"})]
    assert wait_reason("nightly", {}, live, 0) == "no worker serves queue 'nightly'"
    assert wait_reason("default", {"gpu": "true"}, live, 0) == "no worker with tag gpu=true"
    assert (
        wait_reason("builds", {"region": "eu", "gpu": "true"}, live, 0)
        == "no worker with tag gpu=true serves queue 'builds'"
    )
    assert wait_reason("default", {"gpu": "false"}, live, 99) is None
    assert (
        wait_reason("default", {}, live, 1200) == "waiting for a free worker: queue backlog 1,200"
    )
    assert (
        wait_reason("default", {}, live, 10_000)
        == "waiting for a free worker: queue backlog 10,000+"
    )


def test_a_worker_is_lost_when_its_heartbeat_is_stale() -> None:
    w = worker(("default",), {})
    assert w.status(now=120.0) == "running"
    assert w.status(now=131.0) == "lost"
    assert worker(("default",), {}, "stopped").status(now=10_000.0) == "stopped"
    assert worker(("default",), {}, "draining").status(now=10_000.0) == "lost"


def test_a_runner_takes_only_the_steps_routed_to_it() -> None:
    from plait.actions.registry import ActionRegistry
    from plait.runtime.runner import Runner
    from plait.testing import MemoryStore

    def step(queue: str, runs_on: dict[str, str]) -> StepState:
        return StepState("s", "s", StepStatus.QUEUED, queue=queue, runs_on=runs_on)

    worker_runner = Runner(MemoryStore(), ActionRegistry(), queues=["builds"], tags={"a": "1"})
    assert worker_runner.serves(step("builds", {"a": "1"}))
    assert not worker_runner.serves(step("builds", {"a": "2"}))
    assert not worker_runner.serves(step("default", {}))
    local = Runner(MemoryStore(), ActionRegistry())  # plait run: its own run, every step
    assert local.serves(step("gpu", {"gpu": "true"}))
