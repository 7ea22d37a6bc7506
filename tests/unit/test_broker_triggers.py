"""Broker triggers without a broker: the workflow format (shape, messages, positions,
schema) and the pure parts of consuming — the ``trigger`` payload and dedup keys."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plait.errors import ValidationError
from plait.model import load_workflow
from plait.model.schema import workflow_json_schema
from plait.triggers.brokers import (
    BrokerTrigger,
    Message,
    Rejected,
    broker_triggers,
    dedup_key,
    plain,
    trigger_payload,
)

HEAD = "name: w\ninputs: {n: {type: integer, default: 0}}\nsteps: [{id: a, run: x}]\ntriggers:\n"


def problems(triggers: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_workflow(HEAD + triggers, "w.yaml")
    return [str(p) for p in info.value.problems]


def test_every_broker_kind_compiles_into_the_plan() -> None:
    loaded = load_workflow(
        HEAD
        + """\
  - rabbitmq: {connection: amqp, queue: orders, exchange: shop, routing_key: "order.*",
               dedup_key: "${{ trigger.headers.message_id }}",
               inputs: {n: "${{ trigger.body.n }}"}}
  - redis_stream: {url: "${{ secrets.REDIS_URL }}", stream: events, claim_idle: 2m}
  - nats: {url: "nats://127.0.0.1:4222", subject: "orders.>", stream: ORDERS}
  - mqtt: {connection: broker, topic: "sensors/+/temp"}
