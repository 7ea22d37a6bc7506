"""Cluster plumbing on the real PostgreSQL, in-process: LISTEN/NOTIFY wake-ups, log
followers woken across processes, scheduler leadership, and surviving cut connections.

Each "process" here is its own store (its own pool) and its own listener, as separate
``plait`` processes have; what passes between them goes through the database only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from plait.engine.state import RunState, StepState, StepStatus
from plait.errors import StoreUnavailable
from plait.runtime.wakeup import FOLLOW, LOGS, READY, RUNS, Wakeups
from plait.server import sse
from plait.store.base import LogLine
from plait.store.migrate import open_store
from plait.store.sql import SqlStore
from plait.triggers.leader import Leadership
from tests.pg import ADMIN_URL, fresh_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_database("plait_cluster") as made:
        open_store(made).close()  # the schema, once
        yield made


@pytest.fixture
def stores(url: str) -> Iterator[list[SqlStore]]:
    """Stores opened by the test (each like another process); closed at the end."""
    made: list[SqlStore] = []
    yield made
    for store in made:
        store.close()


def _open(url: str, stores: list[SqlStore]) -> SqlStore:
    store = open_store(url)
    stores.append(store)
    return store


@contextlib.asynccontextmanager
async def _started(store: SqlStore) -> AsyncIterator[Wakeups]:
    """A listener for ``store``'s process, connected; stopped at the end."""
    assert store.listen_url is not None
    hub = Wakeups(store.listen_url, store.listen_options, watch=store.watch)
    task = asyncio.create_task(hub.serve())
    try:
        await asyncio.wait_for(hub.connected.wait(), 10)
        yield hub
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _run(run_id: str) -> RunState:
    return RunState(id=run_id, workflow="w", created_at=time.time())


def _steps(*statuses: StepStatus) -> list[StepState]:
    return [StepState(key=f"s{i}", node=f"s{i}", status=s) for i, s in enumerate(statuses)]


