"""The run rules for starting and running steps, one focused test per behaviour.

No database and no clock: plans are built by hand and time is passed in.
"""

from __future__ import annotations

from plait.engine.api import Outcome
from plait.engine.state import RunStatus
from plait.model.plan import RetryPolicy
from tests.unit.test_engine_support import (
    T0,
    S,
    drive,
    fail,
    machine,
    ok,
    par,
    plan,
    queued,
    run_status,
    run_step,
    seq,
    status,
    statuses,
    step,
    types,
)

R = RunStatus


# ------------------------------------------------------------------ 1. start


def test_start_runs_the_first_step_and_reports_every_new_step() -> None:
    m = machine(plan(step("a"), step("b"), timeout=60))
    tx = m.start(T0)
    assert run_status(m) is R.RUNNING
    assert m.run.started_at == T0
    assert m.run.deadline == T0 + 60
    assert types(tx) == ["run.started", "step.queued"]
    assert {s.key for s in tx.steps} == {"a", "b"}
    assert all(m.steps[s.key] is s for s in tx.steps)
    assert m.steps["a"].reason == "waiting for a free worker"
    assert status(m, "b") is S.PENDING
    assert m.steps["b"].reason == "waiting for a"
    assert m.start(T0).events == []  # starting twice changes nothing


def test_an_empty_workflow_succeeds_at_once() -> None:
    m = machine(plan())
    assert types(m.start(T0)) == ["run.started", "run.succeeded"]
    assert m.finished
    assert run_status(m) is R.SUCCEEDED


def test_waiting_reason_names_only_the_unfinished_needs() -> None:
    m = machine(plan(par("p", step("a"), step("b")), step("c", needs=["a", "b"]), step("x")))
    # c's needs are outside its container here only to test the reason text.
    m.start(T0)
    run_step(m, "a")
    assert m.steps["c"].reason == "waiting for b"


# ------------------------------------------------------------------ 2. considering


def test_a_step_after_a_failure_is_skipped_and_the_run_fails() -> None:
    m = drive(machine(plan(step("a"), step("b"))), {"a": [fail("bad")]})
    assert statuses(m) == {"a": "failed", "b": "skipped"}
    assert m.steps["b"].reason == "skipped: an earlier step failed"
    assert run_status(m) is R.FAILED
    assert m.run.failed_phases == ["main"]
    assert "bad" in (m.run.error or "")


def test_if_false_skips_and_dependents_still_run() -> None:
    m = drive(machine(plan(step("a", if_="false"), step("b"))))
    assert statuses(m) == {"a": "skipped", "b": "succeeded"}
    assert m.steps["a"].reason == "skipped: if false was false"
    assert run_status(m) is R.SUCCEEDED


def test_if_sees_inputs_and_earlier_outputs() -> None:
    p = plan(step("a"), step("b", if_="steps.a.outputs.v == 'a' and inputs.go"))
    m = drive(machine(p, inputs={"go": True}))
    assert status(m, "b") is S.SUCCEEDED


def test_an_if_that_cannot_be_evaluated_fails_the_step_without_retries() -> None:
    p = plan(step("a", if_="nope.x", retry=2), step("b"))
    m = drive(machine(p))
    assert status(m, "a") is S.FAILED
    assert m.steps["a"].attempt == 0
    assert "nope" in (m.steps["a"].error or "")
    assert status(m, "b") is S.SKIPPED
    assert run_status(m) is R.FAILED


def test_on_error_continue_keeps_the_run_going_and_it_can_succeed() -> None:
    m = drive(machine(plan(step("a", on_error="continue"), step("b"))), {"a": [fail()]})
    assert statuses(m) == {"a": "failed", "b": "succeeded"}
    assert run_status(m) is R.SUCCEEDED


def test_parallel_children_start_together_once_the_group_runs() -> None:
    m = machine(plan(step("a"), par("g", step("b"), step("c")), step("d")))
    m.start(T0)
    assert queued(m) == ["a"]
    assert status(m, "g") is S.PENDING
    tx = run_step(m, "a")
    assert status(m, "g") is S.RUNNING
    assert queued(m) == ["b", "c"]
    assert types(tx)[-3:] == ["step.running", "step.queued", "step.queued"]
    run_step(m, "b")
    assert status(m, "g") is S.RUNNING
    assert status(m, "d") is S.PENDING
    run_step(m, "c")
    assert status(m, "g") is S.SUCCEEDED
    assert queued(m) == ["d"]


def test_a_sequence_runs_its_children_one_after_another() -> None:
    m = machine(plan(seq("s", step("a"), step("b"))))
    m.start(T0)
    assert queued(m) == ["a"]
    run_step(m, "a")
    assert queued(m) == ["b"]


