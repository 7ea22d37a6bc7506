"""Publishing to message brokers — ``rabbitmq.publish``, ``redis.publish``,
``nats.publish`` and ``mqtt.publish``.

A step names a connection (types in :mod:`plait.actions.brokers`) or gives ``url:``
inline (a URL holding a password should come from ``${{ secrets.X }}``, which the run's
logs mask). A body that is a string is sent as its UTF-8 bytes; anything else (a
mapping, a list, a number) is sent as JSON.

The action instance keeps its RabbitMQ, Redis and NATS connections, one per URL, for
the steps that follow (opening one costs more than publishing) and closes them in
``aclose``; a connection found closed is opened again, and one that failed is dropped.
MQTT connects per step: its client does not reconnect, and its handshake is one round
trip.

A retried step may publish twice (at-least-once). To let consumers tell, RabbitMQ's
``message_id`` and JetStream's ``Nats-Msg-Id`` default to ``<run id>:<step>``, the same
for every attempt of a step: JetStream drops the repeat within its duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.actions.brokers import (
    BrokerConfig,
    MqttConfig,
    NatsConfig,
    RabbitMqConfig,
    RedisConfig,
    amqp_connect,
    as_text,
    failure,
    mqtt_client,
    nats_connect,
    redis_client,
)
from plait.model.durations import parse_duration

T = TypeVar("T")
C = TypeVar("C", bound=BrokerConfig)


# -- shared input and helpers ------------------------------------------------------------
class BrokerInput(ActionInput):
    connection: str | None = Field(None, description="A connection of the broker's type.")
    url: str | None = Field(
        None, description="The broker URL inline (a password in it from ${{ secrets.X }})."
    )

    @model_validator(mode="after")
    def _one_target(self) -> BrokerInput:
        if (self.connection is None) == (self.url is None):
            raise ValueError("give connection or url (one of them)")
        return self


def _config(ctx: ActionContext, input: BrokerInput, kind: str, model: type[C]) -> C:
    """The broker's settings: from the named connection or the inline URL."""
    if input.connection is not None:
        conn = ctx.connection(input.connection)
        if conn.type != kind:
            raise ActionFailed(
                f"connection {conn.name!r} is of type {conn.type!r}; {kind}.publish needs a "
                f"{kind} connection",
                retryable=False,
            )
        data, what = dict(conn.config), f"connection {conn.name!r}"
    else:
        data, what = {"url": input.url}, "url"
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ActionFailed(f"{kind}.publish: {what}: {problems}", retryable=False) from None


def _encode(body: Any) -> tuple[bytes, bool]:
    """The bytes to send, and whether they are JSON."""
    if isinstance(body, bytes):
        return body, False
    if isinstance(body, str):
        return body.encode("utf-8"), False
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), True


def _time_left(ctx: ActionContext, limit: float) -> float:
    """``limit`` seconds, or less when the step's deadline is nearer."""
    if ctx.deadline is None:
        return limit
    left = ctx.deadline - time.time()
    if left <= 0:
        raise ActionFailed("the step's deadline has passed")
    return min(limit, left)


def _dedup_id(ctx: ActionContext) -> str:
    return f"{ctx.run_id}:{ctx.step}"


