"""The workflow format of DESIGN §1 as pydantic models: what a file or the Python API says.

These models check the shape of a workflow — keys, types, durations, cron syntax, one
kind per step — and nothing that needs the whole document (ids, ``needs``, expression
references): that is :mod:`plait.model.compile`'s job. Unknown keys are errors. The
``triggers:`` models are in :mod:`plait.model.triggers`, the value types both share
(durations, text) in :mod:`plait.model.fields`.

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

from pydantic import AfterValidator, Field, StrictInt, WithJsonSchema, model_validator

from plait.model.fields import Count, Duration, Positive, SpecModel, Text, shape_error
from plait.model.triggers import TriggerSpec

# The trigger models live in plait.model.triggers; names imported from here stay working.
from plait.model.triggers import cron_problem as cron_problem

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


StepId = Annotated[str, Field(pattern=STEP_ID_PATTERN)]

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

# --- steps ----------------------------------------------------------------------------


class RetrySpec(SpecModel):
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


class StepSpec(SpecModel):
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
            raise shape_error("; ".join(problems))
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


class InputSpec(SpecModel):
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
                raise shape_error(f"enum value {value!r} is not {want}")
        if "default" in self.model_fields_set and self.default is not None:
            if not type_matches(self.type, self.default):
                raise shape_error(f"default {self.default!r} is not {want}")
            if self.enum is not None and self.default not in self.enum:
                raise shape_error(f"default {self.default!r} is not one of the enum values")
        return self


class DefaultsSpec(SpecModel):
    """Settings every step inherits unless it (or its group) says otherwise."""

    timeout: Duration | None = None
    retries: Retries | None = None
    on_error: OnErrorSpec | None = None
    env: dict[str, Text] | None = None
    queue: QueueName | None = None
    runs_on: RunsOn | None = None
    priority: Priority | None = None


class ConcurrencySpec(SpecModel):
    key: str | None = None
    limit: Positive = 1
    on_conflict: Literal["queue", "cancel_running", "skip"] = "queue"


def _default_notify_on() -> list[RunStatusName]:
    return ["failed", "timed_out"]


class NotifySpec(SpecModel):
    on: list[RunStatusName] = Field(default_factory=_default_notify_on)
    channel: str
    message: str | None = None


InputName = Annotated[str, Field(pattern=INPUT_NAME_PATTERN)]


class WorkflowSpec(SpecModel):
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
