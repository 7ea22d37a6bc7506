"""The broker side of broker triggers: connect, receive, acknowledge after recording.

Each client connects to its broker, sets up what the trigger names (a durable queue, a
consumer group, a JetStream durable consumer, a persistent MQTT session), calls
``consumer.connected()`` and then hands each message to ``consumer.deliver(message,
ack)``, which records the message's run before it calls ``ack``. A client returns or
raises when its connection ends; the :class:`~plait.triggers.brokers.Consumer` then
reconnects with backoff. What "acknowledge" means, and what happens to a message that
was received but not acknowledged when the process died:

* **RabbitMQ** — manual ``basic.ack`` on a durable queue, at most ``prefetch``
  messages in flight; unacknowledged ones are requeued when the connection drops.
* **Redis streams** — ``XACK`` in a consumer group; unacknowledged entries stay in the
  group's pending list: a restarted consumer of the same name reads its own first
  (``XREADGROUP … 0``), and entries of a consumer that never came back are taken over
  with ``XAUTOCLAIM`` once idle for ``claim_idle``.
* **NATS JetStream** — a durable pull consumer with explicit acks
  (``ack_sync``); an unacknowledged message is delivered again after ``ack_wait``.
* **MQTT** — QoS 1 on a persistent session (MQTT 5, clean start off, a stable client
  id) with paho's manual acks, so the ``PUBACK`` leaves only after the run is recorded;
  the broker resends unacknowledged messages when the session resumes.

Client libraries are imported inside the functions: they are heavy, and only a process
that consumes a broker needs one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from plait.errors import PlaitError
from plait.triggers.brokers import Message, plain

if TYPE_CHECKING:
    from plait.triggers.brokers import Consumer

#: Seconds to wait for a broker to accept a connection (a connection's
#: ``connect_timeout`` overrides it).
CONNECT_TIMEOUT = 10.0
#: Messages fetched at once (Redis, NATS) and the MQTT receive window.
BATCH = 10
#: Seconds to wait for JetStream to confirm an acknowledgement.
_ACK_TIMEOUT = 5.0


# -- RabbitMQ -------------------------------------------------------------------------


async def rabbitmq(consumer: Consumer, url: str) -> None:
    import aio_pika

    spec = consumer.trigger.spec
    connection = await aio_pika.connect(
        url, timeout=_timeout(consumer), client_properties={"connection_name": "plait-trigger"}
    )
    async with connection:
        await _declare_queue(connection, str(spec["queue"]))
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=int(spec.get("prefetch") or 10))
        queue = await channel.get_queue(str(spec["queue"]), ensure=False)
        if spec.get("exchange"):
            try:
                exchange = await channel.get_exchange(str(spec["exchange"]), ensure=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                raise PlaitError(f"exchange {spec['exchange']!r} does not exist") from None
            await queue.bind(exchange, routing_key=str(spec.get("routing_key") or queue.name))
        consumer.connected()
        async with queue.iterator() as messages:
            async for incoming in messages:
                await consumer.deliver(_amqp_message(incoming, queue.name), incoming.ack)


async def _declare_queue(connection: Any, name: str) -> None:
    """Use the queue as it is if it exists (whatever its arguments: a quorum queue made
    by an operator must not be redeclared); else declare it durable. A failed passive
    declare closes its channel, hence a channel of its own."""
    import aio_pika

    probe = await connection.channel()
    try:
        await probe.declare_queue(name, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        declare = await connection.channel()
        await declare.declare_queue(name, durable=True)
        await declare.close()
    else:
        await probe.close()


def _amqp_message(incoming: Any, queue: str) -> Message:
    return Message(
        data=bytes(incoming.body),
        headers=dict(incoming.headers or {}),
        id=incoming.message_id,
        dedup_id=incoming.message_id,
        meta={
            "queue": queue,
            "exchange": incoming.exchange or "",
            "routing_key": incoming.routing_key or "",
            "content_type": incoming.content_type,
            "correlation_id": incoming.correlation_id,
        },
        redelivered=bool(incoming.redelivered),
    )


# -- Redis streams ----------------------------------------------------------------------


async def redis_stream(consumer: Consumer, url: str) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import ResponseError

    t = consumer.trigger
    stream, group, name = t.source, t.group(), t.consumer_name()
    claim_idle_ms = int(float(t.spec.get("claim_idle") or 60) * 1000)
    client = aioredis.from_url(url, socket_connect_timeout=_timeout(consumer))
    async with client:
        try:
            # "$": the group starts at the end of the stream, like a new subscription
            await client.xgroup_create(stream, group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        consumer.connected()

        async def deliver(entry_id: bytes, fields: dict[bytes, bytes] | None) -> None:
            async def ack() -> None:
                await client.xack(stream, group, entry_id)

            if fields is None:  # trimmed from the stream while pending: nothing to run
                await ack()
                return
            await consumer.deliver(_stream_message(t.spec, stream, group, entry_id, fields), ack)

        claimed_at = 0.0
        while True:
            if time.monotonic() - claimed_at >= max(claim_idle_ms / 2000, 1.0):
                claimed_at = time.monotonic()
                await _own_pending(client, stream, group, name, deliver)
                await _claim_dead(client, stream, group, name, claim_idle_ms, deliver)
            found: Any = await client.xreadgroup(
                group, name, {stream: ">"}, count=BATCH, block=1000
            )
            for _, entries in found or []:
                for entry_id, fields in entries:
                    await deliver(entry_id, fields)


Deliver = Callable[[bytes, "dict[bytes, bytes] | None"], Awaitable[None]]


async def _own_pending(client: Any, stream: str, group: str, name: str, deliver: Deliver) -> None:
    """Entries this consumer name received but never acknowledged (a crash)."""
    after = "0"
    while True:
        found = await client.xreadgroup(group, name, {stream: after}, count=BATCH)
        entries = found[0][1] if found else []
        if not entries:
            return
        for entry_id, fields in entries:
            await deliver(entry_id, fields or None)
            after = entry_id


async def _claim_dead(
    client: Any, stream: str, group: str, name: str, idle_ms: int, deliver: Deliver
) -> None:
    """Entries pending on other consumers for longer than ``idle_ms``: theirs died."""
    start = "0-0"
    while True:
        reply = await client.xautoclaim(stream, group, name, idle_ms, start, count=BATCH)
        start, entries = reply[0], reply[1]
        for entry_id, fields in entries:
            await deliver(entry_id, fields or None)
        if start in (b"0-0", "0-0"):
            return


def _stream_message(
    spec: Any, stream: str, group: str, entry_id: bytes, fields: dict[bytes, bytes]
) -> Message:
    """A stream entry is a map of fields: the ``body_field`` one is the message, and all
    of them are its ``headers``; without that field the message is the map as JSON."""
    import json

    decoded = {_str(k): plain(v) for k, v in fields.items()}
    body_field = str(spec.get("body_field") or "body")
    raw = fields.get(body_field.encode())
    data = raw if raw is not None else json.dumps(decoded).encode()
    entry = _str(entry_id)
    return Message(
        data=data,
        headers=decoded,
        id=entry,
        dedup_id=entry,
        meta={"stream": stream, "group": group},
    )


def _str(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


# -- NATS JetStream ---------------------------------------------------------------------


async def nats(consumer: Consumer, url: str) -> None:
    import nats as nats_client
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    t = consumer.trigger
    subject, stream = t.source, str(t.spec["stream"])

    async def quiet(exc: Exception) -> None:  # errors surface from the calls below
        pass

    nc = await nats_client.connect(
        servers=[s.strip() for s in url.split(",")],  # a cluster: several URLs
        connect_timeout=_timeout(consumer),
        allow_reconnect=False,  # the consumer reconnects (and says so)
        error_cb=quiet,
        name="plait-trigger",
    )
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            info = await js.add_stream(name=stream, subjects=[subject])
        epoch = str(info.created or "")
        config = ConsumerConfig(
            durable_name=t.durable(),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=float(t.spec.get("ack_wait") or 30),
            deliver_policy=DeliverPolicy.NEW,
            max_ack_pending=1000,
        )
        sub = await js.pull_subscribe(subject, durable=t.durable(), stream=stream, config=config)
        consumer.connected()
        while nc.is_connected:
            try:
                batch = await sub.fetch(BATCH, timeout=1)
            except TimeoutError:  # no message within the second (nats' own is a subclass)
                continue
            for msg in batch:
                await consumer.deliver(_nats_message(msg, epoch), _nats_ack(msg))
        raise PlaitError("the NATS connection closed")
    finally:
        await nc.close()


def _nats_ack(msg: Any) -> Callable[[], Awaitable[Any]]:
    async def ack() -> Any:  # double ack: returns once the server has it
        return await msg.ack_sync(timeout=_ACK_TIMEOUT)

    return ack


def _nats_message(msg: Any, epoch: str) -> Message:
    """The default dedup id is ``Nats-Msg-Id`` (JetStream's own publish dedup id) when
    given, else the stream sequence qualified by the stream's creation time, since a
    deleted and recreated stream counts from 1 again."""
    md = msg.metadata
    headers = dict(msg.headers or {})
    sequence = int(md.sequence.stream)
    given = headers.get("Nats-Msg-Id")
    return Message(
        data=bytes(msg.data),
        headers=headers,
        id=given or str(sequence),
        dedup_id=f"id:{given}" if given else f"seq:{epoch}:{sequence}",
        meta={"subject": msg.subject, "stream": md.stream, "sequence": sequence},
        redelivered=int(md.num_delivered or 1) > 1,
    )


# -- MQTT -------------------------------------------------------------------------------

#: Seconds the broker keeps the session (queued messages) of a disconnected consumer:
#: the protocol's "never expires".
SESSION_EXPIRY = 0xFFFFFFFF


async def mqtt(consumer: Consumer, url: str) -> None:
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    t = consumer.trigger
    where = _mqtt_url(url, consumer.options)
    connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    connect.SessionExpiryInterval = SESSION_EXPIRY
    connect.ReceiveMaximum = BATCH  # unacknowledged messages the broker may send at once
    client = aiomqtt.Client(
        where["host"],
        where["port"],
        username=where["username"],
        password=where["password"],
        identifier=t.client_id(),
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=connect,
        tls_params=aiomqtt.TLSParameters(ca_certs=where["ca_file"]) if where["tls"] else None,
        timeout=_timeout(consumer),
    )
    paho = client._client
    paho.manual_ack_set(True)  # PUBACK only from ack(), after the run is recorded
    async with client:
        # retainHandling 2: a retained message is an old one, not a new event
        options = SubscribeOptions(qos=1, retainHandling=2)
        await client.subscribe(t.source, options=options)
        consumer.connected()
        async for incoming in client.messages:
            await consumer.deliver(_mqtt_message(incoming), _mqtt_ack(paho, incoming))


def _mqtt_ack(paho: Any, incoming: Any) -> Callable[[], Awaitable[None]]:
    async def ack() -> None:
        if incoming.qos > 0:
            paho.ack(incoming.mid, incoming.qos)

    return ack


def _mqtt_message(incoming: Any) -> Message:
    properties = incoming.properties
    headers: dict[str, Any] = {}
    for name, value in getattr(properties, "UserProperty", None) or []:
        headers[str(name)] = value
    meta: dict[str, Any] = {"topic": str(incoming.topic), "retain": bool(incoming.retain)}
    for key, attr in (("content_type", "ContentType"), ("correlation_id", "CorrelationData")):
        value = getattr(properties, attr, None)
        if value is not None:
            meta[key] = value
    return Message(data=bytes(incoming.payload or b""), headers=headers, meta=meta)


def _mqtt_url(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise PlaitError(f"an MQTT url starts with mqtt:// or mqtts://, not {parts.scheme}://")
    tls = parts.scheme == "mqtts" or bool(options.get("tls"))
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or (8883 if tls else 1883),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "tls": tls,
        "ca_file": options.get("ca_file"),
    }


def _timeout(consumer: Consumer) -> float:
    return float(consumer.options.get("connect_timeout") or CONNECT_TIMEOUT)


CLIENTS: dict[str, Callable[[Consumer, str], Awaitable[None]]] = {
    "rabbitmq": rabbitmq,
    "redis_stream": redis_stream,
    "nats": nats,
    "mqtt": mqtt,
}