def test_needs_empty_starts_at_once() -> None:
    m = machine(plan(step("a"), step("b", needs=[])))
    m.start(T0)
    assert queued(m) == ["a", "b"]


# ------------------------------------------------------------------ for_each (2, 6)


def test_for_each_fans_out_items_with_item_and_index_in_scope() -> None:
    m = machine(plan(step("f", for_each=["x", "y", "z"], max_parallel=2)))
    m.start(T0)
    assert status(m, "f") is S.RUNNING
    assert m.steps["f"].items == 3
    assert queued(m) == ["f[0]", "f[1]"]
    assert status(m, "f[2]") is S.PENDING
    item = m.steps["f[1]"]
    assert (item.node, item.parent, item.item, item.index) == ("f", "f", "y", 1)
    assert m.scope("f[1]")["item"] == "y"
    assert m.scope("f[1]")["index"] == 1
    run_step(m, "f[0]", ok(n=0))
    assert queued(m) == ["f[1]", "f[2]"]
    run_step(m, "f[1]", ok(n=1, extra=True))
    run_step(m, "f[2]", ok(n=2))
    assert status(m, "f") is S.SUCCEEDED
    assert m.steps["f"].outputs == {"n": [0, 1, 2], "extra": [None, True, None]}
    assert run_status(m) is R.SUCCEEDED


def test_for_each_expression_keeps_its_list_type() -> None:
    m = machine(plan(step("f", for_each="${{ inputs.targets }}")), inputs={"targets": [1, 2]})
    m.start(T0)
    assert [m.steps[k].item for k in queued(m)] == [1, 2]


def test_for_each_that_is_not_a_list_fails_clearly() -> None:
    m = drive(machine(plan(step("f", for_each="${{ 'abc' }}"))))
    assert status(m, "f") is S.FAILED
    assert m.steps["f"].error == "for_each must give a list, got str"


def test_for_each_over_an_empty_list_succeeds_with_empty_outputs() -> None:
    m = drive(machine(plan(step("f", for_each=[]), step("b"))))
    assert status(m, "f") is S.SUCCEEDED
    assert m.steps["f"].outputs == {}
    assert status(m, "b") is S.SUCCEEDED


def test_failed_items_fail_the_parent_after_all_items_end() -> None:
    m = drive(machine(plan(step("f", for_each=[1, 2, 3], retry=1))), {"f[1]": [fail(), fail()]})
    assert m.steps["f[1]"].attempt == 2  # items inherit the retry policy
    assert [m.steps[f"f[{i}]"].status for i in range(3)] == [S.SUCCEEDED, S.FAILED, S.SUCCEEDED]
    assert status(m, "f") is S.FAILED
    assert m.steps["f"].error == "1 of 3 items failed"
    assert run_status(m) is R.FAILED


def test_pending_items_are_skipped_when_the_phase_fails() -> None:
    m = machine(plan(par("g", step("f", for_each=[1, 2, 3], max_parallel=1), step("x"))))
    m.start(T0)
    run_step(m, "x", fail())
    assert status(m, "f[1]") is S.SKIPPED
    assert status(m, "f[2]") is S.SKIPPED
    assert status(m, "f[0]") is S.QUEUED  # already started: it finishes
    run_step(m, "f[0]")
    assert m.steps["f"].status.terminal
    assert run_status(m) is R.FAILED


# ------------------------------------------------------------------ 3-4. attempts


def test_attempt_started_marks_running_and_keeps_the_first_start_time() -> None:
    m = machine(plan(step("a", retry=1)))
    m.start(T0)
    tx = m.attempt_started("a", 1, T0 + 1)
    assert types(tx) == ["step.running"]
    assert m.steps["a"].started_at == T0 + 1
    m.attempt_finished("a", 1, fail(), T0 + 2)
    m.attempt_started("a", 2, T0 + 5)
    assert m.steps["a"].started_at == T0 + 1
    assert m.steps["a"].attempt == 2


def test_success_records_outputs_and_scope_sees_the_sealed_values() -> None:
    m = machine(plan(step("a"), step("b")))
    m.start(T0)
    out = Outcome("succeeded", outputs={"token": "***", "n": 1}, sealed_outputs={"token": "s3"})
    run_step(m, "a", out)
    assert m.steps["a"].outputs == {"token": "***", "n": 1}
    assert m.scope("b")["steps"]["a"] == {"status": "succeeded", "outputs": {"token": "s3", "n": 1}}


