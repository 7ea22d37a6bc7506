"""``uses: python`` — call a Python function: ``function: "pkg.module:func"``.

The run's work directory is put on ``sys.path`` so that a workflow's own modules import
next to its file. ``sys.path`` and ``sys.modules`` are process-wide, so two workflows
with modules of the same name in different directories share whichever imported first:
give workflow modules distinct names (or package them).

Async functions are awaited on the event loop; sync ones run in a worker thread so a
slow function does not stall other steps. A sync function cannot be interrupted: on
timeout or cancel the step ends at once but the thread runs to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

from pydantic import Field

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.fastjson import dumps_strict


class PythonInput(ActionInput):
    function: str = Field(
        description="What to call: `pkg.module:func` (or `pkg.module.func`; "
        "`pkg.module:Class.method` for an attribute path)."
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the function."
    )


class PythonAction(Action):
    name = "python"
    version = "1"
    description = (
        "Call a Python function with keyword arguments; a dict it returns becomes the "
        "outputs, another value the `result` output."
    )
    Input = PythonInput

    def __init__(self) -> None:
        # Resolved functions and their signatures, by (spec, workdir): importing and
        # inspecting on every step would cost more than a no-op step itself.
        self._resolved: dict[tuple[str, str], tuple[Callable[..., Any], Any]] = {}
        self._threads = _Threads()

    async def aclose(self) -> None:
        self._threads.close()

    async def execute(self, ctx: ActionContext, input: PythonInput) -> ActionResult:
        key = (input.function, str(ctx.workdir))
        found = self._resolved.get(key)
        if found is None:
            if _split(input.function)[0] in sys.modules:
                func = resolve_function(input.function, str(ctx.workdir))
            else:  # a first import may do I/O: keep it off the event loop
                func = await asyncio.to_thread(resolve_function, *key)
            found = self._resolved[key] = (func, _signature(func))
        func, signature = found
        if signature is not None:
            try:
                signature.bind(**input.args)
            except TypeError as exc:
                raise ActionFailed(f"{input.function}: {exc}", retryable=False) from None
        value = await _call(func, input.args, self._threads)
        return ActionResult(outputs=_outputs(input.function, value))


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except ValueError:  # builtins without a signature: let the call decide
        return None


def resolve_function(spec: str, workdir: str | None = None) -> Callable[..., Any]:
    """Import ``spec`` (``module:attr.path`` or ``module.attr``); ActionFailed (not
    retryable) naming what is missing when it cannot."""
    module_name, attr_path = _split(spec)
    if workdir and workdir not in sys.path:
        sys.path.insert(0, workdir)
    if module_name not in sys.modules:
        # Files written since the last import are found only after this.
        importlib.invalidate_caches()
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ActionFailed(f"{spec}: no module named {exc.name!r}", retryable=False) from exc
    except Exception as exc:  # the module itself raised (or has a syntax error)
        raise ActionFailed(
            f"{spec}: importing {module_name} failed: {type(exc).__name__}: {exc}",
            retryable=False,
        ) from exc
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ActionFailed(
                f"{spec}: {module_name} has no attribute {attr_path!r}", retryable=False
            ) from None
    if not callable(target):
        raise ActionFailed(f"{spec}: {type(target).__name__} is not callable", retryable=False)
    return target  # type: ignore[no-any-return]


def _split(spec: str) -> tuple[str, str]:
    spec = spec.strip()
    if ":" in spec:
        module_name, _, attr_path = spec.partition(":")
    else:
        module_name, _, attr_path = spec.rpartition(".")
    if not module_name or not attr_path:
        raise ActionFailed(
            f"function {spec!r}: write it as package.module:function", retryable=False
        )
    return module_name, attr_path


class _Job:
    """One call handed to a worker thread, and how its result gets back.

    The event loop first waits for it briefly *if it has nothing else to run* (see
    :meth:`_Threads.call`): a no-op function's result is then back in a few
    microseconds, without the self-pipe write, the loop's ``epoll`` wake-up and the
    callback that ``call_soon_threadsafe`` costs (about half of a sequential no-op
    step's overhead before). Otherwise the result comes as an asyncio future.
    """

    __slots__ = ("done", "exc", "future", "gate", "lock", "loop", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: held until the result is in (a bare lock: an Event costs 40 times more to make)
        self.gate = threading.Lock()
        self.gate.acquire()
        self.done = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[Any] | None = None
        self.value: Any = None
        self.exc: BaseException | None = None

    def finish(self, value: Any, exc: BaseException | None) -> None:
        """In the worker thread: keep the result; hand it to the loop if one waits."""
        with self.lock:
            self.value, self.exc = value, exc
            self.done = True
            loop, future = self.loop, self.future
        self.gate.release()
        if loop is not None and future is not None:
            _deliver(loop, future, value, exc)

    def wait_here(self, timeout: float) -> bool:
        """Block this thread until the result is in, ``timeout`` at most (once)."""
        return self.gate.acquire(timeout=timeout)

    def result(self) -> Any:
        if self.exc is not None:
            raise self.exc
        return self.value

    def wait(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """An asyncio future of the result (already settled if it is in)."""
        future = loop.create_future()
        with self.lock:
            if not self.done:
                self.loop, self.future = loop, future
                return future
        _settle(future, self.value, self.exc)
        return future


class _Threads:
    """Worker threads for sync functions: ``asyncio.to_thread`` without the default
    executor's machinery (a concurrent Future with its condition variable, chained to
    an asyncio one).

    Threads start when none is idle, up to the default executor's limit; they are
    daemons, so a sync function still running when the process exits does not keep it
    alive (a cancelled step has already ended).
    """

    #: how long an idle event loop waits for a result before it goes back to its
    #: selector (and is woken by the result instead)
    SPIN = 0.0005

    def __init__(self, limit: int = min(32, (os.cpu_count() or 1) + 4)) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._count = 0
        self._queued = 0
        self._limit = limit

    def submit(self, func: Callable[..., Any], kwargs: dict[str, Any]) -> _Job:
        job = _Job()
        with self._lock:  # an idle thread is reserved here, so two calls never share one
            if self._idle:
                self._idle -= 1
                spawn = False
            else:
                spawn = self._count < self._limit
                self._count += spawn
                self._queued += not spawn  # the next thread to finish takes it
            jobs = self._queue
        if spawn:
            threading.Thread(
                target=self._work, args=(jobs,), name="plait-python", daemon=True
            ).start()
        jobs.put((job, contextvars.copy_context(), func, kwargs))
        return job

    async def call(self, func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """Run ``func(**kwargs)`` in a worker thread and return its result."""
        job = self.submit(func, kwargs)
        loop = asyncio.get_running_loop()
        # Wait in place only when the loop has nothing else ready to run: then nothing
        # is held up but I/O callbacks, for SPIN at most. (``_ready`` is the run queue
        # of asyncio's own loops; on another loop this is never done.)
        if not getattr(loop, "_ready", True) and job.wait_here(self.SPIN):
            return job.result()
        return await job.wait(loop)

    def run(self, func: Callable[..., Any], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        """The result as an asyncio future, without waiting in place."""
        return self.submit(func, kwargs).wait(asyncio.get_running_loop())

    def close(self) -> None:
        """Let every thread end after the calls already handed to it."""
        with self._lock:
            jobs, count = self._queue, self._count
            self._queue, self._count, self._idle, self._queued = queue.SimpleQueue(), 0, 0, 0
        for _ in range(count):
            jobs.put(None)

    def _work(self, jobs: queue.SimpleQueue[Any]) -> None:
        while True:
            item = jobs.get()
            if item is None:
                return
            job, ctx, func, kwargs = item
            try:
                value = ctx.run(func, **kwargs)
            except BaseException as exc:  # handed to the awaiting step, not lost here
                job.finish(None, exc)
            else:
                job.finish(value, None)
            del item, job, ctx, func, kwargs
            with self._lock:
                if jobs is not self._queue:  # closed meanwhile: its sentinel follows
                    continue
                if self._queued:
                    self._queued -= 1
                else:
                    self._idle += 1


def _deliver(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, exc: Any
) -> None:
    # RuntimeError: the loop has closed, so nobody waits for this result any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, value, exc)


def _settle(future: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if future.done():  # the step was cancelled or timed out meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


async def _call(func: Callable[..., Any], args: dict[str, Any], threads: _Threads) -> Any:
    try:
        if inspect.iscoroutinefunction(func):
            return await func(**args)
        value = await threads.call(func, args)
        if inspect.isawaitable(value):  # a sync wrapper that returned a coroutine
            value = await value
        return value
    except ActionFailed:
        raise
    except Exception as exc:
        raise ActionFailed(f"{type(exc).__name__}: {exc}") from exc


def _outputs(spec: str, value: Any) -> dict[str, Any]:
    if value is None:
        outputs: dict[str, Any] = {}
    elif isinstance(value, dict):
        outputs = value
        if not all(isinstance(key, str) for key in outputs):
            raise ActionFailed(f"{spec} returned a dict whose keys are not all strings")
    else:
        outputs = {"result": value}
    try:
        # Outputs are stored as JSON: a value that cannot be is an error here, where
        # the user sees which function returned it, not later in the store.
        dumps_strict(outputs)
    except (TypeError, ValueError) as exc:
        raise ActionFailed(
            f"{spec} returned a value that is not JSON-serialisable: {exc}", retryable=False
        ) from None
    return outputs
