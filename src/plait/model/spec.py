"""The workflow format of DESIGN §1 as pydantic models: what a file or the Python API says.

These models check the shape of a workflow — keys, types, durations, cron syntax, one
kind per step — and nothing that needs the whole document (ids, ``needs``, expression
references): that is :mod:`plait.model.compile`'s job. Unknown keys are errors.

:func:`describe_errors` turns pydantic's errors into messages that name the field
(``steps[2].timeout: '5 minutes' is not a duration …``) with the path of the value, so
the YAML loader can point at its line and column.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from plait.model.durations import parse_duration

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
STEP_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"
INPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"

Path = tuple[str | int, ...]
InputType = Literal["string", "integer", "number", "boolean", "object", "array"]
OnErrorSpec = Literal["fail", "continue", "retry"]
RunStatusName = Literal["succeeded", "failed", "cancelled", "timed_out", "waiting"]

#: How each input type is named in messages.
TYPE_WORDS: dict[str, str] = {
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
}


def type_matches(type_: str, value: Any) -> bool:
    """Whether ``value`` is of the declared input ``type_`` (bool is not a number)."""
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if type_ == "integer":
        return isinstance(value, int)
    if type_ == "number":
        return isinstance(value, int | float)
    if type_ == "object":
        return isinstance(value, Mapping)
    return isinstance(value, list | tuple)


# --- value types ----------------------------------------------------------------------


def _duration(value: Any) -> Any:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (write it like 500ms, 30s, 5m or 1h30m)")
    return parse_duration(value)


def _seconds_out(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*)+$"},
    ],
    "description": "seconds, or text like 500ms, 30s, 5m, 1h30m",
}

#: A duration in seconds; accepts ``500ms``, ``30s``, ``5m``, ``1h30m`` or a number.
Duration = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(_seconds_out),
    WithJsonSchema(_DURATION_SCHEMA),
]


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


#: A string; numbers and booleans (``PORT: 8080``, ``DEBUG: true``) are stringified.
Text = Annotated[
    str, BeforeValidator(_text), WithJsonSchema({"type": ["string", "number", "boolean"]})
]
StepId = Annotated[str, Field(pattern=STEP_ID_PATTERN)]
Count = Annotated[StrictInt, Field(ge=0)]
Positive = Annotated[StrictInt, Field(ge=1)]

# --- routing: which workers may run a step ------------------------------------------------

#: Queue names and worker tag names: what ``plait worker --queue``/``--tags`` accept too.
ROUTE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
DEFAULT_QUEUE = "default"
PRIORITY_LIMIT = 1_000_000


def route_name_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot be a queue or tag name, or None when it can."""
    if not isinstance(value, str) or not re.match(ROUTE_NAME_PATTERN, value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        static = (
            " (it must be written out: expressions are not allowed)" if "${{" in str(value) else ""
        )
        return (
            f"{shown} is not a {what} name (use up to 100 letters, digits, '_', '.' and "
            f"'-', starting with a letter or digit){static}"
        )
    return None


def _route_name(what: str) -> Any:
    def check(value: str) -> str:
        problem = route_name_problem(value, what)
        if problem:
            raise ValueError(problem)
        return value

    return check


def _priority(value: int) -> int:
    if not -PRIORITY_LIMIT <= value <= PRIORITY_LIMIT:
        raise ValueError(f"priority must be between -{PRIORITY_LIMIT:,} and {PRIORITY_LIMIT:,}")
    return value


def _tag_value(value: str) -> str:
    if len(value) > 200 or "${{" in value:
        raise ValueError(
            f"{value[:60]!r} is not a tag value (up to 200 characters, no expressions)"
        )
    return value


QueueName = Annotated[
    str,
    AfterValidator(_route_name("queue")),
    WithJsonSchema({"type": "string", "pattern": ROUTE_NAME_PATTERN}),
]
TagName = Annotated[str, AfterValidator(_route_name("tag"))]
TagValue = Annotated[Text, AfterValidator(_tag_value)]
Priority = Annotated[
    StrictInt,
    AfterValidator(_priority),
    WithJsonSchema({"type": "integer", "minimum": -PRIORITY_LIMIT, "maximum": PRIORITY_LIMIT}),
]
#: ``runs_on``: the tags (name → value) a worker must have to run the step.
RunsOn = Annotated[dict[TagName, TagValue], Field(max_length=20)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=True, frozen=True
    )


def _shape_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("shape", message)


# --- steps ----------------------------------------------------------------------------


class RetrySpec(_Model):
    """A retry policy; ``max`` counts retries (``max: 2`` allows three attempts)."""

    max: Count = 3
    backoff: Literal["exponential", "linear", "constant"] = "exponential"
    initial: Duration = 1.0
    factor: float = Field(2.0, ge=1)
    max_delay: Duration = 300.0
    jitter: bool = False


Retries = Annotated[Count | RetrySpec, Field(union_mode="left_to_right")]


def slugify(name: str) -> str:
    """An id derived from a step name: ``Health check!`` -> ``health-check``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")
    return slug.lstrip("-")


class StepSpec(_Model):
    """One step: an action (``uses`` or ``run``) or a ``parallel``/``sequence`` group."""

    id: StepId | None = None
    name: str | None = None
    uses: str | None = None
    run: str | None = None
    with_: dict[str, Any] | None = Field(None, alias="with")
    env: dict[str, Text] | None = None
    if_: str | bool | None = Field(None, alias="if")
    needs: str | list[str] | None = None
    timeout: Duration | None = None
    retries: Retries | None = None
    on_error: OnErrorSpec | None = None
    outputs: dict[str, Any] | None = None
    for_each: str | list[Any] | None = None
    max_parallel: Positive | None = None
    queue: QueueName | None = None
    runs_on: RunsOn | None = None
    priority: Priority | None = None
    parallel: list[StepSpec] | None = None
    sequence: list[StepSpec] | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "id" not in data and isinstance(data.get("name"), str):
            slug = slugify(data["name"])
            if slug and re.match(STEP_ID_PATTERN, slug):
                return {"id": slug, **data}
        return data

    @model_validator(mode="after")
    def _check_shape(self) -> StepSpec:
        problems = shape_problems(self)
        if problems:
            raise _shape_error("; ".join(problems))
        return self

    @property
    def key(self) -> str:
        """The step id (always set once validated)."""
        return self.id or ""

    @property
    def kind(self) -> Literal["action", "parallel", "sequence"]:
        if self.parallel is not None:
            return "parallel"
        if self.sequence is not None:
            return "sequence"
        return "action"

    @property
    def children(self) -> list[StepSpec]:
        return self.parallel or self.sequence or []


def shape_problems(step: StepSpec) -> list[str]:
    """What is wrong with a step's combination of keys."""
    problems: list[str] = []
    if step.id is None:
        problems.append("a step needs an 'id' (or a 'name' to derive it from)")
    kinds = [k for k in ("uses", "run", "parallel", "sequence") if getattr(step, k) is not None]
    if len(kinds) != 1:
        found = f" (it has {' and '.join(kinds)})" if kinds else ""
        problems.append(f"a step needs exactly one of uses, run, parallel or sequence{found}")
    if step.kind != "action":
        if not step.children:
            problems.append(f"a {step.kind} group needs at least one step")
        for key, value in (("with", step.with_), ("for_each", step.for_each)):
            if value is not None:
                problems.append(f"'{key}' is only for action steps, not {step.kind} groups")
        if step.outputs is not None:
            problems.append(f"'outputs' is only for action steps, not {step.kind} groups")
    if step.run is not None and "command" in (step.with_ or {}):
        problems.append("give the command either in run or in with.command, not both")
    if step.max_parallel is not None and step.kind != "parallel" and step.for_each is None:
        problems.append("'max_parallel' is only for parallel groups and for_each steps")
    return problems


# --- workflow ---------------------------------------------------------------------------


class InputSpec(_Model):
    """A declared workflow input."""

    type: InputType = "string"
    description: str | None = None
    default: Any = None
    required: bool = False
    enum: list[Any] | None = Field(None, min_length=1)
    secret: bool = False

    @model_validator(mode="after")
    def _check_values(self) -> InputSpec:
        want = TYPE_WORDS[self.type]
        for value in self.enum or []:
            if not type_matches(self.type, value):
                raise _shape_error(f"enum value {value!r} is not {want}")
        if "default" in self.model_fields_set and self.default is not None:
            if not type_matches(self.type, self.default):
                raise _shape_error(f"default {self.default!r} is not {want}")
            if self.enum is not None and self.default not in self.enum:
                raise _shape_error(f"default {self.default!r} is not one of the enum values")
        return self


class DefaultsSpec(_Model):
    """Settings every step inherits unless it (or its group) says otherwise."""

    timeout: Duration | None = None
    retries: Retries | None = None
    on_error: OnErrorSpec | None = None
    env: dict[str, Text] | None = None
    queue: QueueName | None = None
    runs_on: RunsOn | None = None
    priority: Priority | None = None


class ConcurrencySpec(_Model):
    key: str | None = None
    limit: Positive = 1
    on_conflict: Literal["queue", "cancel_running", "skip"] = "queue"


class ManualTrigger(_Model):
    pass


class ScheduleTrigger(_Model):
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


class WebhookTrigger(_Model):
    secret: str | None = None
    require_timestamp: bool = False


class EventTrigger(_Model):
    type: str
    workflow: str | None = None
    if_: str | None = Field(None, alias="if")


# Broker triggers (rabbitmq, redis_stream, nats, mqtt): a run per message, the message
# acknowledged only after its run is recorded. Only the shape lives here; the consumers
# are in plait.triggers.brokers (the model imports no client library).

#: NATS subject tokens and JetStream names: no whitespace; names also no ``.``, ``*``, ``>``.
_NATS_SUBJECT = re.compile(r"^[^\s]+$")
_NATS_NAME = re.compile(r"^[^\s.*>/\\]+$")


class BrokerTrigger(_Model):
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
            raise _shape_error(f"a broker trigger needs exactly one of connection or url{found}")
        return self


class RabbitMqTrigger(BrokerTrigger):
    queue: Annotated[str, Field(min_length=1, max_length=255)]
    exchange: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    routing_key: Annotated[str, Field(max_length=255)] | None = None
    prefetch: Annotated[StrictInt, Field(ge=1, le=65535)] = 10

    @model_validator(mode="after")
    def _binding(self) -> RabbitMqTrigger:
        if self.routing_key is not None and self.exchange is None:
            raise _shape_error("routing_key binds the queue to an exchange: give 'exchange' too")
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
            raise _shape_error(
                "a nats trigger needs a JetStream 'stream': core NATS delivers a message at "
                "most once, so one that arrives while Plait is down or restarting is lost"
            )
        if self.ack_wait < 1:
            raise _shape_error("ack_wait must be at least 1s")
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


class TriggerSpec(_Model):
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
            raise _shape_error(f"a trigger is exactly one of {names} or {TRIGGER_KINDS[-1]}{found}")
        return self

    @property
    def kind(self) -> str:
        return next(iter(self.model_fields_set))


def _default_notify_on() -> list[RunStatusName]:
    return ["failed", "timed_out"]


class NotifySpec(_Model):
    on: list[RunStatusName] = Field(default_factory=_default_notify_on)
    channel: str
    message: str | None = None


InputName = Annotated[str, Field(pattern=INPUT_NAME_PATTERN)]


class WorkflowSpec(_Model):
    """A whole workflow document (DESIGN §1)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    namespace: Annotated[str, Field(pattern=NAME_PATTERN)] = "default"
    labels: dict[str, Text] = Field(default_factory=dict)
    inputs: dict[InputName, InputSpec] = Field(default_factory=dict)
    env: dict[str, Text] = Field(default_factory=dict)
    defaults: DefaultsSpec | None = None
    timeout: Duration | None = None
    concurrency: ConcurrencySpec | None = None
    triggers: list[TriggerSpec] = Field(default_factory=list)
    steps: list[StepSpec] = Field(min_length=1)
    on_failure: list[StepSpec] = Field(default_factory=list)
    finally_: list[StepSpec] = Field(default_factory=list, alias="finally")
    notify: list[NotifySpec] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(default_factory=dict)


# --- error messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """A problem at a path of the validated data (``at_key``: point at the key itself)."""

    path: Path
    message: str
    kind: str = ""
    at_key: bool = False


def format_path(path: Sequence[str | int]) -> str:
    """``("steps", 2, "timeout")`` -> ``steps[2].timeout``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
