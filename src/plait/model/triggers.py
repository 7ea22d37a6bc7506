"""The ``triggers:`` of a workflow as pydantic models: what starts a run.

One item of ``triggers:`` is exactly one kind: ``manual``, ``schedule`` (cron),
``webhook``, ``event`` (another run's or a published event), or a message broker —
``rabbitmq``, ``redis_stream``, ``nats``, ``mqtt`` — which starts a run per message.
Only the shape lives here; the schedulers and consumers are in :mod:`plait.triggers`
(the model imports no client library).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictInt, field_validator, model_validator

from plait.model.fields import Count, Duration, SpecModel, shape_error


class ManualTrigger(SpecModel):
    pass


class ScheduleTrigger(SpecModel):
    cron: str
    timezone: str = "UTC"
    catch_up: Literal["none", "latest", "all"] = "latest"
    max_catch_up: Count | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        reason = cron_problem(value)
        if reason:
            raise ValueError(reason)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use a name like Europe/Berlin)"
            ) from None
        return value


def cron_problem(expression: str) -> str | None:
    """Why ``expression`` is not a valid cron expression, or None when it is."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        return f"{expression!r} is not a cron expression (it needs 5 fields, like '0 2 * * *')"
    try:
        from croniter import croniter
    except ImportError:  # pragma: no cover - croniter ships with the server extra
        return None
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    return None


class WebhookTrigger(SpecModel):
    secret: str | None = None
    require_timestamp: bool = False


class EventTrigger(SpecModel):
    type: str
    workflow: str | None = None
    if_: str | None = Field(None, alias="if")


# Broker triggers (rabbitmq, redis_stream, nats, mqtt): a run per message, the message
# acknowledged only after its run is recorded. The consumers are in plait.triggers.brokers.

#: NATS subject tokens and JetStream names: no whitespace; names also no ``.``, ``*``, ``>``.
_NATS_SUBJECT = re.compile(r"^[^\s]+$")
_NATS_NAME = re.compile(r"^[^\s.*>/\\]+$")


class BrokerTrigger(SpecModel):
    """What every broker trigger has: where the broker is, how to deduplicate, inputs."""

    connection: str | None = Field(
        None, description="a connection whose url is the broker's (credentials stay there)"
    )
    url: str | None = Field(None, description="the broker's URL, e.g. ${{ secrets.AMQP_URL }}")
    dedup_key: str | None = Field(
        None,
        description="an expression over the message naming it, e.g. "
        "${{ trigger.headers.message_id }}; a redelivery with the same key starts no run",
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="run inputs, expressions over trigger"
    )

    @model_validator(mode="after")
    def _one_place(self) -> BrokerTrigger:
        given = [k for k in ("connection", "url") if getattr(self, k)]
        if len(given) != 1:
            found = " (it has both)" if len(given) == 2 else ""
            raise shape_error(f"a broker trigger needs exactly one of connection or url{found}")
        return self


class RabbitMqTrigger(BrokerTrigger):
    queue: Annotated[str, Field(min_length=1, max_length=255)]
    exchange: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    routing_key: Annotated[str, Field(max_length=255)] | None = None
    prefetch: Annotated[StrictInt, Field(ge=1, le=65535)] = 10

    @model_validator(mode="after")
    def _binding(self) -> RabbitMqTrigger:
        if self.routing_key is not None and self.exchange is None:
            raise shape_error("routing_key binds the queue to an exchange: give 'exchange' too")
        return self


class RedisStreamTrigger(BrokerTrigger):
    stream: Annotated[str, Field(min_length=1)]
    group: Annotated[str, Field(min_length=1)] | None = None
    consumer: Annotated[str, Field(min_length=1)] | None = None
    body_field: Annotated[str, Field(min_length=1)] = "body"
    claim_idle: Duration = 60.0


class NatsTrigger(BrokerTrigger):
    subject: Annotated[str, Field(min_length=1, pattern=_NATS_SUBJECT.pattern)]
    stream: Annotated[str, Field(pattern=_NATS_NAME.pattern)] | None = None
    durable: Annotated[str, Field(pattern=_NATS_NAME.pattern)] | None = None
    ack_wait: Duration = 30.0

    @model_validator(mode="after")
    def _jetstream(self) -> NatsTrigger:
        if self.stream is None:
            raise shape_error(
                "a nats trigger needs a JetStream 'stream': core NATS delivers a message at "
                "most once, so one that arrives while Plait is down or restarting is lost"
            )
        if self.ack_wait < 1:
            raise shape_error("ack_wait must be at least 1s")
        return self


class MqttTrigger(BrokerTrigger):
    topic: Annotated[str, Field(min_length=1, max_length=65535)]
    qos: StrictInt = 1
    client_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @field_validator("qos")
    @classmethod
    def _check_qos(cls, value: int) -> int:
        if value == 0:
            raise ValueError(
                "qos 0 is refused: the broker forgets a QoS 0 message once sent, so one "
                "that arrives while Plait is down is lost; use qos 1"
            )
        if value == 2:
            raise ValueError(
                "qos 2 is refused: its handshake hands the message over (PUBREC) before its "
                "run is recorded, so a crash could lose it; use qos 1 with dedup_key"
            )
        if value != 1:
            raise ValueError(f"qos must be 1, not {value}")
        return value

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        reason = mqtt_filter_problem(value)
        if reason:
            raise ValueError(reason)
        return value


def mqtt_filter_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT topic filter, or None when it is."""
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return f"{topic!r}: '#' must be a whole level and the last one (like 'a/#')"
        if "+" in level and level != "+":
            return f"{topic!r}: '+' must be a whole level (like 'a/+/c')"
    if "\x00" in topic:
        return f"{topic!r}: a topic cannot contain NUL"
    return None


#: Trigger kinds in the order messages name them; the broker kinds start runs per message.
TRIGGER_KINDS = (
    "manual",
    "schedule",
    "webhook",
    "event",
    "rabbitmq",
    "redis_stream",
    "nats",
    "mqtt",
)
BROKER_KINDS = frozenset({"rabbitmq", "redis_stream", "nats", "mqtt"})


class TriggerSpec(SpecModel):
    """One item of ``triggers:``: a mapping with exactly one of the trigger kinds."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    manual: ManualTrigger | None = None
    schedule: ScheduleTrigger | None = None
    webhook: WebhookTrigger | None = None
    event: EventTrigger | None = None
    rabbitmq: RabbitMqTrigger | None = None
    redis_stream: RedisStreamTrigger | None = None
    nats: NatsTrigger | None = None
    mqtt: MqttTrigger | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> TriggerSpec:
        if len(self.model_fields_set) != 1:
            kinds = [k for k in TRIGGER_KINDS if k in self.model_fields_set]
            found = f" (it has {' and '.join(kinds)})" if kinds else ""
            names = ", ".join(TRIGGER_KINDS[:-1])
            raise shape_error(f"a trigger is exactly one of {names} or {TRIGGER_KINDS[-1]}{found}")
        return self

    @property
    def kind(self) -> str:
        return next(iter(self.model_fields_set))
