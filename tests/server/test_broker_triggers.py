"""Broker triggers on a live server against the real RabbitMQ, Redis, NATS JetStream and
Mosquitto on 127.0.0.1: a run per message with the message as ``trigger``, one run for a
redelivered or repeated message, a bad message acknowledged and audited, and a
consumer that reconnects after its broker connection is cut."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from plait.store.accounts_audit import AuditFilter
from plait.triggers.brokers import AUDIT_ACTION
from tests.brokers import (
    AMQP_URL,
    BROKERS,
    KINDS,
    N_INPUT,
    REDIS_URL,
    Broker,
    reachable,
    workflow_yaml,
)

from .conftest import LiveServer
from .test_runs import deploy, wait_for

pytestmark = pytest.mark.slow
BY_ID = "${{ trigger.headers.message_id }}"


@pytest.fixture(autouse=True)
def _quick_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start consumers half a second after a deploy, not five."""
    monkeypatch.setattr("plait.triggers.service.TRIGGER_REFRESH", 0.5)


@pytest.fixture(params=KINDS)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    reachable(request.param)
    made = BROKERS[request.param](f"bt-{request.param.replace('_', '-')}")
    try:
        yield made
    finally:
        made.cleanup()


def runs_of(c: httpx.Client, workflow: str) -> list[dict[str, Any]]:
    items = c.get("/api/v1/runs", params={"workflow": workflow, "limit": 500}).json()["items"]
    return [c.get(f"/api/v1/runs/{r['id']}").json() for r in items]