async def _until(predicate: Any, within: float = 10.0) -> float:
    """Wait until ``predicate()``; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < within, "timed out"
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def _terminate(url: str, application_name: str | None = None) -> int:
    """``pg_terminate_backend`` every connection to the test database (or only those
    of one application name); returns how many were ended."""
    database = sa.make_url(url).database
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    where = "datname = :db AND pid <> pg_backend_pid()"
    if application_name is not None:
        where += " AND application_name LIKE :app"
    try:
        with admin.connect() as conn:
            rows = conn.execute(
                sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}"),
                {"db": database, "app": f"{application_name}%"},
            ).all()
    finally:
        admin.dispose()
    return len(rows)


# -- wake-ups -----------------------------------------------------------------------
async def test_a_transaction_that_queues_steps_wakes_workers_once(
    url: str, stores: list[SqlStore]
) -> None:
    api, worker = _open(url, stores), _open(url, stores)
    async with _started(worker) as hub:
        woken: list[float] = []
        hub.on_ready(lambda: woken.append(time.monotonic()))
        await asyncio.sleep(0.2)
        woken.clear()
        # three steps queued in one transaction: one notification
        run = _run("r1")
        api.create_run(run, _steps(StepStatus.PENDING, StepStatus.PENDING, StepStatus.PENDING), [])
        started = time.monotonic()
        run.version = 1
        api.commit(run, 0, _steps(StepStatus.QUEUED, StepStatus.QUEUED, StepStatus.QUEUED))
        await _until(lambda: woken)
        assert woken[0] - started < 1.0
        await asyncio.sleep(0.3)
        assert len(woken) == 1
        # a commit that queues nothing (the committer took its successors) sends nothing
        run.version = 2
        api.commit(run, 1, _steps(StepStatus.RUNNING, StepStatus.SUCCEEDED))
        await asyncio.sleep(0.5)
        assert len(woken) == 1
        assert hub.received[RUNS] == hub.received[LOGS] == 0  # nobody follows r1


async def test_a_follower_is_woken_by_another_process_writing_its_run(
    url: str, stores: list[SqlStore]
) -> None:
    api, worker = _open(url, stores), _open(url, stores)
    async with _started(api) as api_hub:
        async with _started(worker):
            worker.create_run(_run("followed"), _steps(StepStatus.PENDING), [])
            worker.create_run(_run("unfollowed"), _steps(StepStatus.PENDING), [])
            with api_hub.watching("followed") as changed:
                api.notify(FOLLOW, "followed")
                await _until(lambda: worker._followed_now("followed"))  # the announcement
                changed.clear()
                worker.append_logs([LogLine("unfollowed", "s0", 1, "stdout", "x", time.time())])
                await asyncio.sleep(0.3)
                assert not changed.is_set()
                worker.append_logs([LogLine("followed", "s0", 1, "stdout", "hello", time.time())])
                took = await _until(changed.is_set, 5)
                assert took < 1.0
                assert api_hub.received[LOGS] == 1
                changed.clear()
                run = worker.load_run("followed").run
                run.version += 1
                worker.commit(run, run.version - 1, _steps(StepStatus.RUNNING))
                await _until(changed.is_set, 5)
                assert api_hub.received[RUNS] == 1


async def test_an_sse_follower_gets_lines_without_waiting_for_its_poll(
    url: str, stores: list[SqlStore]
) -> None:
    """The follower polls only every 30 s here: the line must come by notification."""
    api, worker = _open(url, stores), _open(url, stores)
    async with _started(api) as api_hub:
        async with _started(worker):
            worker.create_run(_run("r-sse"), _steps(StepStatus.QUEUED), [])
            spec = sse.Follow(api, "r-sse", wakeups=api_hub, poll_interval=30.0, fallback_poll=30.0)

            async def connected() -> bool:
                return False

            stream = sse.follow(spec, lambda line: {"line": line.line}, connected)
            first = await asyncio.wait_for(stream.__anext__(), 10)
            assert first.startswith("event: status")
            await _until(lambda: worker._followed_now("r-sse"))
            await asyncio.sleep(0.1)  # the follower waits now
            sent = time.monotonic()
            worker.append_logs([LogLine("r-sse", "s0", 1, "stdout", "live", time.time())])
            message = await asyncio.wait_for(stream.__anext__(), 10)
            assert message.startswith("id: ")
            assert '"line": "live"' in message
            assert time.monotonic() - sent < 2.0
            await stream.aclose()


async def test_a_follower_stream_survives_cut_connections(url: str, stores: list[SqlStore]) -> None:
    api, worker = _open(url, stores), _open(url, stores)
    worker.create_run(_run("r-cut-sse"), _steps(StepStatus.QUEUED), [])
    spec = sse.Follow(api, "r-cut-sse", poll_interval=0.05)

    async def connected() -> bool:
        return False

    stream = sse.follow(spec, lambda line: {"line": line.line}, connected)
    assert (await asyncio.wait_for(stream.__anext__(), 10)).startswith("event: status")
    assert _terminate(url) >= 2  # the follower's pooled connection dies with the rest
    with pytest.raises(StoreUnavailable):
        worker.load_run("r-cut-sse")  # the writer's pool meets the cut, and is renewed
    worker.append_logs([LogLine("r-cut-sse", "s0", 1, "stdout", "after", time.time())])
    message = await asyncio.wait_for(stream.__anext__(), 10)
    assert '"line": "after"' in message
    await stream.aclose()


async def test_the_listener_reconnects_and_wakes_everyone(url: str, stores: list[SqlStore]) -> None:
    store = _open(url, stores)
    async with _started(store) as hub:
        woken: list[float] = []
        hub.on_ready(lambda: woken.append(time.monotonic()))
        assert hub.reconnects == 1
        assert _terminate(url, "plait-listen") == 1
        await _until(lambda: hub.reconnects == 2, 15)
        assert woken  # whatever was sent meanwhile is made up for
        woken.clear()
        run = _run("after")
        store.create_run(run, _steps(StepStatus.QUEUED), [])
        await _until(lambda: woken, 5)
        assert hub.received[READY] >= 1


# -- leadership ---------------------------------------------------------------------
async def _leader_task(leader: Leadership) -> asyncio.Task[None]:
    return asyncio.create_task(leader.serve())


async def test_one_scheduler_leads_and_another_takes_over_when_it_dies(url: str) -> None:
    options: dict[str, Any] = {"connect_timeout": 5}
    plain = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    first = Leadership(plain, options, retry=0.2, check=0.2)
    second = Leadership(plain, options, retry=0.2, check=0.2)
    tasks = {id(first): await _leader_task(first), id(second): await _leader_task(second)}
    try:
        await _until(lambda: first.leading() or second.leading())
        await asyncio.sleep(1.0)
        assert first.leading() != second.leading(), "exactly one leads"
        leader, standby = (first, second) if first.leading() else (second, first)
        # the leader's process dies: its connection closes and the lock is free
        tasks[id(leader)].cancel()
        await asyncio.gather(tasks[id(leader)], return_exceptions=True)
        took = await _until(standby.leading, 10)
        assert took < 3.0
        assert standby.terms == 1
        # its connection is cut: it steps down at once, then leads again on reconnect
        assert _terminate(url, "plait-leader") == 1
        await _until(lambda: not standby.leading(), 5)
        await _until(standby.leading, 15)
        assert standby.terms == 2
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


# -- outages ------------------------------------------------------------------------
def test_a_cut_connection_fails_one_transaction_then_the_pool_reconnects(
    url: str, stores: list[SqlStore]
) -> None:
    store = _open(url, stores)
    store.create_run(_run("r-cut"), _steps(StepStatus.QUEUED), [])
    held = [store.engine.raw_connection() for _ in range(3)]  # three pooled connections
    for proxy in held:
        proxy.close()
    assert _terminate(url) >= 3
    with pytest.raises(StoreUnavailable):
        store.load_run("r-cut")
    # the other pooled connections were as dead: all were replaced, none fails again
    for _ in range(5):
        assert store.load_run("r-cut").run.id == "r-cut"
    assert store.claim("w", time.time(), time.time() + 30, 5)  # writes work too
