"""Event triggers: type wildcards, source filters, ``if`` conditions, loop guard."""

from __future__ import annotations

from typing import Any

import pytest

from plait.triggers.events import EventTrigger, Match, matches, type_matches, would_loop


def event(
    type_: str = "run.succeeded",
    workflow: str | None = "build",
    namespace: str = "default",
    **run: Any,
) -> dict[str, Any]:
    source = {"workflow": workflow, "namespace": namespace} if workflow else {}
    return {
        "type": type_,
        "source": source,
        "run": {"id": "r-1", "inputs": {"branch": "main"}, **run},
        "payload": {"artifact": "app-1.4.2.tar.gz"},
    }


# -- construction --------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["run.succeeded", "run.*", "*", "deploy.done", "run*"])
def test_valid_type_patterns(pattern: str) -> None:
    assert EventTrigger(pattern).type == pattern


@pytest.mark.parametrize("pattern", ["", "run.*.x", "*.failed", "run succeeded", "**", "r*n"])
def test_invalid_type_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="event type"):
        EventTrigger(pattern)


@pytest.mark.parametrize("field", ["workflow", "namespace", "if_"])
def test_empty_filters_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        EventTrigger("run.*", **{field: " "})


# -- type ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("run.succeeded", "run.succeeded", True),
        ("run.succeeded", "run.failed", False),
        ("run.succeeded", "run.succeeded.late", False),
        ("run.*", "run.succeeded", True),
        ("run.*", "run.failed", True),
        ("run.*", "run", False),
        ("run.*", "runner.started", False),
        ("run.*", "step.failed", False),
        ("*", "anything.at.all", True),
    ],
)
def test_type_matching(pattern: str, event_type: str, expected: bool) -> None:
    assert type_matches(pattern, event_type) is expected
    assert bool(matches(EventTrigger(pattern), event(event_type))) is expected


def test_the_reason_names_both_types() -> None:
    result = matches(EventTrigger("run.succeeded"), event("run.failed"))
    assert result == Match(False, "event type 'run.failed' does not match 'run.succeeded'")


# -- source --------------------------------------------------------------------------------


def test_source_workflow_must_match_when_given() -> None:
    trigger = EventTrigger("run.succeeded", workflow="build")
    assert matches(trigger, event(workflow="build"))
    miss = matches(trigger, event(workflow="lint"))
    assert not miss
    assert miss.reason == "source workflow 'lint' is not 'build'"


def test_a_published_event_without_source_matches_only_unfiltered_triggers() -> None:
    published = {"type": "release.published", "payload": {"version": "1.4.2"}}
    assert matches(EventTrigger("release.*"), published)
    assert not matches(EventTrigger("release.*", workflow="build"), published)
    assert not matches(EventTrigger("release.*", workflow="build"), {**published, "source": 3})


def test_source_namespace_must_match_when_given() -> None:
    trigger = EventTrigger("run.*", workflow="build", namespace="ops")
    assert matches(trigger, event(namespace="ops"))
    assert not matches(trigger, event(namespace="default"))
    assert matches(EventTrigger("run.*", workflow="build"), event(namespace="anything"))


# -- if ------------------------------------------------------------------------------------


def test_if_true_matches() -> None:
    trigger = EventTrigger("run.succeeded", "build", if_="event.run.inputs.branch == 'main'")
    assert matches(trigger, event()) == Match(True, "matched")


def test_if_false_does_not_match_and_says_so() -> None:
    trigger = EventTrigger("run.succeeded", "build", if_="event.run.inputs.branch == 'dev'")
    result = matches(trigger, event())
    assert not result
    assert result.reason == "if: \"event.run.inputs.branch == 'dev'\" is False"


def test_if_may_be_written_as_a_template() -> None:
    trigger = EventTrigger("run.*", if_="${{ event.payload.artifact.endswith('.tar.gz') }}")
    assert matches(trigger, event())


def test_if_is_truthy_like_a_step_condition() -> None:
    assert matches(EventTrigger("run.*", if_="event.payload.artifact"), event())
    assert not matches(EventTrigger("run.*", if_="event.run.inputs.get('tag')"), event())


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("event.run.inputs.tag == 'v1'", "no 'tag' here"),
        ("event.run.inputs.branch ==", "syntax error"),
        ("event.__class__.__mro__", "no '__class__' here"),
        ("1 / 0", "ZeroDivisionError"),
    ],
)
def test_an_erroring_if_is_no_match_with_the_reason_not_an_exception(
    condition: str, reason: str
) -> None:
    result = matches(EventTrigger("run.*", if_=condition), event())
    assert not result
    assert result.reason.startswith("if: ")
    assert reason in result.reason


def test_if_is_not_evaluated_when_the_type_does_not_match() -> None:
    result = matches(EventTrigger("run.failed", if_="1 / 0"), event())
    assert "does not match" in result.reason


# -- malformed events -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [{}, {"type": 3}, {"type": None}, [], "run.failed"])
def test_malformed_events_never_raise(bad: Any) -> None:
    assert matches(EventTrigger("*"), bad) == Match(False, "event has no type")


# -- loops ---------------------------------------------------------------------------------


def test_a_first_event_start_is_not_a_loop() -> None:
    assert not would_loop([], "deploy")
    assert not would_loop(["build"], "deploy")
    assert not would_loop(["build", "deploy"], "notify")


def test_a_workflow_already_in_the_chain_would_loop() -> None:
    assert would_loop(["alert"], "alert")  # `run.*` on itself
    assert would_loop(["build", "deploy"], "build")  # two workflows starting each other


def test_a_chain_at_the_depth_limit_would_loop() -> None:
    chain = [f"wf{i}" for i in range(10)]
    assert not would_loop(chain[:9], "next")
    assert would_loop(chain, "next")
    assert would_loop(chain[:3], "next", max_depth=3)
    assert not would_loop(chain[:2], "next", max_depth=3)
