"""The workflow models: every key of DESIGN §1 parses, and bad shapes are refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError as PydanticError

from plait.model.spec import (
    RetrySpec,
    StepSpec,
    WorkflowSpec,
    cron_problem,
    slugify,
    type_matches,
)

EVERY_KEY: dict[str, Any] = {
    "name": "every-key",
    "description": "uses every key",
    "namespace": "ops",
    "labels": {"stage": "prod", "tier": 1},
    "inputs": {
        "version": {"type": "string", "required": True, "description": "what to deploy"},
        "count": {"type": "integer", "default": 2, "enum": [1, 2, 3]},
        "ratio": {"type": "number", "default": 0.5},
        "dry": {"type": "boolean", "default": False},
        "opts": {"type": "object", "default": {"a": 1}},
        "hosts": {"type": "array", "default": ["a"]},
        "token": {"secret": True},
    },
    "env": {"APP": "/srv", "PORT": 8080, "DEBUG": True, "RATIO": 1.5},
    "defaults": {
        "timeout": "10m",
        "retries": {
            "max": 2,
            "backoff": "linear",
            "initial": "500ms",
            "factor": 1.5,
            "max_delay": "1m",
            "jitter": True,
        },
        "on_error": "continue",
        "env": {"X": 1},
    },
    "timeout": "1h30m",
    "concurrency": {"key": "k-${{ inputs.version }}", "limit": 2, "on_conflict": "skip"},
    "triggers": [
        {"manual": {}},
        {
            "schedule": {
                "cron": "0 2 * * *",
                "timezone": "Europe/Berlin",
                "catch_up": "all",
                "max_catch_up": 5,
                "inputs": {"version": "nightly"},
            }
        },
        {"webhook": {"secret": "${{ secrets.HOOK }}", "require_timestamp": True}},
        {"event": {"type": "run.succeeded", "workflow": "build", "if": "event.ok"}},
    ],
    "steps": [
        {
            "id": "a",
            "name": "First",
            "uses": "http",
            "with": {"url": "x"},
            "env": {"E": 1},
            "if": "inputs.dry",
            "needs": [],
            "timeout": 30,
            "retries": 3,
            "on_error": "retry",
            "outputs": {"o": "${{ result.outputs.x }}"},
            "for_each": [1, 2],
            "max_parallel": 2,
        },
        {
            "id": "g",
            "parallel": [{"id": "b", "run": "echo", "with": {"shell": "bash"}}],
            "max_parallel": 1,
            "if": True,
            "needs": "a",
        },
        {"id": "s", "sequence": [{"id": "c", "run": "echo c"}]},
    ],
    "on_failure": [{"id": "rollback", "run": "undo"}],
    "finally": [{"id": "cleanup", "run": "rm"}],
    "notify": [{"on": ["failed", "succeeded"], "channel": "ops", "message": "done"}],
    "outputs": {"url": "${{ steps.a.outputs.o }}"},
}


def test_every_key_parses() -> None:
    spec = WorkflowSpec.model_validate(EVERY_KEY, by_name=False)
    assert spec.namespace == "ops"
    assert spec.labels == {"stage": "prod", "tier": "1"}
    assert spec.env == {"APP": "/srv", "PORT": "8080", "DEBUG": "true", "RATIO": "1.5"}
    assert spec.inputs["count"].enum == [1, 2, 3]
    assert spec.inputs["token"].type == "string"
    assert spec.inputs["token"].secret
    assert spec.defaults is not None
    assert spec.defaults.timeout == 600
    assert spec.defaults.retries == RetrySpec(
        max=2, backoff="linear", initial=0.5, factor=1.5, max_delay=60, jitter=True
    )
    assert spec.timeout == 5400
    assert spec.concurrency is not None
    assert spec.concurrency.on_conflict == "skip"
    assert [t.kind for t in spec.triggers] == ["manual", "schedule", "webhook", "event"]
    assert spec.triggers[3].event is not None
    assert spec.triggers[3].event.if_ == "event.ok"
    first = spec.steps[0]
    assert first.with_ == {"url": "x"}
    assert first.if_ == "inputs.dry"
    assert first.needs == []
    assert (first.timeout, first.retries, first.on_error) == (30, 3, "retry")
    assert spec.steps[1].kind == "parallel"
    assert spec.steps[1].children[0].key == "b"
    assert spec.steps[2].kind == "sequence"
    assert spec.finally_[0].key == "cleanup"
    assert spec.notify[0].on == ["failed", "succeeded"]


def test_python_names_work_too() -> None:
    step = StepSpec(id="a", uses="x", with_={"k": 1}, if_="true")
    assert step.with_ == {"k": 1}
    assert step.if_ == "true"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        (90, 90),
        (1.5, 1.5),
        ("2d", 172800),
    ],
)
def test_durations(value: Any, seconds: float) -> None:
    assert StepSpec(id="a", run="x", timeout=value).timeout == seconds


@pytest.mark.parametrize("value", ["5 minutes", "soon", -1, True, [5]])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(PydanticError):
        StepSpec(id="a", run="x", timeout=value)


def test_id_is_derived_from_name() -> None:
    assert StepSpec.model_validate({"name": "Health Check!", "run": "x"}).id == "health-check"
    assert slugify("  Back up DB ") == "back-up-db"


def test_step_without_id_or_name_is_refused() -> None:
    with pytest.raises(PydanticError, match="needs an 'id'"):
        StepSpec.model_validate({"run": "x"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "a"}, "exactly one of uses, run, parallel or sequence"),
        ({"id": "a", "uses": "x", "run": "y"}, "(it has uses and run)"),
        ({"id": "a", "parallel": []}, "a parallel group needs at least one step"),
        ({"id": "a", "sequence": [{"id": "b", "run": "x"}], "with": {}}, "'with' is only"),
        ({"id": "a", "parallel": [{"id": "b", "run": "x"}], "for_each": [1]}, "'for_each'"),
        ({"id": "a", "parallel": [{"id": "b", "run": "x"}], "outputs": {}}, "'outputs'"),
        ({"id": "a", "run": "x", "max_parallel": 2}, "'max_parallel' is only"),
        ({"id": "a", "run": "x", "with": {"command": "y"}}, "either in run or in with.command"),
        ({"id": "-a", "run": "x"}, "should match pattern"),
        ({"id": "a", "run": "x", "max_parallel": 0}, "greater than or equal to 1"),
        ({"id": "a", "run": "x", "retries": True}, "retries"),
        ({"id": "a", "run": "x", "on_error": "ignore"}, "'fail', 'continue' or 'retry'"),
        ({"id": "a", "run": "x", "retries": {"factor": 0.5}}, "greater than or equal to 1"),
    ],
)
def test_bad_step_shapes(data: dict[str, Any], message: str) -> None:
    with pytest.raises(PydanticError) as info:
        StepSpec.model_validate(data)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "integer", "default": "3"}, "default '3' is not an integer"),
        ({"type": "string", "enum": ["a", 1]}, "enum value 1 is not text"),
        ({"enum": ["a", "b"], "default": "c"}, "not one of the enum values"),
        ({"type": "number", "default": True}, "is not a number"),
        ({"type": "date"}, "'string', 'integer'"),
    ],
)
def test_input_defaults_match_type_and_enum(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(PydanticError) as info:
        WorkflowSpec.model_validate(
            {"name": "w", "inputs": {"x": spec}, "steps": [{"id": "a", "run": "x"}]}
        )
    assert message in str(info.value)


def test_type_matches() -> None:
    assert type_matches("integer", 3)
    assert not type_matches("integer", True)
    assert type_matches("number", 3)
    assert type_matches("number", 2.5)
    assert type_matches("array", [1])
    assert type_matches("object", {})
    assert not type_matches("string", 1)
    assert type_matches("boolean", False)


@pytest.mark.parametrize(
    "trigger",
    [
        {"schedule": {"cron": "61 * * * *"}},
        {"schedule": {"cron": "* * *"}},
        {"schedule": {"cron": "0 2 * * *", "timezone": "Mars/Olympus"}},
        {"schedule": {"cron": "0 2 * * *", "catch_up": "some"}},
        {"manual": {}, "webhook": {}},
        {},
        {"cron": {}},
    ],
)
def test_bad_triggers(trigger: dict[str, Any]) -> None:
    with pytest.raises(PydanticError):
        WorkflowSpec.model_validate(
            {"name": "w", "triggers": [trigger], "steps": [{"id": "a", "run": "x"}]}
        )


def test_manual_trigger_may_be_null_and_cron_may_have_seconds() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "w",
            "triggers": [{"manual": None}, {"schedule": {"cron": "*/5 * * * * 30"}}],
            "steps": [{"id": "a", "run": "x"}],
        }
    )
    assert [t.kind for t in spec.triggers] == ["manual", "schedule"]


def test_cron_problem() -> None:
    assert cron_problem("0 2 * * 1-5") is None
    assert "5 fields" in (cron_problem("daily") or "")
    assert "not a valid" in (cron_problem("0 25 * * *") or "")


@pytest.mark.parametrize("name", ["Deploy", "-x", "a b", ""])
def test_workflow_name_pattern(name: str) -> None:
    with pytest.raises(PydanticError):
        WorkflowSpec.model_validate({"name": name, "steps": [{"id": "a", "run": "x"}]})


def test_steps_are_required_and_not_empty() -> None:
    with pytest.raises(PydanticError, match="steps"):
        WorkflowSpec.model_validate({"name": "w"})
    with pytest.raises(PydanticError, match="at least 1 item"):
        WorkflowSpec.model_validate({"name": "w", "steps": []})
