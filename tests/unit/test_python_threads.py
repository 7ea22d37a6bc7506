"""The worker threads of ``uses: python``: sync functions run off the event loop, a slow
one never holds up another, and results, errors and context reach the awaiting step."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from plait.actions.python import _Threads

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def test_a_blocked_function_does_not_hold_up_the_next() -> None:
    threads = _Threads(limit=4)
    gate = threading.Event()
    try:
        first = threads.run(gate.wait, {"timeout": 5})
        # The second call opens the gate: with a shared thread it would wait 5 s.
        await asyncio.wait_for(threads.run(gate.set, {}), 2)
        assert await asyncio.wait_for(first, 2) is True
    finally:
        gate.set()
        threads.close()


async def test_results_errors_and_context_come_back() -> None:
    threads = _Threads(limit=2)
    _VAR.set("from the step")
    try:
        assert await threads.run(_VAR.get, {}) == "from the step"
        assert await threads.run(threading.current_thread, {}) is not threading.main_thread()
        with pytest.raises(ZeroDivisionError):
            await threads.run(_divide, {"n": 0})
        results = await asyncio.gather(*(threads.run(_divide, {"n": n}) for n in range(1, 9)))
        assert results == [1 / n for n in range(1, 9)]
    finally:
        threads.close()


async def test_runs_again_after_close() -> None:
    threads = _Threads(limit=1)
    assert await threads.run(_divide, {"n": 2}) == 0.5
    threads.close()
    assert await threads.run(_divide, {"n": 4}) == 0.25
    threads.close()


def _divide(n: int) -> float:
    return 1 / n
