"""Fencing by attempt number, on a real store: a worker whose attempt was taken from it
(its lease ran out, another worker recorded it ``interrupted`` and ran the step again)
finishes late — its result is refused, so the step keeps exactly one successful attempt.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar

from plait.actions.base import Action, ActionContext, ActionResult
from plait.actions.registry import ActionRegistry
from plait.model import load_workflow
from plait.runtime.runner import Runner
from plait.store.migrate import open_store


class Gate(Action):
    """Waits until the test opens the gate of its attempt number."""

    name = "gate"
    gates: ClassVar[dict[int, asyncio.Event]] = {}

    async def execute(self, ctx: ActionContext, input: Any) -> ActionResult:
        await self.gates[ctx.attempt].wait()
        return ActionResult(outputs={"attempt": ctx.attempt})


async def _until(predicate: Any, within: float = 10.0) -> None:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < within, "timed out"
        await asyncio.sleep(0.01)


async def test_a_late_result_of_a_taken_over_attempt_is_refused(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'plait.db'}")
    registry = ActionRegistry()
    registry.register(Gate)
    Gate.gates = {1: asyncio.Event(), 2: asyncio.Event()}
    source = "name: fenced\nsteps:\n  - id: only\n    uses: gate\n"
    plan = load_workflow(source, "wf.yaml", registry.input_models()).plan
    late = Runner(store, registry, worker_id="host-a:1:aa")
    taker = Runner(store, registry, worker_id="host-b:2:bb")
    try:
        run_id = await late.start(plan, {}, workdir=tmp_path)
        await _until(lambda: [a.status for a in store.attempts(run_id)] == ["running"])
        # the first worker is presumed dead: another records its attempt interrupted
        # and runs the step again, to success
        await taker.resume(plan, run_id, force=True, workdir=tmp_path)
        Gate.gates[2].set()
        final = await asyncio.wait_for(taker.wait(run_id), 30)
        assert final.status == "succeeded"
        # ... then the first worker's attempt finishes after all
        Gate.gates[1].set()
        await _until(lambda: not late._active and not late._finished)
        await asyncio.sleep(0.2)
        attempts = {a.attempt: str(a.status) for a in store.attempts(run_id)}
        assert attempts == {1: "interrupted", 2: "succeeded"}
        snap = store.load_run(run_id)
        assert str(snap.run.status) == "succeeded"
        assert snap.steps[0].attempt == 2
        assert snap.steps[0].outputs == {"attempt": 2}
    finally:
        await late.close()
        await taker.close()
        store.close()
