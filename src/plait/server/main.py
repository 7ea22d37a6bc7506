"""Running the server parts in one event loop: API (uvicorn), worker, scheduler.

``plait serve`` runs all three; ``plait api``, ``plait worker`` and ``plait scheduler``
run one each. The parts share nothing but the store (and, inside one process, a wake-up
call so a run started through the API starts at once instead of at the next poll).

On PostgreSQL a process also listens for the other processes' notifications
(:mod:`plait.runtime.wakeup`: workers claim at once, log followers read at once), and a
scheduler takes part in the leader election (:mod:`plait.triggers.leader`); both hold
one dedicated connection each and reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from plait.server.compose import work_root
from plait.server.services import Services

if TYPE_CHECKING:
    import uvicorn

    from plait.runtime.wakeup import Wakeups
    from plait.runtime.worker import Worker
    from plait.triggers.leader import Leadership

log = logging.getLogger(__name__)


@dataclass
class Parts:
    api: bool = True
    worker: bool = True
    scheduler: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    concurrency: int = 16
    poll_interval: float = 0.5
    #: what the worker serves: its queues and tags (routing), and how long it lets
    #: running steps finish when stopped before handing them back (the commands pass
    #: --drain-timeout, 30 s by default; embedded servers hand back at once)
    queues: tuple[str, ...] = ("default",)
    tags: dict[str, str] = field(default_factory=dict)
    drain_timeout: float = 0.0


async def serve(
    services: Services,
    parts: Parts,
    *,
    stop: asyncio.Event | None = None,
    started: threading.Event | None = None,
    install_signals: bool = False,
) -> None:
    """Run the chosen parts until ``stop`` is set (or SIGINT/SIGTERM when
    ``install_signals``); then stop them in order: API first, then the worker."""
    stop = stop or asyncio.Event()
    if install_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    #: cluster plumbing that runs until cancelled (listener, leader election)
    background: list[asyncio.Task[None]] = []
    wakeups = _wakeups(services, background) if parts.worker or parts.api else None
    worker = _worker(services, parts) if parts.worker else None
    if worker is not None and wakeups is not None:
        wakeups.on_ready(worker.wake)
    if worker is not None:
        # Routes call the run service from the thread pool: wake the worker through the
        # loop, never by touching its asyncio.Event from another thread.
        loop = asyncio.get_running_loop()

        def wake() -> None:
            loop.call_soon_threadsafe(worker.wake)

        services.runs.wake = wake
        tasks.append(asyncio.create_task(worker.serve(), name="worker"))
    if parts.scheduler:
        from plait.triggers.service import TriggerService

        triggers = TriggerService(services, leadership=_leadership(services, background))
        services.extras["triggers"] = triggers
        tasks.append(asyncio.create_task(triggers.serve(stop), name="scheduler"))
    server = _api(services, parts) if parts.api else None
    if server is not None:
        tasks.append(asyncio.create_task(server.serve(), name="api"))
        await _started(server, tasks)
    if parts.scheduler:  # alert rules, evaluated beside the scheduler (PLAIT_ALERT_INTERVAL)
        from plait.ops import alert_service

        alert_service.start(services, tasks, stop, api_url=_own_url(parts) if server else None)
    if started is not None:
        started.set()
    await _until(stop, tasks)
    if server is not None:
        server.should_exit = True
    if worker is not None:
        worker.stop()
        await worker.close()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=10)
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)


def _wakeups(services: Services, background: list[asyncio.Task[None]]) -> Wakeups | None:
    """The process's listener for notifications from the others (PostgreSQL only)."""
    url = services.store.listen_url
    if url is None:
        return None
    from plait.runtime.wakeup import Wakeups

    wakeups = Wakeups(url, services.store.listen_options, watch=services.store.watch)
    services.extras["wakeups"] = wakeups
    background.append(asyncio.create_task(wakeups.serve(), name="wakeups"))
    return wakeups


def _leadership(services: Services, background: list[asyncio.Task[None]]) -> Leadership | None:
    """The scheduler's part in the leader election (PostgreSQL only; on SQLite the one
    scheduler leads)."""
    url = services.store.listen_url
    if url is None:
        return None
    from plait.triggers.leader import Leadership

    leadership = Leadership(url, services.store.listen_options)
    services.extras["leadership"] = leadership
    background.append(asyncio.create_task(leadership.serve(), name="leadership"))
    return leadership


async def _started(server: uvicorn.Server, tasks: list[asyncio.Task[None]]) -> None:
    """Wait until uvicorn listens (it has no event to wait on, so poll briefly)."""
    for _ in range(3000):
        if server.started or any(t.done() for t in tasks):
            return
        await asyncio.sleep(0.01)


async def _until(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not waiter and task.exception() is not None:
            log.error("%s stopped: %s", task.get_name(), task.exception())
    stop.set()
    waiter.cancel()


def _own_url(parts: Parts) -> str:
    """Where this process's API answers on this host."""
    host = "127.0.0.1" if parts.host in ("", "0.0.0.0", "::") else parts.host
    return f"http://{'[' + host + ']' if ':' in host else host}:{parts.port}"


def _worker(services: Services, parts: Parts) -> Worker:
    from plait.runtime.worker import Worker

    runs = services.runs
    root = work_root(services.settings)
    root.mkdir(parents=True, exist_ok=True)
    return Worker(
        services.store,
        services.registry,
        concurrency=parts.concurrency,
        plans=runs.plan,
        secrets_for=runs.secrets_for,
        workdir_root=root,
        poll_interval=parts.poll_interval,
        queues=parts.queues,
        tags=parts.tags,
        registry_store=services.server_store,
        drain_timeout=parts.drain_timeout,
        services={
            "runs": runs,
            "services": services,
            "resolve_workflow": _resolver(services),
            "connections": services.extras.get("connections"),
        },
    )


def _resolver(services: Services) -> Callable[[str], object]:
    """Name → current version, for ``uses: workflow`` steps."""

    def resolve(name: str) -> object:
        record = services.server_store.get_workflow(name)
        return services.store.get_version(record.version_id)

    return resolve


def _api(services: Services, parts: Parts) -> uvicorn.Server:
    import uvicorn

    from plait.server.app import create_app

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # serve() owns SIGINT/SIGTERM and stops every part in order.
            yield

    config = uvicorn.Config(
        create_app(services),
        host=parts.host,
        port=parts.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        log_config=None,  # uvicorn's records go through our handler (--log-format json)
    )
    return Server(config)
