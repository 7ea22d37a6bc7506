"""The value types every part of the workflow format shares, and its strict base model.

Durations accept ``500ms``, ``30s``, ``5m`` or a number of seconds; text accepts the
numbers and booleans YAML makes of unquoted values. :class:`SpecModel` refuses unknown
keys and freezes what it parses. Used by :mod:`plait.model.spec` and
:mod:`plait.model.triggers`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from plait.model.durations import parse_duration


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
Count = Annotated[StrictInt, Field(ge=0)]
Positive = Annotated[StrictInt, Field(ge=1)]


class SpecModel(BaseModel):
    """A part of a workflow document: unknown keys are errors, parsed values are frozen."""

    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=True, frozen=True
    )


def shape_error(message: str) -> PydanticCustomError:
    """A validation error whose message is said as it is (no pydantic prefix)."""
    return PydanticCustomError("shape", message)
