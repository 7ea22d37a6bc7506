"""Check the inputs given to a run against the workflow's declared inputs.

Values from the API arrive typed (JSON); values from the command line
(``plait run FILE -i count=3``) arrive as text and are coerced with ``from_strings``.
Every problem is reported at once, each message starting with the input's name
(``'count': expected an integer, got 'abc'``), so ``input <message>`` reads well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from plait.errors import InputError, Problem
from plait.model.plan import InputPlan, Plan
from plait.model.spec import TYPE_WORDS, did_you_mean, type_matches

_TRUE = frozenset({"true", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "no", "n", "off", "0"})


def coerce(type_: str, text: str) -> Any:
    """``text`` as a value of the input type; raises ValueError when it is not one."""
    if type_ == "string":
        return text
    if type_ == "integer":
        return int(text.strip())
    if type_ == "number":
        try:
            return int(text.strip())
        except ValueError:
            return float(text.strip())
    if type_ == "boolean":
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(text)
    return json.loads(text)


def _check(spec: InputPlan, value: Any, from_strings: bool) -> tuple[Any, str | None]:
    want = TYPE_WORDS[spec.type]
    if from_strings and isinstance(value, str):
        try:
            value = coerce(spec.type, value)
        except ValueError:
            return value, f"{spec.name!r}: expected {want}, got {value!r}"
    if not type_matches(spec.type, value):
        shown = repr(value) if len(repr(value)) < 60 else f"{repr(value)[:57]}..."
        return value, f"{spec.name!r}: expected {want}, got {shown}"
    if spec.enum is not None and value not in spec.enum:
        allowed = ", ".join(str(v) for v in spec.enum)
        return value, f"{spec.name!r}: {value!r} is not one of: {allowed}"
    return value, None


def has_lone_surrogate(value: Any) -> bool:
    """Whether a string inside ``value`` holds a lone surrogate (``"\\ud800"`` in JSON):
    such a value cannot be stored or sent back as UTF-8, so it is refused at the door."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, Mapping):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_lone_surrogate(v) for v in value)
    return False


def validate_inputs(
    plan: Plan, given: Mapping[str, Any], *, from_strings: bool = False
) -> dict[str, Any]:
    """The run's inputs: given values checked and coerced, defaults filled in.

    A declared input that is neither given, required nor defaulted is ``None``. Raises
    :class:`InputError` listing every problem (unknown, missing, wrong type, not in
    ``enum``).
    """
    problems: list[tuple[str, str]] = []
    for name in given:
        if name not in plan.inputs:
            if plan.inputs:
                hint = did_you_mean(name, list(plan.inputs))
                problems.append((name, f"{name!r} is not an input of this workflow{hint}"))
            else:
                problems.append((name, f"{name!r} is not an input (the workflow declares none)"))
    values: dict[str, Any] = {}
    for name, spec in plan.inputs.items():
        if name in given:
            values[name], problem = _check(spec, given[name], from_strings)
            if problem is None and has_lone_surrogate(given[name]):
                problem = f"{name!r} contains a lone UTF-16 surrogate, which is not text"
            if problem:
                problems.append((name, problem))
        elif spec.has_default:
            values[name] = spec.default
        elif spec.required:
            problems.append((name, f"{name!r} is required"))
        else:
            values[name] = None
    if problems:
        raise InputError([Problem(m, file="inputs", path=("inputs", n)) for n, m in problems])
    return values