def wait_runs(c: httpx.Client, workflow: str, count: int, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        items = c.get("/api/v1/runs", params={"workflow": workflow, "limit": 500}).json()
        if len(items["items"]) >= count:
            return runs_of(c, workflow)
        assert time.monotonic() < deadline, f"{len(items['items'])} of {count} runs"
        time.sleep(0.2)


def wait_consuming(c: httpx.Client, broker: Broker, timeout: float = 30) -> None:
    """Publish a probe until its run appears: the consumer is connected and set up.
    Probes share one id, so however many arrive they start one run."""
    deadline = time.monotonic() + timeout
    while not c.get("/api/v1/runs", params={"workflow": broker.workflow}).json()["items"]:
        assert time.monotonic() < deadline, "the consumer never started"
        broker.publish([({"probe": True}, "probe")])
        time.sleep(0.5)


def bodies(runs: list[dict[str, Any]]) -> list[Any]:
    return [r["trigger"]["payload"]["body"] for r in runs if "probe" not in str(r["trigger"])]


def test_a_run_per_message_with_the_message_as_trigger(
    broker: Broker, sqlite_server: LiveServer
) -> None:
    # (broker first: it is cleaned up after the server stopped consuming it)
    dedup = {
        "rabbitmq": None,  # the broker's message_id property by default
        "redis_stream": "${{ trigger.headers.message_id }}",
        "nats": "${{ trigger.headers.id }}",
        "mqtt": "${{ trigger.headers.message_id }}",
    }[broker.kind]
    extra: dict[str, Any] = {"inputs": N_INPUT}
    if dedup:
        extra["dedup_key"] = dedup
    deploy(sqlite_server, workflow_yaml(broker.workflow, broker.kind, broker.trigger(**extra)))
    with sqlite_server.client() as c:
        wait_consuming(c, broker)
        broker.publish([({"n": i, "word": f"w{i}"}, f"m{i}") for i in range(5)])
        broker.publish([({"n": 2, "word": "w2"}, "m2")])  # the same message again
        runs = wait_runs(c, broker.workflow, 6)
        time.sleep(1.5)  # a second run for the repeated message would show by now
        runs = runs_of(c, broker.workflow)
    assert len(runs) == 6, [r["trigger"]["payload"]["body"] for r in runs]
    assert sorted(b["n"] for b in bodies(runs)) == [0, 1, 2, 3, 4]
    one = next(r for r in runs if r["inputs"].get("n") == 3)
    payload = one["trigger"]["payload"]
    assert one["trigger"]["type"] == broker.kind
    assert payload["broker"] == broker.kind
    assert payload["body"] == {"n": 3, "word": "w3"}
    assert payload["text"] == '{"n": 3, "word": "w3"}'
    expected = {
        "rabbitmq": {"queue": broker.name, "routing_key": broker.name, "id": "m3"},
        "redis_stream": {"stream": broker.name, "group": f"plait:{broker.workflow}"},
        "nats": {
            "subject": getattr(broker, "subject", ""),
            "stream": getattr(broker, "stream", ""),
        },
        "mqtt": {"topic": broker.name and f"plait/test/{broker.name}/n/3", "retain": False},
    }[broker.kind]
    assert {k: payload[k] for k in expected} == expected
    header = {
        "rabbitmq": "source",
        "redis_stream": "message_id",
        "nats": "id",
        "mqtt": "message_id",
    }
    assert header[broker.kind] in payload["headers"]


def test_a_message_that_cannot_start_a_run_is_acknowledged_and_audited(
    sqlite_server: LiveServer,
) -> None:
    reachable("redis_stream")
    broker = BROKERS["redis_stream"]("bt-rejects")
    trigger = broker.trigger(inputs=N_INPUT, dedup_key=BY_ID)
    try:
        deploy(sqlite_server, workflow_yaml(broker.workflow, broker.kind, trigger))
        with sqlite_server.client() as c:
            wait_consuming(c, broker)
            broker.publish([({"n": "not a number"}, "bad"), ({"n": 7}, "good")])
            runs = wait_runs(c, broker.workflow, 2)
        assert [b["n"] for b in bodies(runs)] == [7]
        accounts = sqlite_server.services.accounts
        page = accounts.audit_entries(AuditFilter(action=AUDIT_ACTION))
        entries = [e for e in page.items if e.details.get("source") == broker.name]
        assert len(entries) == 1
        assert entries[0].resource == f"/api/v1/workflows/{broker.workflow}"
        assert "'n'" in entries[0].details["reason"]

        async def pending() -> int:
            import redis.asyncio as aioredis

            async with aioredis.from_url(REDIS_URL) as client:
                info = await client.xpending(broker.name, f"plait:{broker.workflow}")
                return int(info["pending"])

        assert asyncio.run(pending()) == 0  # both acknowledged, the bad one too
    finally:
        broker.cleanup()


class Cutter:
    """A TCP proxy to Redis whose connections the test can cut (a broker outage)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.open = threading.Event()
        self.open.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", 6379))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open.clear()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_the_consumer_reconnects_after_the_broker_connection_is_cut(
    sqlite_server: LiveServer,
) -> None:
    reachable("redis_stream")
    cutter = Cutter()
    broker = BROKERS["redis_stream"]("bt-outage")
    trigger = broker.trigger(
        url=f"redis://127.0.0.1:{cutter.port}/0", inputs=N_INPUT, dedup_key=BY_ID
    )
    try:
        deploy(sqlite_server, workflow_yaml(broker.workflow, broker.kind, trigger))
        with sqlite_server.client() as c:
            wait_consuming(c, broker)
            broker.publish([({"n": 1}, "a")])
            wait_runs(c, broker.workflow, 2)
            cutter.cut()  # the broker is unreachable: messages wait in the stream
            broker.publish([({"n": 2}, "b"), ({"n": 3}, "c")])
            time.sleep(2)
            cutter.open.set()
            runs = wait_runs(c, broker.workflow, 4, timeout=45)
        assert sorted(b["n"] for b in bodies(runs)) == [1, 2, 3]
        status = sqlite_server.services.extras["triggers"].brokers.status()
        mine = next(s for s in status if s["source"] == broker.name)
        assert mine["connected"]
        assert mine["started"] == 4
    finally:
        cutter.close()
        broker.cleanup()


def test_entries_pending_on_a_dead_consumer_are_claimed(sqlite_server: LiveServer) -> None:
    """A Redis consumer that read entries and died never acknowledges them: another
    (here, the server's) takes them over once they have been idle for claim_idle."""
    reachable("redis_stream")
    broker = BROKERS["redis_stream"]("bt-claim")
    group = f"plait:{broker.workflow}"

    async def orphan_three() -> None:
        import redis.asyncio as aioredis

        async with aioredis.from_url(REDIS_URL) as client:
            await client.xgroup_create(broker.name, group, id="$", mkstream=True)
            for n in range(3):
                await client.xadd(broker.name, {"body": json.dumps({"n": n})})
            await client.xreadgroup(group, "dead-host", {broker.name: ">"}, count=10)

    try:
        asyncio.run(orphan_three())
        trigger = broker.trigger(inputs=N_INPUT, claim_idle="1s")
        deploy(sqlite_server, workflow_yaml(broker.workflow, broker.kind, trigger))
        with sqlite_server.client() as c:
            runs = wait_runs(c, broker.workflow, 3)
        assert sorted(b["n"] for b in bodies(runs)) == [0, 1, 2]

        async def pending() -> int:
            import redis.asyncio as aioredis

            async with aioredis.from_url(REDIS_URL) as client:
                return int((await client.xpending(broker.name, group))["pending"])

        deadline = time.monotonic() + 10
        while asyncio.run(pending()):  # acknowledged right after each run is recorded
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        broker.cleanup()


def test_a_rabbitmq_trigger_through_a_connection_and_an_exchange_binding(
    monkeypatch: pytest.MonkeyPatch, sqlite_server: LiveServer
) -> None:
    import aio_pika

    reachable("rabbitmq")
    broker = BROKERS["rabbitmq"]("bt-exchange")
    exchange = f"{broker.name}-x"
    monkeypatch.setenv(
        "PLAIT_CONNECTION_AMQP_TEST", json.dumps({"type": "rabbitmq", "url": AMQP_URL})
    )

    async def publish(routing_key: str, body: dict[str, Any]) -> None:
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC)
            message = aio_pika.Message(json.dumps(body).encode(), message_id=str(body))
            await ex.publish(message, routing_key=routing_key)

    async def drop_exchange() -> None:
        async with await aio_pika.connect(AMQP_URL) as connection:
            await (await connection.channel()).exchange_delete(exchange)

    trigger = {
        "connection": "amqp-test",
        "queue": broker.name,
        "exchange": exchange,
        "routing_key": "orders.*",
        "inputs": N_INPUT,
    }
    try:
        asyncio.run(publish("nowhere", {}))  # the exchange exists before the trigger
        deploy(sqlite_server, workflow_yaml(broker.workflow, broker.kind, trigger))
        with sqlite_server.client() as c:
            deadline = time.monotonic() + 30
            while not c.get("/api/v1/runs", params={"workflow": broker.workflow}).json()["items"]:
                assert time.monotonic() < deadline, "the consumer never started"
                asyncio.run(publish("orders.probe", {"probe": True}))
                time.sleep(0.5)
            asyncio.run(publish("invoices.new", {"n": 1}))  # not bound: never arrives
            asyncio.run(publish("orders.new", {"n": 2}))
            runs = wait_runs(c, broker.workflow, 2)
            time.sleep(1)
            runs = runs_of(c, broker.workflow)
        assert [b["n"] for b in bodies(runs)] == [2]
        payload = next(r for r in runs if r["inputs"]["n"] == 2)["trigger"]["payload"]
        assert (payload["exchange"], payload["routing_key"]) == (exchange, "orders.new")
    finally:
        asyncio.run(drop_exchange())
        broker.cleanup()


def test_a_repeated_message_starts_one_run_on_every_store(server: LiveServer) -> None:
    reachable("redis_stream")
    broker = BROKERS["redis_stream"]("bt-stores")
    trigger = broker.trigger(inputs=N_INPUT, dedup_key=BY_ID)
    try:
        deploy(server, workflow_yaml(broker.workflow, broker.kind, trigger))
        with server.client() as c:
            wait_consuming(c, broker)
            broker.publish([({"n": 1}, "a"), ({"n": 1}, "a"), ({"n": 2}, "b"), ({"n": 1}, "a")])
            wait_runs(c, broker.workflow, 3)
            time.sleep(1.5)
            runs = runs_of(c, broker.workflow)
        assert sorted(b["n"] for b in bodies(runs)) == [1, 2]
    finally:
        broker.cleanup()


def test_a_run_left_unstarted_by_a_crash_starts_when_its_message_comes_again(
    monkeypatch: pytest.MonkeyPatch, sqlite_server: LiveServer
) -> None:
    """``RunService.start`` writes the run, then its first transition: a crash between
    the two leaves a queued run that nothing else would start. The message was not
    acknowledged, so it comes again; its duplicate run is then started."""
    from plait.runtime.service import RunService
    from plait.triggers.brokers import DUPLICATE, STARTED, Handler, Message, broker_triggers

    trigger = {"url": "redis://127.0.0.1:1/0", "stream": "s", "dedup_key": BY_ID}
    deploy(
        sqlite_server, workflow_yaml("bt-stranded", "redis_stream", {**trigger, "inputs": N_INPUT})
    )
    services = sqlite_server.services
    plan = services.runs.plan(services.server_store.get_workflow("bt-stranded").version_id)
    handler = Handler(services, broker_triggers("bt-stranded", plan)[0])
    message = Message(b'{"n": 5}', headers={"message_id": "x"}, id="1-0", dedup_id="1-0")

    def crash(*args: Any, **kw: Any) -> None:
        raise RuntimeError("killed")

    with monkeypatch.context() as m:
        m.setattr(RunService, "_commit", crash)
        with pytest.raises(RuntimeError):
            handler.handle(message)
    with sqlite_server.client() as c:
        (stranded,) = c.get("/api/v1/runs", params={"workflow": "bt-stranded"}).json()["items"]
        assert stranded["status"] == "queued"
        assert handler.handle(message) == DUPLICATE
        assert wait_for(c, stranded["id"], ("succeeded",))["inputs"] == {"n": 5}
        again = Message(b'{"n": 6}', headers={"message_id": "y"}, id="2-0", dedup_id="2-0")
        assert handler.handle(again) == STARTED
