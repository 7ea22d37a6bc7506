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


async def test_call_waits_in_place_only_for_an_idle_loop_and_only_briefly() -> None:
    """``call`` takes a quick result without a trip through the selector when the loop
    has nothing else to run; a slow function or a busy loop gets the future instead,
    and the loop keeps running other work meanwhile."""
    threads = _Threads(limit=4)
    loop = asyncio.get_running_loop()
    handed: list[str] = []
    original = loop.call_soon_threadsafe

    def spy(callback: object, *args: object, **kw: object) -> object:
        handed.append(getattr(callback, "__name__", "?"))
        return original(callback, *args, **kw)  # type: ignore[arg-type]

    loop.call_soon_threadsafe = spy  # type: ignore[method-assign]
    try:
        _VAR.set("ctx")
        threads.SPIN = 30.0  # however slow this machine: the idle loop waits in place
        assert await threads.call(_VAR.get, {}) == "ctx"
        with pytest.raises(ZeroDivisionError):
            await threads.call(_divide, {"n": 0})
        assert "_settle" not in handed  # both came back in place
        threads.SPIN = 0.0005

        ticks: list[int] = []

        async def ticker() -> None:
            for i in range(20):
                ticks.append(i)
                await asyncio.sleep(0)

        busy = asyncio.create_task(ticker())
        gate = threading.Event()
        slow = asyncio.create_task(threads.call(gate.wait, {"timeout": 5}))
        await asyncio.sleep(0.05)
        assert not slow.done()
        assert len(ticks) == 20  # the loop went on while the slow call ran
        gate.set()
        assert await asyncio.wait_for(slow, 2) is True
        assert "_settle" in handed  # the slow one came back through the loop
        await busy
    finally:
        loop.call_soon_threadsafe = original  # type: ignore[method-assign]
        threads.close()
