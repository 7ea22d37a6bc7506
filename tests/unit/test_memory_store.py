"""MemoryStore specifics (the shared contract is in tests/integration) and ManualClock."""

from __future__ import annotations

from plait.engine.state import RunState, StepState, StepStatus
from plait.testing import ManualClock, MemoryStore


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(100.0)
    assert clock.now() == 100.0
    assert clock.advance(2.5) == 102.5
    assert clock.now() == 102.5


def test_claims_are_first_in_first_out() -> None:
    store = MemoryStore()
    keys = ["z", "a", "m"]
    store.create_run(
        RunState(id="r", workflow="w"), [StepState(k, k, StepStatus.QUEUED) for k in keys], []
    )
    assert [c.step for c in store.claim("w", 1.0, 2.0, 10)] == keys


def test_sealed_fields_need_no_sealer_in_memory() -> None:
    store = MemoryStore()
    store.create_run(RunState(id="r", workflow="w", sealed_inputs={"pw": "x"}), [], [])
    assert store.load_run("r").run.sealed_inputs == {"pw": "x"}
