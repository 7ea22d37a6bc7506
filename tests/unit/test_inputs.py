"""validate_inputs: defaults, required, enum, types, and coercion from the command line."""

from __future__ import annotations

from typing import Any

import pytest

from plait.errors import InputError
from plait.model import compile_spec, validate_inputs
from plait.model.plan import Plan
from plait.model.spec import WorkflowSpec


@pytest.fixture(scope="module")
def plan() -> Plan:
    return compile_spec(
        WorkflowSpec.model_validate(
            {
                "name": "w",
                "inputs": {
                    "version": {"required": True},
                    "environment": {"default": "staging", "enum": ["staging", "production"]},
                    "count": {"type": "integer", "default": 1},
                    "ratio": {"type": "number"},
                    "dry": {"type": "boolean", "default": False},
                    "opts": {"type": "object"},
                    "hosts": {"type": "array"},
                    "note": {},
                    "empty": {"default": None},
                },
                "steps": [{"id": "a", "run": "x"}],
            }
        )
    )


def test_defaults_fill_in_and_optional_inputs_are_none(plan: Plan) -> None:
    assert validate_inputs(plan, {"version": "1.2"}) == {
        "version": "1.2",
        "environment": "staging",
        "count": 1,
        "ratio": None,
        "dry": False,
        "opts": None,
        "hosts": None,
        "note": None,
        "empty": None,
    }


def test_typed_values_pass(plan: Plan) -> None:
    values = validate_inputs(
        plan,
        {
            "version": "1",
            "count": 3,
            "ratio": 2,
            "dry": True,
            "opts": {"a": 1},
            "hosts": ["h"],
            "environment": "production",
        },
    )
    assert (values["count"], values["ratio"], values["dry"]) == (3, 2, True)
    assert values["opts"] == {"a": 1}
    assert values["hosts"] == ["h"]


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        ("7", "count", 7),
        ("-2", "count", -2),
        ("2.5", "ratio", 2.5),
        ("3", "ratio", 3),
        ("yes", "dry", True),
        ("FALSE", "dry", False),
        ("1", "dry", True),
        ("no", "dry", False),
        ('{"a": [1]}', "opts", {"a": [1]}),
        ('["x", "y"]', "hosts", ["x", "y"]),
        ("42", "note", "42"),
    ],
)
def test_from_strings_coerces(plan: Plan, text: str, name: str, value: Any) -> None:
    values = validate_inputs(plan, {"version": "1", name: text}, from_strings=True)
    assert values[name] == value
    assert type(values[name]) is type(value)


def test_without_from_strings_text_is_not_a_number(plan: Plan) -> None:
    with pytest.raises(InputError) as info:
        validate_inputs(plan, {"version": "1", "count": "7"})
    assert [p.message for p in info.value.problems] == ["'count': expected an integer, got '7'"]


def test_every_problem_is_reported_naming_the_input(plan: Plan) -> None:
    with pytest.raises(InputError) as info:
        validate_inputs(
            plan,
            {
                "verison": "1",
                "count": "many",
                "dry": "maybe",
                "opts": "[1]",
                "hosts": "{",
                "environment": "prod",
                "ratio": "x",
            },
            from_strings=True,
        )
    assert [p.message for p in info.value.problems] == [
        "'verison' is not an input of this workflow (did you mean 'version'?)",
        "'version' is required",
        "'environment': 'prod' is not one of: staging, production",
        "'count': expected an integer, got 'many'",
        "'ratio': expected a number, got 'x'",
        "'dry': expected true or false, got 'maybe'",
        "'opts': expected a mapping, got [1]",
        "'hosts': expected a list, got '{'",
    ]
    assert str(info.value.problems[1]) == "inputs: 'version' is required"
    assert info.value.problems[1].path == ("inputs", "version")


def test_booleans_are_not_integers(plan: Plan) -> None:
    with pytest.raises(InputError, match="'count': expected an integer, got True"):
        validate_inputs(plan, {"version": "1", "count": True})


def test_workflow_without_inputs() -> None:
    bare = compile_spec(
        WorkflowSpec.model_validate({"name": "w", "steps": [{"id": "a", "run": "x"}]})
    )
    assert validate_inputs(bare, {}) == {}
    with pytest.raises(InputError, match="declares none"):
        validate_inputs(bare, {"x": 1})
