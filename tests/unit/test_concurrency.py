"""The concurrency rules without a database: what a new run does given its key's runs,
how the key is rendered and bounded, and what is written for each outcome."""

from __future__ import annotations

import pytest

from plait.engine.machine import RunMachine
from plait.engine.state import RunState, RunStatus, StepStatus
from plait.errors import ExpressionError
from plait.model import load_workflow
from plait.model.plan import ConcurrencyPlan, Plan
from plait.runtime.concurrency import (
    MAX_KEY_LENGTH,
    Decision,
    KeyRuns,
    decide,
    fit_key,
    has_room,
    new_run_records,
    render_key,
)
from plait.security.masking import Masker
from plait.store.server_concurrency import lock_id

KEY = "deploy-staging"


def policy(on_conflict: str = "queue", limit: int = 1) -> ConcurrencyPlan:
    return ConcurrencyPlan(KEY, limit, on_conflict)  # type: ignore[arg-type]


def seen(*active: str, cancelling: tuple[str, ...] = (), held: int = 0) -> KeyRuns:
    return KeyRuns(tuple(active), frozenset(cancelling), held)


# -- queue ------------------------------------------------------------------------------
def test_queue_starts_while_there_is_a_free_slot() -> None:
    assert decide(policy(limit=2), KEY, seen("a")) == Decision("start")


def test_queue_holds_a_run_when_the_key_is_full_and_says_why() -> None:
    decision = decide(policy(limit=2), KEY, seen("a", "b"))
    assert decision.action == "hold"
    assert decision.reason == "waiting for a concurrency slot: deploy-staging (limit 2)"
    assert decision.supersede == ()


def test_queue_never_overtakes_a_held_run_even_with_a_free_slot() -> None:
    assert decide(policy(limit=2), KEY, seen("a", held=1)).action == "hold"


def test_a_run_being_cancelled_still_holds_its_slot_under_queue() -> None:
    assert decide(policy(), KEY, seen("a", cancelling=("a",))).action == "hold"


# -- cancel_running ---------------------------------------------------------------------
def test_cancel_running_starts_at_once_and_supersedes_the_active_run() -> None:
    assert decide(policy("cancel_running"), KEY, seen("a")) == Decision("start", None, ("a",))


def test_cancel_running_supersedes_only_the_oldest_runs_needed_to_make_room() -> None:
    decision = decide(policy("cancel_running", limit=2), KEY, seen("a", "b", "c"))
    assert decision == Decision("start", None, ("a", "b"))


def test_cancel_running_leaves_runs_alone_while_there_is_room() -> None:
    assert decide(policy("cancel_running", limit=3), KEY, seen("a", "b")).supersede == ()


def test_cancel_running_does_not_cancel_a_run_twice() -> None:
    decision = decide(policy("cancel_running"), KEY, seen("a", "b", cancelling=("a",)))
    assert decision.supersede == ("b",)


# -- skip -------------------------------------------------------------------------------
def test_skip_starts_while_there_is_room() -> None:
    assert decide(policy("skip", limit=2), KEY, seen("a")) == Decision("start")


def test_skip_ends_the_run_with_the_number_of_active_runs() -> None:
    decision = decide(policy("skip", limit=2), KEY, seen("a", "b"))
    assert decision == Decision("skip", "skipped: deploy-staging already has 2 active run(s)")


def test_has_room_counts_active_runs_only() -> None:
    assert has_room(1, seen(held=3))
    assert not has_room(1, seen("a"))


def test_an_admitted_run_becomes_active_and_leaves_the_held_ones() -> None:
    after = seen("a", held=2).admitted("h1")
    assert after.active == ("a", "h1")
    assert after.held == 1


# -- keys -------------------------------------------------------------------------------
def test_the_key_is_rendered_from_inputs_trigger_and_run() -> None:
    scope = {
        "inputs": {"environment": "production"},
        "trigger": {"ref": "main"},
        "run": {"workflow": "deploy"},
    }
    key = "${{ run.workflow }}-${{ inputs.environment }}-${{ trigger.ref }}"
    assert render_key(key, scope) == "deploy-production-main"


def test_a_key_that_is_one_expression_becomes_text() -> None:
    assert render_key("${{ inputs.n }}", {"inputs": {"n": 3}}) == "3"


def test_secrets_never_appear_in_a_key() -> None:
    scope = {"inputs": {"token": "s3cr3t"}}
    assert render_key("k-${{ inputs.token }}", scope, Masker(["s3cr3t"])) == "k-***"


def test_a_key_with_an_unknown_name_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError):
        render_key("k-${{ inputs.missing }}", {"inputs": {}})


def test_long_keys_are_bounded_and_stay_distinct() -> None:
    a, b = "x" * 400 + "a", "x" * 400 + "b"
    assert fit_key("short") == "short"
    assert len(fit_key(a)) == MAX_KEY_LENGTH
    assert fit_key(a) != fit_key(b)
    assert fit_key(a) == fit_key(a)


def test_the_lock_id_is_a_stable_signed_64_bit_number_per_namespace_and_key() -> None:
    assert lock_id("ops", KEY) == lock_id("ops", KEY)
    assert lock_id("ops", KEY) != lock_id("dev", KEY)
    assert -(2**63) <= lock_id("ops", KEY) < 2**63


# -- records ----------------------------------------------------------------------------
SOURCE = """\
name: deploy
concurrency: {key: "deploy", limit: 1}
steps:
  - id: build
    run: echo build
  - id: ship
    run: echo ship
finally:
  - id: cleanup
    run: echo cleanup
"""


def machine() -> RunMachine:
    plan: Plan = load_workflow(SOURCE, "deploy.yaml").plan
    run = RunState(id="r1", workflow="deploy", version_id=1, concurrency_key="deploy")
    return RunMachine(plan, run, [])


def test_a_started_run_is_written_with_its_first_transition() -> None:
    m = machine()
    records = new_run_records(m, Decision("start"), 10.0)
    assert records.run.status is RunStatus.RUNNING
    by_key = {s.key: s.status for s in records.steps}
    assert by_key == {
        "build": StepStatus.QUEUED,
        "ship": StepStatus.PENDING,
        "cleanup": StepStatus.PENDING,
    }
    assert records.events[0].type == "run.started"


def test_a_held_run_runs_nothing_and_says_why() -> None:
    m = machine()
    reason = "waiting for a concurrency slot: deploy (limit 1)"
    records = new_run_records(m, Decision("hold", reason), 10.0)
    assert records.run.status is RunStatus.QUEUED
    assert records.run.reason == reason
    assert {s.status for s in records.steps} == {StepStatus.PENDING}
    assert len(records.steps) == 3
    assert [(e.type, e.data["reason"]) for e in records.events] == [("run.queued", reason)]


def test_a_skipped_run_ends_cancelled_without_running_even_finally() -> None:
    m = machine()
    reason = "skipped: deploy already has 1 active run(s)"
    records = new_run_records(m, Decision("skip", reason), 10.0)
    assert records.run.status is RunStatus.CANCELLED
    assert records.run.reason == reason
    assert records.run.started_at is None
    assert {s.status for s in records.steps} == {StepStatus.CANCELLED}
    assert [e.type for e in records.events][-1] == "run.cancelled"