def test_retry_waits_then_fails_after_the_last_retry() -> None:
    policy = RetryPolicy(max=2, backoff="exponential", initial=10, factor=3)
    m = machine(plan(step("a", retry=policy)))
    m.start(T0)
    tx = run_step(m, "a", fail("e1"))
    a = m.steps["a"]
    assert status(m, "a") is S.RETRYING
    assert a.available_at == T0 + 10
    assert a.reason == "retry 1 of 2 at 1970-01-12T13:46:50Z"
    assert tx.events[-1].type == "step.retrying"
    assert tx.events[-1].data == {"attempt": 1, "error": "e1", "delay": 10}
    run_step(m, "a", fail("e2"))
    assert a.available_at == T0 + 30
    run_step(m, "a", Outcome("timed_out", error="too slow"))
    assert status(m, "a") is S.TIMED_OUT
    assert a.error == "too slow"
    assert a.attempt == 3
    assert run_status(m) is R.FAILED


def test_a_failure_marked_not_retryable_fails_at_once() -> None:
    m = machine(plan(step("a", retry=3)))
    m.start(T0)
    run_step(m, "a", fail(retryable=False))
    assert status(m, "a") is S.FAILED
    assert m.steps["a"].attempt == 1


def test_interruptions_start_again_without_using_retries_and_the_third_fails() -> None:
    m = machine(plan(step("a", retry=1)))
    m.start(T0)
    run_step(m, "a", Outcome("interrupted"))
    assert status(m, "a") is S.QUEUED
    assert m.steps["a"].reason == "interrupted; starting again"
    run_step(m, "a", fail())
    assert status(m, "a") is S.RETRYING  # attempt 2, but only one retry used
    run_step(m, "a", Outcome("interrupted"))
    run_step(m, "a", Outcome("interrupted"))
    a = m.steps["a"]
    assert a.status is S.FAILED
    assert a.interruptions == 3
    assert a.attempt == 4
    assert a.error == "interrupted 3 times; the step may be what kills the process"


def test_suspended_step_waits_and_the_same_attempt_completes_it() -> None:
    m = machine(plan(step("a")))
    m.start(T0)
    m.attempt_started("a", 1, T0)
    tx = m.attempt_finished("a", 1, Outcome("suspended", resume_at=T0 + 60, reason="approval"), T0)
    a = m.steps["a"]
    assert (a.status, a.available_at, a.reason) == (S.WAITING, T0 + 60, "approval")
    assert run_status(m) is R.WAITING
    assert m.run.reason == "approval"
    assert types(tx) == ["step.waiting", "run.waiting"]
    tx = m.attempt_finished("a", 1, ok(), T0 + 60)
    assert a.status is S.SUCCEEDED
    assert run_status(m) is R.SUCCEEDED


def test_a_resumed_waiting_step_runs_again_and_the_run_is_running() -> None:
    m = machine(plan(step("a")))
    m.start(T0)
    m.attempt_started("a", 1, T0)
    m.attempt_finished("a", 1, Outcome("suspended", resume_at=T0 + 1), T0)
    tx = m.attempt_started("a", 1, T0 + 1)
    assert status(m, "a") is S.RUNNING
    assert types(tx) == ["step.running", "run.running"]


def test_stale_and_duplicate_attempt_results_are_ignored() -> None:
    m = machine(plan(step("a", retry=2)))
    m.start(T0)
    run_step(m, "a", fail())
    m.attempt_started("a", 2, T0 + 2)
    for late in (1, 3):
        assert m.attempt_finished("a", late, ok(), T0 + 3) == type(m.start(T0))()
    assert status(m, "a") is S.RUNNING
    m.attempt_finished("a", 2, ok(), T0 + 3)
    assert m.attempt_finished("a", 2, fail(), T0 + 4).steps == []  # a duplicate
    assert m.attempt_started("a", 2, T0 + 4).steps == []
    assert status(m, "a") is S.SUCCEEDED


def test_a_stale_result_after_an_interruption_is_ignored() -> None:
    m = machine(plan(step("a")))
    m.start(T0)
    run_step(m, "a", Outcome("interrupted"))  # attempt 1 requeued
    assert m.attempt_finished("a", 1, ok(), T0).steps == []
    assert m.attempt_started("a", 1, T0).steps == []  # attempt numbers only go up
    assert status(m, "a") is S.QUEUED


def test_the_engine_package_exports_its_public_names() -> None:
    import plait.engine

    assert sorted(plait.engine.__all__) == [
        "AttemptRecord",
        "AttemptStatus",
        "Event",
        "Outcome",
        "OutcomeKind",
        "RunState",
        "RunStatus",
        "STEP_ACTIVE",
        "STEP_TERMINAL",
        "StepState",
        "StepStatus",
        "Transition",
        "base_delay",
        "delay_bounds",
        "retry_delay",
    ]