""",
        "w.yaml",
    )
    found = broker_triggers("w", loaded.plan)
    assert [t.kind for t in found] == ["rabbitmq", "redis_stream", "nats", "mqtt"]
    assert [t.source for t in found] == ["orders", "events", "orders.>", "sensors/+/temp"]
    rabbit, redis, nats, mqtt = (t.spec for t in found)
    assert rabbit["prefetch"] == 10
    assert redis["claim_idle"] == 120
    assert nats["ack_wait"] == 30
    assert mqtt["qos"] == 1
    assert "REDIS_URL" in loaded.plan.secret_names  # masked like any secret the run uses


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ("rabbitmq: {queue: q}", "triggers[0].rabbitmq: a broker trigger needs exactly one of"),
        (
            "redis_stream: {url: u, connection: c, stream: s}",
            "exactly one of connection or url (it has both)",
        ),
        ("nats: {url: u, subject: a.b}", "needs a JetStream 'stream': core NATS delivers"),
        ("nats: {url: u, subject: a b, stream: S}", "triggers[0].nats.subject"),
        ("nats: {url: u, subject: a, stream: S.X}", "triggers[0].nats.stream"),
        ("mqtt: {url: u, topic: t, qos: 0}", "qos 0 is refused"),
        ("mqtt: {url: u, topic: t, qos: 2}", "qos 2 is refused"),
        ("mqtt: {url: u, topic: 'a/#/b'}", "'#' must be a whole level and the last one"),
        ("mqtt: {url: u, topic: 'a/b+'}", "'+' must be a whole level"),
        ("rabbitmq: {url: u, queue: q, routing_key: k}", "give 'exchange' too"),
        ("rabbitmq: {url: u, queue: q, prefetch: 0}", "triggers[0].rabbitmq.prefetch"),
        ("rabbitmq: {url: u}", "triggers[0].rabbitmq: missing required key 'queue'"),
        ("rabitmq: {url: u, queue: q}", "did you mean 'rabbitmq'?"),
        (
            "{mqtt: {url: u, topic: t}, nats: {url: u, subject: s, stream: S}}",
            "exactly one of manual, schedule, webhook, event, rabbitmq, redis_stream, nats or "
            "mqtt (it has nats and mqtt)",
        ),
        (
            "rabbitmq: {url: u, queue: q, inputs: {m: '${{ trigger.body }}'}}",
            "triggers[0].rabbitmq.inputs.m: unknown input 'm'",
        ),
        (
            "rabbitmq: {url: u, queue: q, inputs: {n: '${{ secrets.X }}'}}",
            "unknown name 'secrets' (known: env, trigger)",
        ),
        (
            "rabbitmq: {url: u, queue: q, dedup_key: '${{ trigger.id + }}'}",
            "triggers[0].rabbitmq.dedup_key",
        ),
    ],
)
def test_bad_broker_triggers_say_what_and_where(trigger: str, message: str) -> None:
    found = problems(f"  - {trigger}\n")
    assert any(message in p for p in found), found
    assert all(p.startswith("w.yaml:5:") for p in found), found  # the trigger's own line


def test_the_json_schema_lists_the_broker_kinds() -> None:
    schema = workflow_json_schema()
    trigger = schema["$defs"]["TriggerSpec"]["properties"]
    assert {"rabbitmq", "redis_stream", "nats", "mqtt"} <= set(trigger)
    assert "queue" in schema["$defs"]["RabbitMqTrigger"]["required"]
    assert "dedup_key" in schema["$defs"]["MqttTrigger"]["properties"]


def test_the_payload_has_the_same_keys_for_every_message() -> None:
    message = Message(
        b'{"order": 7}',
        headers={"message_id": b"abc", "when": 1.5, "nested": {"k": [b"\xff"]}},
        id="abc",
        meta={"queue": "orders", "routing_key": "orders"},
        redelivered=True,
    )
    payload = trigger_payload("rabbitmq", message)
    assert payload == {
        "broker": "rabbitmq",
        "id": "abc",
        "body": {"order": 7},
        "text": '{"order": 7}',
        "headers": {"message_id": "abc", "when": 1.5, "nested": {"k": ["/w=="]}},
        "redelivered": True,
        "queue": "orders",
        "routing_key": "orders",
    }
    json.dumps(payload)  # storable as it is


@pytest.mark.parametrize(
    ("data", "body", "text"),
    [
        (b"hello", "hello", "hello"),
        (b"42", 42, "42"),
        (b"", None, ""),
        (b"NaN", "NaN", "NaN"),  # not JSON: the text
        (b"\xff\xfe", None, None),
    ],
)
def test_body_is_json_when_it_parses_else_text(data: bytes, body: Any, text: Any) -> None:
    payload = trigger_payload("mqtt", Message(data))
    assert payload["body"] == body
    assert payload["text"] == text
    assert ("base64" in payload) == (text is None)


def test_messages_that_cannot_be_stored_are_rejected() -> None:
    with pytest.raises(Rejected, match="the limit is 10"):
        trigger_payload("nats", Message(b"x" * 11), max_bytes=10)
    with pytest.raises(Rejected, match="surrogate"):
        trigger_payload("nats", Message(b'{"a": "\\ud800"}'))


def test_plain_makes_amqp_header_values_json() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    assert plain(datetime(2024, 1, 2, tzinfo=UTC)) == "2024-01-02T00:00:00+00:00"
    assert plain(Decimal("1.5")) == "1.5"
    assert plain(float("nan")) == "nan"
    assert plain((1, b"a")) == [1, "a"]


def _trigger(**spec: Any) -> BrokerTrigger:
    return BrokerTrigger("w", "default", {"kind": "redis_stream", "stream": "s", **spec})


def test_dedup_key_prefers_the_expression_then_the_broker_id() -> None:
    message = Message(b"{}", headers={"message_id": "m1"}, id="1-0", dedup_id="1-0")
    scope = {"trigger": trigger_payload("redis_stream", message)}
    by_key = dedup_key(_trigger(dedup_key="${{ trigger.headers.message_id }}"), scope, message)
    assert by_key == "broker:w:key:m1"
    assert dedup_key(_trigger(), scope, message) == "broker:w:redis_stream:s:1-0"
    # an expression that fails names the message by its broker id: never lost
    failing = _trigger(dedup_key="${{ trigger.headers.missing }}")
    assert dedup_key(failing, scope, message) == "broker:w:redis_stream:s:1-0"
    assert dedup_key(_trigger(), scope, Message(b"")) is None


def test_default_names_are_stable_and_distinct_per_workflow() -> None:
    a = BrokerTrigger("a", "default", {"kind": "mqtt", "topic": "t/#"})
    b = BrokerTrigger("b", "default", {"kind": "mqtt", "topic": "t/#"})
    assert a.client_id() == BrokerTrigger("a", "default", dict(a.spec)).client_id()
    assert a.client_id() != b.client_id()
    assert len(a.client_id()) <= 23  # the MQTT 3.1.1 limit brokers may still enforce
    assert _trigger().group() == "plait:w"
    assert _trigger(group="g").group() == "g"
    nats = BrokerTrigger("w", "default", {"kind": "nats", "subject": "a.>", "stream": "S"})
    assert nats.durable().startswith("plait-w-")
    assert "." not in nats.durable()