class _Clients:
    """Open clients by key, kept for the event loop that opened them."""

    def __init__(self, close: Callable[[Any], Awaitable[object]]) -> None:
        self._close = close
        self._items: dict[Hashable, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    async def get(
        self, key: Hashable, open: Callable[[], Awaitable[T]], alive: Callable[[T], bool]
    ) -> T:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # those of a finished loop cannot be used (nor closed)
            self._loop, self._items, self._lock = loop, {}, asyncio.Lock()
        async with self._lock:
            client: T | None = self._items.get(key)
            if client is None or not alive(client):
                client = self._items[key] = await open()
            return client

    async def discard(self, key: Hashable) -> None:
        client = self._items.pop(key, None)
        if client is not None:
            await _quietly(self._close(client))

    async def aclose(self) -> None:
        items, self._items = list(self._items.values()), {}
        if self._loop is asyncio.get_running_loop():
            for client in items:
                await _quietly(self._close(client))


async def _quietly(call: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):  # closing a broken client may fail; it is gone
        await call


# -- the actions -------------------------------------------------------------------------
class _Publish(Action):
    """What the four publish actions share: settings, deadline, clients and failures."""

    kind: ClassVar[str]
    config_model: ClassVar[type[BrokerConfig]]
    version = "1"

    def __init__(self) -> None:
        self._clients = _Clients(self._close_client)

    async def aclose(self) -> None:
        await self._clients.aclose()

    async def execute(self, ctx: ActionContext, input: Any) -> ActionResult:
        config = _config(ctx, input, self.kind, self.config_model)
        wait = _time_left(ctx, config.connect_timeout)
        try:
            outputs = await self._publish(ctx, config, input, wait)
        except ActionFailed:
            raise
        except Exception as exc:
            # A failed client may be half-dead (a timeout on a dropped link): start afresh.
            await self._clients.discard(config.url.get_secret_value())
            raise failure(self.kind, config, exc, ".publish") from exc
        return ActionResult(outputs=outputs)

    async def _publish(
        self, ctx: ActionContext, config: Any, input: Any, wait: float
    ) -> dict[str, Any]:
        raise NotImplementedError

    async def _close_client(self, client: Any) -> None:
        await client.close()


class AmqpProperties(ActionInput):
    content_type: str | None = Field(None, description="Default application/json for JSON.")
    content_encoding: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    message_id: str | None = Field(None, description="Default <run id>:<step>.")
    expiration: str | float | None = Field(None, description='A TTL: seconds or "30s".')
    priority: int | None = Field(None, ge=0, le=255)
    type: str | None = None
    app_id: str | None = None
    user_id: str | None = Field(None, description="Must be the connection's user.")

    @field_validator("expiration")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration(value)
        return value


class RabbitMqPublishInput(BrokerInput):
    exchange: str = Field("", description='The exchange; "" is the default exchange.')
    routing_key: str = Field("", description="The routing key (a queue's name for the default).")
    body: Any = Field("", description="A string is sent as is, anything else as JSON.")
    headers: dict[str, Any] = Field(default_factory=dict, description="Message headers.")
    properties: AmqpProperties = Field(default_factory=AmqpProperties)
    persistent: bool = Field(True, description="Delivery mode 2: kept on disk by the broker.")
    mandatory: bool = Field(False, description="Fail when no queue takes the message.")
    confirm: bool = Field(True, description="Wait for the broker's publisher confirm.")


class RabbitMqPublish(_Publish):
    name = "rabbitmq.publish"
    description = "Publish a message to a RabbitMQ exchange with a routing key."
    Input = RabbitMqPublishInput
    kind = "rabbitmq"
    config_model = RabbitMqConfig

    async def _publish(
        self,
        ctx: ActionContext,
        config: RabbitMqConfig,
        input: RabbitMqPublishInput,
        wait: float,
    ) -> dict[str, Any]:
        import aio_pika

        connection = await self._clients.get(
            config.url.get_secret_value(),
            lambda: amqp_connect(config, wait),
            lambda c: not c.is_closed,
        )
        body, is_json = _encode(input.body)
        props = input.properties
        expiration = parse_duration(props.expiration) if props.expiration is not None else None
        message = aio_pika.Message(
            body,
            headers=input.headers or None,
            content_type=props.content_type or ("application/json" if is_json else None),
            content_encoding=props.content_encoding,
            delivery_mode=(
                aio_pika.DeliveryMode.PERSISTENT
                if input.persistent
                else aio_pika.DeliveryMode.NOT_PERSISTENT
            ),
            priority=props.priority,
            correlation_id=props.correlation_id,
            reply_to=props.reply_to,
            expiration=expiration,
            message_id=props.message_id or _dedup_id(ctx),
            timestamp=time.time(),
            type=props.type,
            app_id=props.app_id,
            user_id=props.user_id,
        )
        # A channel per step: a channel error (no such exchange) closes the channel.
        channel = await connection.channel(
            publisher_confirms=input.confirm, on_return_raises=input.mandatory
        )
        try:
            exchange = (
                await channel.declare_exchange(input.exchange, passive=True)
                if input.exchange
                else channel.default_exchange
            )
            await exchange.publish(
                message, routing_key=input.routing_key, mandatory=input.mandatory, timeout=wait
            )
        finally:
            if not channel.is_closed:
                await channel.close()
        return {
            "exchange": input.exchange,
            "routing_key": input.routing_key,
            "message_id": message.message_id,
            "size": len(body),
            "confirmed": input.confirm,
        }


class RedisPublishInput(BrokerInput):
    stream: str | None = Field(None, description="Add an entry to this stream (XADD).")
    channel: str | None = Field(None, description="Publish to this pub/sub channel.")
    fields: dict[str, Any] = Field(
        default_factory=dict, description="stream: the entry's fields (non-strings as JSON)."
    )
    body: Any = Field(None, description="channel: the message; stream: a field named body.")
    maxlen: int | None = Field(None, ge=1, description="stream: trim to about this length.")
    approximate: bool = Field(True, description="stream: trim with ~ (cheaper).")
    id: str = Field("*", description="stream: the entry ID; * lets Redis choose.")

    @model_validator(mode="after")
    def _one_kind(self) -> RedisPublishInput:
        if (self.stream is None) == (self.channel is None):
            raise ValueError("give stream or channel (one of them)")
        if self.channel is not None:
            extra = [n for n in ("fields", "maxlen", "id") if n in self.model_fields_set]
            if extra:
                raise ValueError(f"channel does not take {', '.join(extra)} (a stream does)")
            if self.body is None:
                raise ValueError("channel needs body")
        elif not self.fields and self.body is None:
            raise ValueError("stream needs fields or body")
        return self


class RedisPublish(_Publish):
    name = "redis.publish"
    description = "Add an entry to a Redis stream (XADD) or publish to a pub/sub channel."
    Input = RedisPublishInput
    kind = "redis"
    config_model = RedisConfig

    async def _publish(
        self, ctx: ActionContext, config: RedisConfig, input: RedisPublishInput, wait: float
    ) -> dict[str, Any]:
        async def open() -> Any:  # kept for later steps: not bound to this one's deadline
            return redis_client(config, config.connect_timeout)

        client = await self._clients.get(config.url.get_secret_value(), open, lambda c: True)
        if input.channel is not None:
            body, _ = _encode(input.body)
            receivers = await client.publish(input.channel, body)
            return {"channel": input.channel, "receivers": int(receivers), "size": len(body)}
        fields = {name: _encode(value)[0] for name, value in input.fields.items()}
        if input.body is not None:
            fields["body"] = _encode(input.body)[0]
        entry = await client.xadd(
            input.stream, fields, id=input.id, maxlen=input.maxlen, approximate=input.approximate
        )
        return {"stream": input.stream, "id": as_text(entry)}

    async def _close_client(self, client: Any) -> None:
        await client.aclose()


class NatsPublishInput(BrokerInput):
    subject: str = Field(description="The subject.")
    body: Any = Field("", description="A string is sent as is, anything else as JSON.")
    headers: dict[str, str] = Field(default_factory=dict, description="NATS headers.")
    jetstream: bool = Field(False, description="Publish to JetStream and wait for its ack.")
    stream: str | None = Field(None, description="jetstream: the stream expected to store it.")
    msg_id: str | None = Field(
        None, description="jetstream: the dedup ID (Nats-Msg-Id); default <run id>:<step>."
    )

    @model_validator(mode="after")
    def _jetstream_fields(self) -> NatsPublishInput:
        extra = [n for n in ("stream", "msg_id") if getattr(self, n) is not None]
        if extra and not self.jetstream:
            raise ValueError(f"{' and '.join(extra)} need jetstream: true")
        if not self.subject or any(c in self.subject for c in " \t*>"):
            raise ValueError(f"subject {self.subject!r} is empty or has a wildcard or space")
        return self


class NatsPublish(_Publish):
    name = "nats.publish"
    description = "Publish a message to a NATS subject, or to JetStream with an ack."
    Input = NatsPublishInput
    kind = "nats"
    config_model = NatsConfig

    async def _publish(
        self, ctx: ActionContext, config: NatsConfig, input: NatsPublishInput, wait: float
    ) -> dict[str, Any]:
        client = await self._clients.get(
            config.url.get_secret_value(),
            lambda: nats_connect(config, wait),
            lambda c: not c.is_closed,
        )
        body, _ = _encode(input.body)
        headers = dict(input.headers)
        outputs: dict[str, Any] = {"subject": input.subject, "size": len(body)}
        if not input.jetstream:
            await client.publish(input.subject, body, headers=headers or None)
            await client.flush(timeout=wait)  # the server has it (or the step fails)
            return outputs
        headers["Nats-Msg-Id"] = input.msg_id or headers.get("Nats-Msg-Id") or _dedup_id(ctx)
        ack = await client.jetstream(timeout=wait).publish(
            input.subject, body, timeout=wait, stream=input.stream, headers=headers
        )
        return {
            **outputs,
            "stream": ack.stream,
            "seq": ack.seq,
            "duplicate": bool(ack.duplicate),
            "msg_id": headers["Nats-Msg-Id"],
        }


class MqttPublishInput(BrokerInput):
    topic: str = Field(description="The topic (no wildcards).")
    payload: Any = Field("", description="A string is sent as is, anything else as JSON.")
    qos: Literal[0, 1, 2] = Field(1, description="0 at most once, 1 at least once, 2 exactly once.")
    retain: bool = Field(False, description="The broker keeps it for later subscribers.")

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if not value or "+" in value or "#" in value:
            raise ValueError(f"topic {value!r} is empty or has a wildcard (+ or #)")
        return value


class MqttPublish(_Publish):
    name = "mqtt.publish"
    description = "Publish a message to an MQTT topic with a QoS."
    Input = MqttPublishInput
    kind = "mqtt"
    config_model = MqttConfig

    async def _publish(
        self, ctx: ActionContext, config: MqttConfig, input: MqttPublishInput, wait: float
    ) -> dict[str, Any]:
        payload, _ = _encode(input.payload)
        async with mqtt_client(config, wait) as client:
            # With QoS 1 or 2 this returns once the broker has acknowledged the message.
            await client.publish(
                input.topic, payload, qos=input.qos, retain=input.retain, timeout=wait
            )
        return {
            "topic": input.topic,
            "qos": input.qos,
            "retain": input.retain,
            "size": len(payload),
        }
