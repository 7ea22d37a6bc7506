"""The publish actions against the real RabbitMQ, Redis, NATS (with JetStream) and
Mosquitto on 127.0.0.1: each message is consumed back by the test and compared."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from plait.actions.base import Action, ActionContext, ActionFailed
from plait.actions.brokers import (
    MqttConfig,
    MqttConnection,
    NatsConfig,
    NatsConnection,
    RabbitMqConfig,
    RabbitMqConnection,
    RedisConfig,
    RedisConnection,
)
from plait.actions.connections import Connection
from plait.actions.publish import (
    MqttPublish,
    MqttPublishInput,
    NatsPublish,
    NatsPublishInput,
    RabbitMqPublish,
    RabbitMqPublishInput,
    RedisPublish,
    RedisPublishInput,
)
from plait.errors import PlaitError
from plait.local import LocalSession
from plait.model import load_workflow
from plait.settings import Settings

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
REDIS = "redis://127.0.0.1:6379/0"
NATS = "nats://127.0.0.1:4222"
MQTT = "mqtt://127.0.0.1:1883"
CONNECTIONS = {
    "rabbit": Connection("rabbit", "rabbitmq", {"url": AMQP}, (AMQP,)),
    "cache": Connection("cache", "redis", {"url": REDIS}, (REDIS,)),
    "bus": Connection("bus", "nats", {"url": NATS}, (NATS,)),
    "things": Connection("things", "mqtt", {"url": MQTT}, (MQTT,)),
}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_ctx(tmp_path: Path, step: str = "s") -> ActionContext:
    def resolve(name: str) -> Connection:
        if name not in CONNECTIONS:
            raise PlaitError(f"no connection named {name!r}")
        return CONNECTIONS[name]

    return ActionContext(
        run_id="run1",
        workflow="wf",
        step=step,
        attempt=1,
        workdir=tmp_path,
        env={},
        log=lambda stream, line: None,
        mask=lambda text: text,
        connections=resolve,
    )


@pytest.fixture
def ctx(tmp_path: Path) -> ActionContext:
    return make_ctx(tmp_path)


async def publish(action: Action, ctx: ActionContext, **kw: Any) -> dict[str, Any]:
    result = await action.execute(ctx, action.Input.model_validate(kw))
    return result.outputs


# -- RabbitMQ ----------------------------------------------------------------------------
@pytest.fixture
async def rabbit() -> AsyncIterator[RabbitMqPublish]:
    action = RabbitMqPublish()
    yield action
    await action.aclose()


@pytest.fixture
async def amqp_channel() -> AsyncIterator[Any]:
    import aio_pika

    connection = await aio_pika.connect(AMQP)
    channel = await connection.channel()
    yield channel
    await connection.close()


async def _get(queue: Any) -> Any:
    for _ in range(100):
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError("no message arrived")


async def test_rabbitmq_exchange_json_headers_properties(
    rabbit: RabbitMqPublish, ctx: ActionContext, amqp_channel: Any
) -> None:
    import aio_pika

    exchange = await amqp_channel.declare_exchange(
        _unique("plait-x"), aio_pika.ExchangeType.TOPIC, auto_delete=True
    )
    queue = await amqp_channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "orders.*")
    out = await publish(
        rabbit, ctx, connection="rabbit", exchange=exchange.name, routing_key="orders.new",
        body={"id": 7, "items": ["a", "ü"]}, headers={"x-tenant": "acme", "x-n": 3},
        properties={"correlation_id": "c-1", "priority": 5, "expiration": "1m"},
    )  # fmt: skip
    assert out == {
        "exchange": exchange.name, "routing_key": "orders.new", "message_id": "run1:s",
        "size": len(json.dumps({"id": 7, "items": ["a", "ü"]}, ensure_ascii=False,
                               separators=(",", ":")).encode()),
        "confirmed": True,
    }  # fmt: skip
    message = await _get(queue)
    assert json.loads(message.body) == {"id": 7, "items": ["a", "ü"]}
    assert message.headers == {"x-tenant": "acme", "x-n": 3}
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (message.message_id, message.correlation_id, message.priority) == ("run1:s", "c-1", 5)
    assert message.expiration == 60


async def test_rabbitmq_default_exchange_text(
    rabbit: RabbitMqPublish, ctx: ActionContext, amqp_channel: Any
) -> None:
    queue = await amqp_channel.declare_queue(exclusive=True)
    out = await publish(
        rabbit, ctx, url=AMQP, routing_key=queue.name, body="plain text",
        persistent=False, properties={"message_id": "m-9"},
    )  # fmt: skip
    assert out["message_id"] == "m-9"
    message = await _get(queue)
    assert (message.body, message.content_type, message.message_id) == (b"plain text", None, "m-9")
    assert message.delivery_mode == 1
    # the connection is kept for the next step, and a second publish reuses it
    await publish(rabbit, ctx, url=AMQP, routing_key=queue.name, body="again")
    assert (await _get(queue)).body == b"again"
    assert len(rabbit._clients._items) == 1
    # a kept connection that the broker closed is opened again
    await next(iter(rabbit._clients._items.values())).close()
    await publish(rabbit, ctx, url=AMQP, routing_key=queue.name, body="reopened")
    assert (await _get(queue)).body == b"reopened"


async def test_rabbitmq_failures(rabbit: RabbitMqPublish, ctx: ActionContext) -> None:
    cases = [
        ({"exchange": "no-such-exchange-plait"}, "no exchange 'no-such-exchange-plait'", False),
        (
            {"routing_key": _unique("nobody"), "mandatory": True},
            "no queue took the message (mandatory): NO_ROUTE",
            True,
        ),
        ({"url": "amqp://guest:wrong@127.0.0.1:5672/"}, "login refused", False),
        ({"url": f"amqp://guest:guest@127.0.0.1:{_dead_port()}/"}, "cannot connect", True),
        ({"connection": "cache"}, "is of type 'redis'; rabbitmq.publish needs a rabbitmq", False),
        ({"url": "http://127.0.0.1/"}, "url: url must start with amqp:// or amqps://", False),
    ]
    for kw, message, retryable in cases:
        kw = {"connection": "rabbit", **kw} if "url" not in kw else kw
        with pytest.raises(ActionFailed, match=re.escape(message)) as e:
            await publish(rabbit, ctx, body="x", **kw)
        assert e.value.retryable is retryable, message
        assert "guest:" not in str(e.value)  # the URL's password is never quoted
    with pytest.raises(ValidationError, match="give connection or url"):
        RabbitMqPublishInput.model_validate({"body": "x"})


async def test_rabbitmq_connection_test() -> None:
    found = await RabbitMqConnection().test(RabbitMqConfig.model_validate({"url": AMQP}))
    assert found.startswith("RabbitMQ 3.")
    assert found.endswith("at 127.0.0.1:5672 (vhost /)")
    bad = RabbitMqConfig.model_validate({"url": "amqp://guest:no@127.0.0.1:5672/"})
    with pytest.raises(PlaitError, match="login refused"):
        await RabbitMqConnection().test(bad)
    assert RabbitMqConnection.secret_fields() == ["url"]


# -- Redis -------------------------------------------------------------------------------
@pytest.fixture
async def redis_action() -> AsyncIterator[RedisPublish]:
    action = RedisPublish()
    yield action
    await action.aclose()


@pytest.fixture
async def redis_client() -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    yield client
    await client.aclose()


async def test_redis_stream_entry(
    redis_action: RedisPublish, ctx: ActionContext, redis_client: Any
) -> None:
    stream = _unique("plait-stream")
    try:
        out = await publish(
            redis_action, ctx, connection="cache", stream=stream,
            fields={"kind": "order", "n": 3, "tags": ["a"]}, body={"id": 1}, maxlen=100,
        )  # fmt: skip
        assert out["stream"] == stream
        entries = await redis_client.xrange(stream)
        assert [(i.decode(), f) for i, f in entries] == [
            (out["id"], {b"kind": b"order", b"n": b"3", b"tags": b'["a"]', b"body": b'{"id":1}'})
        ]
        for i in range(5):
            await publish(
                redis_action, ctx, connection="cache", stream=stream, body=str(i),
                maxlen=2, approximate=False,
            )  # fmt: skip
        assert await redis_client.xlen(stream) == 2
    finally:
        await redis_client.delete(stream)


async def test_redis_channel(
    redis_action: RedisPublish, ctx: ActionContext, redis_client: Any
) -> None:
    channel = _unique("plait-chan")
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    out = await publish(redis_action, ctx, url=REDIS, channel=channel, body={"hi": "there"})
    assert out == {"channel": channel, "receivers": 1, "size": len(b'{"hi":"there"}')}
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert message is not None
    assert json.loads(message["data"]) == {"hi": "there"}
    await pubsub.aclose()
    nobody = await publish(redis_action, ctx, url=REDIS, channel=_unique("empty"), body="x")
    assert nobody["receivers"] == 0


async def test_redis_failures(
    redis_action: RedisPublish, ctx: ActionContext, redis_client: Any
) -> None:
    key = _unique("plait-string")
    await redis_client.set(key, "not a stream")
    try:
        with pytest.raises(ActionFailed, match="the server refused: WRONGTYPE") as e:
            await publish(redis_action, ctx, connection="cache", stream=key, body="x")
        assert e.value.retryable is False
    finally:
        await redis_client.delete(key)
    with pytest.raises(ActionFailed, match="login refused") as e:
        await publish(
            redis_action, ctx, url="redis://nobody:pw@127.0.0.1:6379/0", channel="c", body="x"
        )
    assert e.value.retryable is False
    dead = f"redis://127.0.0.1:{_dead_port()}/0"
    with pytest.raises(ActionFailed, match=r"redis.publish at 127.0.0.1:\d+: cannot connect") as e:
        await publish(redis_action, ctx, url=dead, channel="c", body="x")
    assert e.value.retryable is True
    for kw, message in [
        ({"channel": "c"}, "channel needs body"),
        ({"stream": "s"}, "stream needs fields or body"),
        ({"stream": "s", "channel": "c", "body": "x"}, "give stream or channel"),
        ({"channel": "c", "body": "x", "maxlen": 3}, "channel does not take maxlen"),
    ]:
        with pytest.raises(ValidationError, match=message):
            RedisPublishInput.model_validate({"url": REDIS, **kw})


async def test_redis_connection_test() -> None:
    found = await RedisConnection().test(RedisConfig.model_validate({"url": REDIS}))
    assert found.startswith("Redis ")
    assert found.endswith(" at 127.0.0.1:6379")


# -- NATS --------------------------------------------------------------------------------
@pytest.fixture
async def nats_action() -> AsyncIterator[NatsPublish]:
    action = NatsPublish()
    yield action
    await action.aclose()


@pytest.fixture
async def nats_client() -> AsyncIterator[Any]:
    import nats

    client = await nats.connect(NATS)
    yield client
    await client.close()


async def test_nats_core_publish_with_headers(
    nats_action: NatsPublish, ctx: ActionContext, nats_client: Any
) -> None:
    subject = _unique("plait.events").replace("-", ".")
    sub = await nats_client.subscribe(subject)
    await nats_client.flush()
    out = await publish(
        nats_action, ctx, connection="bus", subject=subject, body={"ok": True},
        headers={"X-Trace": "t-1"},
    )  # fmt: skip
    assert out == {"subject": subject, "size": len(b'{"ok":true}')}
    message = await sub.next_msg(timeout=5)
    assert json.loads(message.data) == {"ok": True}
    assert message.headers == {"X-Trace": "t-1"}


async def test_nats_jetstream_ack_and_dedup(
    nats_action: NatsPublish, tmp_path: Path, nats_client: Any
) -> None:
    js = nats_client.jetstream()
    stream = _unique("PLAIT").replace("-", "_")
    subject = f"{stream.lower()}.orders"
    await js.add_stream(name=stream, subjects=[subject])
    try:
        ctx = make_ctx(tmp_path, step="publish")
        out = await publish(
            nats_action, ctx, url=NATS, subject=subject, body="order 1", jetstream=True,
            stream=stream, headers={"X-Kind": "order"},
        )  # fmt: skip
        assert out == {
            "subject": subject, "size": 7, "stream": stream, "seq": 1, "duplicate": False,
            "msg_id": "run1:publish",
        }  # fmt: skip
        # the same step again (a retried attempt): JetStream keeps one copy
        again = await publish(
            nats_action, ctx, url=NATS, subject=subject, body="order 1", jetstream=True
        )
        assert (again["seq"], again["duplicate"]) == (1, True)
        other = await publish(
            nats_action, make_ctx(tmp_path, step="other"), url=NATS, subject=subject,
            body="order 2", jetstream=True,
        )  # fmt: skip
        assert other["seq"] == 2
        with pytest.raises(ActionFailed, match="JetStream refused: expected stream") as e:
            await publish(
                nats_action, ctx, url=NATS, subject=subject, body="x", jetstream=True,
                stream="ANOTHER", msg_id="m-3",
            )  # fmt: skip
        assert e.value.retryable is False
        stored = await js.get_msg(stream, 1)
        assert stored.data == b"order 1"
        assert stored.headers is not None
        assert stored.headers["X-Kind"] == "order"
        assert stored.headers["Nats-Msg-Id"] == "run1:publish"
    finally:
        await js.delete_stream(stream)


async def test_nats_failures(nats_action: NatsPublish, ctx: ActionContext) -> None:
    with pytest.raises(ActionFailed, match="no JetStream stream takes this subject") as e:
        await publish(
            nats_action, ctx, url=NATS, subject=_unique("nostream").replace("-", "."),
            body="x", jetstream=True,
        )  # fmt: skip
    assert e.value.retryable is False
    dead = f"nats://127.0.0.1:{_dead_port()}"
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ActionFailed, match=r"nats.publish at 127.0.0.1:\d+: cannot connect") as e:
        await publish(nats_action, ctx, url=dead, subject="a.b", body="x")
    assert e.value.retryable is True
    assert loop.time() - started < 10
    for kw, message in [
        ({"subject": "a.*"}, "has a wildcard"),
        ({"subject": "a", "stream": "S"}, "stream need jetstream: true"),
    ]:
        with pytest.raises(ValidationError, match=message):
            NatsPublishInput.model_validate({"url": NATS, **kw})


async def test_nats_connection_test() -> None:
    found = await NatsConnection().test(NatsConfig.model_validate({"url": NATS}))
    assert found.startswith("NATS 2.")
    assert found.endswith("at 127.0.0.1:4222 (JetStream enabled)")


# -- MQTT --------------------------------------------------------------------------------
@pytest.fixture
async def mqtt_action() -> AsyncIterator[MqttPublish]:
    action = MqttPublish()
    yield action
    await action.aclose()


async def _receive(topic: str, publish_it: Any, qos: int = 2) -> Any:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", 1883, identifier=_unique("plait-test")) as client:
        await client.subscribe(topic, qos=qos)
        await publish_it()
        async with asyncio.timeout(10):
            async for message in client.messages:
                return message


async def test_mqtt_qos_and_payload(mqtt_action: MqttPublish, ctx: ActionContext) -> None:
    topic = f"plait/{_unique('t')}/temp"

    async def send() -> None:
        out = await publish(
            mqtt_action, ctx, connection="things", topic=topic, payload={"c": 21.5}, qos=2
        )
        assert out == {"topic": topic, "qos": 2, "retain": False, "size": len(b'{"c":21.5}')}

    message = await _receive(topic, send)
    assert json.loads(message.payload) == {"c": 21.5}
    assert message.qos == 2
    assert str(message.topic) == topic

    async def send_qos0() -> None:
        await publish(mqtt_action, ctx, url=MQTT, topic=topic, payload="fire and forget", qos=0)

    message = await _receive(topic, send_qos0)
    assert (message.payload, message.qos) == (b"fire and forget", 0)


async def test_mqtt_retained(mqtt_action: MqttPublish, ctx: ActionContext) -> None:
    topic = f"plait/{_unique('r')}/state"
    await publish(mqtt_action, ctx, url=MQTT, topic=topic, payload="on", qos=1, retain=True)

    async def nothing() -> None:
        pass

    message = await _receive(topic, nothing, qos=1)
    assert (message.payload, message.retain) == (b"on", True)
    await publish(mqtt_action, ctx, url=MQTT, topic=topic, payload="", retain=True)  # clear it


async def test_mqtt_failures(mqtt_action: MqttPublish, ctx: ActionContext) -> None:
    dead = f"mqtt://127.0.0.1:{_dead_port()}"
    with pytest.raises(ActionFailed, match=r"mqtt.publish at 127.0.0.1:\d+: cannot connect") as e:
        await publish(mqtt_action, ctx, url=dead, topic="a/b", payload="x")
    assert e.value.retryable is True
    for kw, message in [
        ({"topic": "a/#"}, "has a wildcard"),
        ({"topic": "a", "qos": 3}, "Input should be 0, 1 or 2"),
    ]:
        with pytest.raises(ValidationError, match=message):
            MqttPublishInput.model_validate({"url": MQTT, **kw})
    with pytest.raises(ValueError, match="mqtt:// or mqtts://"):
        MqttConfig.model_validate({"url": "tcp://127.0.0.1"})


async def test_mqtt_connection_test() -> None:
    found = await MqttConnection().test(MqttConfig.model_validate({"url": MQTT}))
    assert found.endswith("at 127.0.0.1:1883")


# -- through the runtime -----------------------------------------------------------------
WORKFLOW = """
name: fan-out-events
inputs:
  order: {type: integer, default: 42}
