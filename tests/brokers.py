"""Publishing to the real brokers on 127.0.0.1 for the broker trigger tests, with names
unique to each test and removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Sequence
from typing import Any

import pytest

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
MQTT_URL = "mqtt://127.0.0.1:1883"
KINDS = ("rabbitmq", "redis_stream", "nats", "mqtt")

#: One message: its body (JSON) and the id the publisher gives it.
Item = tuple[dict[str, Any], str]


class Broker:
    """One trigger's broker: the YAML of the trigger and how to publish to it."""

    kind: str
    url: str

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        self.name = f"plait-test-{secrets.token_hex(5)}"

    def trigger(self, **extra: Any) -> dict[str, Any]:
        raise NotImplementedError

    def publish(self, items: Sequence[Item]) -> None:
        asyncio.run(self._publish(items))

    async def _publish(self, items: Sequence[Item]) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        try:
            asyncio.run(self._cleanup())
        except Exception as exc:  # a failed cleanup must not hide the test's result
            print(f"cleanup of {self.name}: {exc}")

    async def _cleanup(self) -> None:
        pass


class RabbitMq(Broker):
    kind, url = "rabbitmq", AMQP_URL

    def trigger(self, **extra: Any) -> dict[str, Any]:
        return {"url": self.url, "queue": self.name, "prefetch": 5, **extra}

    async def _publish(self, items: Sequence[Item]) -> None:
        import aio_pika

        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(self.name, durable=True)
            for body, message_id in items:
                message = aio_pika.Message(
                    json.dumps(body).encode(),
                    message_id=message_id,
                    content_type="application/json",
                    headers={"source": "test"},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await channel.default_exchange.publish(message, routing_key=self.name)

    async def _cleanup(self) -> None:
        import aio_pika

        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel()
            await channel.queue_delete(self.name)


class RedisStream(Broker):
    kind, url = "redis_stream", REDIS_URL

    def trigger(self, **extra: Any) -> dict[str, Any]:
        return {"url": self.url, "stream": self.name, "claim_idle": "2s", **extra}

    async def _publish(self, items: Sequence[Item]) -> None:
        import redis.asyncio as aioredis

        async with aioredis.from_url(self.url) as client:
            for body, message_id in items:
                await client.xadd(self.name, {"body": json.dumps(body), "message_id": message_id})

    async def _cleanup(self) -> None:
        import redis.asyncio as aioredis

        async with aioredis.from_url(self.url) as client:
            await client.delete(self.name)


class Nats(Broker):
    kind, url = "nats", NATS_URL

    def __init__(self, workflow: str) -> None:
        super().__init__(workflow)
        self.stream = self.name.replace("-", "_").upper()
        self.subject = f"plait.test.{self.name}"

    def trigger(self, **extra: Any) -> dict[str, Any]:
        return {
            "url": self.url,
            "subject": self.subject,
            "stream": self.stream,
            "ack_wait": "2s",
            **extra,
        }

    async def _publish(self, items: Sequence[Item]) -> None:
        import nats
        from nats.js.errors import NoStreamResponseError

        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            for body, message_id in items:
                # "id", not Nats-Msg-Id: JetStream would drop a repeated publish itself,
                # and these tests are about Plait's own deduplication
                try:
                    await js.publish(
                        self.subject, json.dumps(body).encode(), headers={"id": message_id}
                    )
                except NoStreamResponseError:  # the consumer has not made the stream yet
                    if not body.get("probe"):
                        raise
        finally:
            await nc.close()

    async def _cleanup(self) -> None:
        import nats
        from nats.js.errors import NotFoundError

        nc = await nats.connect(self.url)
        try:
            with contextlib.suppress(NotFoundError):
                await nc.jetstream().delete_stream(self.stream)
        finally:
            await nc.close()


class Mqtt(Broker):
    kind, url = "mqtt", MQTT_URL

    def __init__(self, workflow: str) -> None:
        super().__init__(workflow)
        self.topic = f"plait/test/{self.name}/#"
        self.client_id = f"{self.name}-consumer"

    def trigger(self, **extra: Any) -> dict[str, Any]:
        return {"url": self.url, "topic": self.topic, "client_id": self.client_id, **extra}

    async def _publish(self, items: Sequence[Item]) -> None:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        async with aiomqtt.Client("127.0.0.1", 1883, protocol=aiomqtt.ProtocolVersion.V5) as client:
            for body, message_id in items:
                props = Properties(PacketTypes.PUBLISH)
                props.UserProperty = [("message_id", message_id)]
                topic = self.topic.replace("#", f"n/{body.get('n', 0)}")
                await client.publish(topic, json.dumps(body), qos=1, properties=props)

    async def _cleanup(self) -> None:
        """End the consumer's persistent session (clean start, no expiry)."""
        import aiomqtt

        async with aiomqtt.Client(
            "127.0.0.1",
            1883,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
        ):
            pass


BROKERS: dict[str, type[Broker]] = {
    "rabbitmq": RabbitMq,
    "redis_stream": RedisStream,
    "nats": Nats,
    "mqtt": Mqtt,
}


def reachable(kind: str) -> None:
    """Fail (or skip with PLAIT_TEST_SKIP_BROKERS=1) when the broker is not listening."""
    import os
    import socket

    port = {"rabbitmq": 5672, "redis_stream": 6379, "nats": 4222, "mqtt": 1883}[kind]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        if os.environ.get("PLAIT_TEST_SKIP_BROKERS") == "1":
            pytest.skip(f"{kind} is not listening on 127.0.0.1:{port}")
        pytest.fail(f"{kind} is not listening on 127.0.0.1:{port}", pytrace=False)


#: Input ``n`` from the message body (-1 for a probe, which has none).
N_INPUT = {"n": "${{ trigger.body.get('n', -1) }}"}


def workflow_yaml(name: str, kind: str, trigger: dict[str, Any]) -> str:
    """A workflow with one broker trigger and a step that does nothing."""
    spec = {
        "name": name,
        "inputs": {"n": {"type": "integer", "default": -1}},
        "triggers": [{kind: trigger}],
        "steps": [
            {"id": "seen", "uses": "sleep", "with": {"duration": 0}},
        ],
    }
    return json.dumps(spec)  # JSON is YAML