steps:
  - id: rabbit
    uses: rabbitmq.publish
    with:
      connection: rabbit
      routing_key: "${{ env.QUEUE }}"
      body: {order: "${{ inputs.order }}"}
  - id: stream
    uses: redis.publish
    with:
      url: "${{ secrets.REDIS_URL }}"
      stream: "${{ env.STREAM }}"
      fields: {order: "${{ inputs.order }}"}
  - id: nats
    uses: nats.publish
    with: {connection: bus, subject: "${{ env.SUBJECT }}", body: "order ${{ inputs.order }}"}
  - id: mqtt
    uses: mqtt.publish
    with: {connection: things, topic: "${{ env.TOPIC }}", payload: "order ${{ inputs.order }}"}
  - id: nowhere
    uses: redis.publish
    with: {url: "redis://127.0.0.1:${{ env.DEAD_PORT }}/0", channel: c, body: x}
    on_error: continue
outputs:
  stream_id: "${{ steps.stream.outputs.id }}"
"""


async def test_through_the_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amqp_channel: Any, redis_client: Any,
    nats_client: Any,
) -> None:  # fmt: skip
    import aiomqtt

    queue = await amqp_channel.declare_queue(exclusive=True)
    names = {
        "QUEUE": queue.name,
        "STREAM": _unique("plait-wf"),
        "SUBJECT": _unique("plait.wf").replace("-", "."),
        "TOPIC": f"plait/{_unique('wf')}",
        "DEAD_PORT": str(_dead_port()),
    }
    for name, conn in CONNECTIONS.items():
        monkeypatch.setenv(
            f"PLAIT_CONNECTION_{name.upper()}", json.dumps({"type": conn.type, **conn.config})
        )
    monkeypatch.setenv("PLAIT_SECRET_REDIS_URL", REDIS)
    source = WORKFLOW.replace("steps:", "env:\n" + "".join(
        f"  {k}: {v}\n" for k, v in names.items()) + "steps:", 1)  # fmt: skip
    sub = await nats_client.subscribe(names["SUBJECT"])
    await nats_client.flush()
    home = tmp_path / "home"
    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    plan = load_workflow(source, "wf.yaml", session.registry.input_models()).plan
    try:
        async with aiomqtt.Client("127.0.0.1", 1883) as mqtt:
            await mqtt.subscribe(names["TOPIC"], qos=1)
            result = await session.run(plan, source, {"order": 42}, workdir=tmp_path)
            assert result.success, result
            async with asyncio.timeout(10):
                mqtt_message = await anext(aiter(mqtt.messages))
    finally:
        await session.close()
    try:
        assert result.success, result
        assert {s.id: s.status for s in result.steps} == {
            "rabbit": "succeeded", "stream": "succeeded", "nats": "succeeded",
            "mqtt": "succeeded", "nowhere": "failed",
        }  # fmt: skip
        assert "redis.publish at 127.0.0.1:" in (result.step("nowhere").error or "")
        assert json.loads((await _get(queue)).body) == {"order": 42}
        entries = await redis_client.xrange(names["STREAM"])
        assert entries[0][0].decode() == result.outputs["stream_id"]
        assert entries[0][1] == {b"order": b"42"}
        assert (await sub.next_msg(timeout=5)).data == b"order 42"
        assert mqtt_message.payload == b"order 42"
    finally:
        await redis_client.delete(names["STREAM"])
