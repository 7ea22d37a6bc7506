"""The run rules for how steps, groups, phases and runs end: failure, cancel, deadline."""

from __future__ import annotations

import copy
import time

import pytest

from plait.engine.api import Outcome
from plait.engine.machine import RunMachine
from plait.engine.state import RunStatus, StepState
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


# ------------------------------------------------------------------ 5. failing mode


def test_failing_mode_lets_running_steps_finish_and_runs_status_checking_ifs() -> None:
    p = plan(
        par("g", step("a"), step("b")),
        step("skipme"),
        step("on_fail", if_="failure()", needs=["g"]),
        step("last", if_="always()"),
        step("ok_only", if_="success()"),
    )
    m = machine(p)
    m.start(T0)
    run_step(m, "a", fail())
    assert status(m, "b") is S.QUEUED
    assert status(m, "skipme") is S.SKIPPED  # at once, before b ends
    assert status(m, "on_fail") is S.PENDING  # waits for g
    assert status(m, "last") is S.PENDING  # waits for on_fail
    run_step(m, "b")
    assert status(m, "g") is S.FAILED
    drive(m)
    assert statuses(m) == {
        "g": "failed",
        "a": "failed",
        "b": "succeeded",
        "skipme": "skipped",
        "on_fail": "succeeded",
        "last": "succeeded",
        "ok_only": "skipped",
    }
    assert run_status(m) is R.FAILED


def test_retry_on_error_behaves_as_fail_after_its_retries() -> None:
    p = plan(step("a", on_error="retry", retry=1), step("b"))
    m = drive(machine(p), {"a": [fail(), fail()]})
    assert statuses(m) == {"a": "failed", "b": "skipped"}
    assert run_status(m) is R.FAILED


# ------------------------------------------------------------------ 7. groups


@pytest.mark.parametrize(
    ("children", "outcomes", "expected"),
    [
        ([step("a"), step("b")], {}, "succeeded"),
        ([step("a"), step("b")], {"a": [fail()]}, "failed"),
        ([step("a", on_error="continue"), step("b")], {"a": [fail()]}, "succeeded"),
        ([step("a", if_="false"), step("b", if_="false")], {}, "skipped"),
        ([], {}, "succeeded"),
    ],
)
def test_a_group_ends_by_its_children(
    children: list[object], outcomes: dict[str, list[Outcome]], expected: str
) -> None:
    m = drive(machine(plan(par("g", *children), step("after"))), outcomes)  # type: ignore[arg-type]
    assert str(m.steps["g"].status) == expected


def test_a_group_that_does_not_run_ends_all_its_children() -> None:
    p = plan(par("g", step("a"), seq("s", step("b"), step("c", if_="always()")), if_="false"))
    m = drive(machine(p))
    assert set(statuses(m).values()) == {"skipped"}
    assert run_status(m) is R.SUCCEEDED


# ------------------------------------------------------------------ 8. phases


def test_on_failure_runs_only_when_main_failed_and_finally_always_runs() -> None:
    p = plan(step("a"), on_failure=[step("rollback")], finally_=[step("cleanup")])
    good = drive(machine(p))
    assert statuses(good) == {"a": "succeeded", "rollback": "skipped", "cleanup": "succeeded"}
    assert good.steps["rollback"].reason == "skipped: the run did not fail"
    bad = drive(machine(p), {"a": [fail()]})
    assert statuses(bad) == {"a": "failed", "rollback": "succeeded", "cleanup": "succeeded"}
    assert bad.run.status is R.FAILED


def test_finally_waits_for_on_failure() -> None:
    p = plan(step("a"), on_failure=[step("rb")], finally_=[step("fin")])
    m = machine(p)
    m.start(T0)
    run_step(m, "a", fail())
    assert queued(m) == ["rb"]
    assert status(m, "fin") is S.PENDING
    run_step(m, "rb")
    assert queued(m) == ["fin"]


def test_a_failure_in_finally_fails_the_run_and_skips_the_rest_of_finally() -> None:
    m = drive(machine(plan(step("a"), finally_=[step("f1"), step("f2")])), {"f1": [fail()]})
    assert statuses(m) == {"a": "succeeded", "f1": "failed", "f2": "skipped"}
    assert run_status(m) is R.FAILED
    assert m.run.failed_phases == ["finally"]


def test_run_outputs_are_rendered_at_the_end() -> None:
    p = plan(step("a"), outputs={"v": "${{ steps.a.outputs.v }}", "n": "${{ 1 + 1 }}"})
    m = drive(machine(p))
    assert m.run.outputs == {"v": "a", "n": 2}
    assert run_status(m) is R.SUCCEEDED


def test_an_output_that_cannot_be_rendered_fails_the_run() -> None:
    m = drive(machine(plan(step("a"), outputs={"v": "${{ steps.a.outputs.missing }}"})))
    assert run_status(m) is R.FAILED
    assert "missing" in (m.run.error or "")
    assert m.run.outputs is None


# ------------------------------------------------------------------ 9. cancel


def test_cancel_stops_main_and_still_runs_finally() -> None:
    p = plan(
        par("g", step("a"), step("b")),
        step("c"),
        step("tidy", if_="cancelled()", needs=["g"]),
        on_failure=[step("rb")],
        finally_=[step("fin")],
    )
    m = machine(p)
    m.start(T0)
    m.attempt_started("a", 1, T0)
    tx = m.cancel(T0 + 1, "stop it")
    assert tx.cancel == ["a"]
    assert m.run.cancel_requested
    assert m.run.reason == "stop it"
    assert statuses(m) | {"a": "-"} == {
        "g": "running",
        "a": "-",
        "b": "cancelled",
        "c": "cancelled",
        "tidy": "pending",
        "rb": "cancelled",
        "fin": "pending",
    }
    m.attempt_finished("a", 1, Outcome("cancelled"), T0 + 2)
    assert status(m, "a") is S.CANCELLED
    assert status(m, "g") is S.CANCELLED
    assert queued(m) == ["tidy"]
    run_step(m, "tidy")
    assert queued(m) == ["fin"]
    tx = run_step(m, "fin")
    assert run_status(m) is R.CANCELLED
    assert types(tx)[-1] == "run.cancelled"
    assert m.cancel(T0 + 9) == type(tx)()  # a finished run: no-op


def test_a_failed_step_is_not_retried_once_the_run_is_cancelled() -> None:
    m = machine(plan(step("a", retry=3)))
    m.start(T0)
    m.attempt_started("a", 1, T0)
    m.cancel(T0)
    m.attempt_finished("a", 1, fail(), T0)
    assert status(m, "a") is S.FAILED
    assert run_status(m) is R.CANCELLED


def test_cancelling_a_queued_run_ends_it_at_once() -> None:
    m = machine(plan(step("a"), finally_=[step("f")]))
    tx = m.cancel(T0, "no longer needed")
    assert run_status(m) is R.CANCELLED
    assert set(statuses(m).values()) == {"cancelled"}
    assert types(tx)[-1] == "run.cancelled"
    assert len(tx.steps) == 2


# ------------------------------------------------------------------ 10. deadline


def test_the_run_deadline_times_out_main_then_runs_recovery() -> None:
    p = plan(
        par("g", step("a"), step("b", retry=2)),
        step("c", if_="always()"),
        on_failure=[step("rb")],
        finally_=[step("fin")],
        timeout=60,
    )
    m = machine(p)
    m.start(T0)
    m.attempt_started("a", 1, T0)
    run_step(m, "b", fail())
    assert status(m, "b") is S.RETRYING
    tx = m.deadline_passed(T0 + 60)
    assert tx.cancel == ["a"]
    assert m.run.timed_out
    assert status(m, "b") is S.TIMED_OUT
    assert status(m, "c") is S.SKIPPED
    m.attempt_finished("a", 1, Outcome("cancelled"), T0 + 61)
    assert status(m, "a") is S.TIMED_OUT
    assert queued(m) == ["rb"]
    drive(m, now=T0 + 61)
    assert statuses(m)["fin"] == "succeeded"
    assert run_status(m) is R.TIMED_OUT


# ------------------------------------------------------------------ 11-12. run status, scope


def test_run_status_follows_its_steps() -> None:
    m = machine(plan(par("g", step("a"), step("b"))))
    m.start(T0)
    m.attempt_started("a", 1, T0)
    m.attempt_finished("a", 1, Outcome("suspended", reason="sleeping"), T0)
    assert run_status(m) is R.RUNNING  # b is still queued
    m.attempt_started("b", 1, T0)
    tx = m.attempt_finished("b", 1, Outcome("suspended", reason="approval"), T0)
    assert run_status(m) is R.WAITING
    assert m.run.reason == "sleeping"
    assert "run.waiting" in types(tx)


def test_scope_holds_everything_an_expression_may_use() -> None:
    p = plan(step("a", env={"X": "step"}), step("b"), env={"X": "wf", "Y": "y"})
    m = machine(
        p,
        inputs={"v": "1.0", "token": "***"},
        sealed_inputs={"token": "real"},
        trigger={"type": "webhook", "payload": {"ref": "main"}},
        secrets={"KEY": "k"},
    )
    m.start(T0)
    s = m.scope("a")
    assert s["inputs"] == {"v": "1.0", "token": "real"}
    assert s["env"] == {"X": "step", "Y": "y"}
    assert m.scope("b")["env"]["X"] == "wf"
    assert s["steps"] == {
        "a": {"status": "queued", "outputs": {}},
        "b": {"status": "pending", "outputs": {}},
    }
    assert s["run"] == {
        "id": "run-1",
        "workflow": "test",
        "namespace": "default",
        "attempt": 1,
        "trigger": "webhook",
    }
    assert s["trigger"] == {"ref": "main"}
    assert s["secrets"] == {"KEY": "k"}
    assert s["success"]()
    assert not s["failure"]()
    assert s["always"]()
    assert not s["cancelled"]()
    assert "item" not in s
    assert "item" not in m.run_scope()


def test_status_functions_answer_for_the_run_as_it_is_now() -> None:
    m = machine(plan(step("a"), finally_=[step("f")]))
    m.start(T0)
    s = m.scope("f")
    run_step(m, "a", fail())
    assert s["failure"]()
    assert s["success"]()
    assert not m.scope("a")["success"]()
    assert not m.run_scope()["success"]()


# ------------------------------------------------------------------ crash recovery


def test_a_rebuilt_machine_continues_exactly_like_the_original() -> None:
    p = plan(
        step("a"),
        par("g", step("f", for_each=[1, 2, 3], max_parallel=1), step("b", retry=1)),
        step("c", needs=["a"]),
        finally_=[step("fin")],
    )
    m = machine(p)
    m.start(T0)
    run_step(m, "a")
    run_step(m, "f[0]")
    run_step(m, "b", fail())
    m.attempt_started("f[1]", 1, T0)
    copies = copy.deepcopy(list(m.steps.values()))
    twin = RunMachine(p, copy.deepcopy(m.run), copies)
    for each in (m, twin):
        each.attempt_finished("f[1]", 1, ok(), T0 + 1)
        drive(each, now=T0 + 1)
    assert twin.run == m.run
    assert twin.steps == m.steps
    assert twin.run.status is R.SUCCEEDED


def test_steps_missing_from_the_store_are_created_and_reported() -> None:
    p = plan(step("a"), step("b"))
    m = RunMachine(p, machine(p).run, [StepState(key="a", node="a")])
    tx = m.start(T0)
    assert sorted(s.key for s in tx.steps) == ["a", "b"]


# ------------------------------------------------------------------ cost


def test_a_thousand_sequential_steps_cost_little_engine_time() -> None:
    n = 1_000
    m = machine(plan(*[step(f"s{i}") for i in range(n)]))
    began = time.perf_counter()
    m.start(T0)
    for i in range(n):
        run_step(m, f"s{i}", ok(i=i))
    elapsed = time.perf_counter() - began
    assert run_status(m) is R.SUCCEEDED
    assert elapsed < 2.0  # about 10 µs a step in practice; this bound cannot flake


def test_run_outputs_never_hold_a_secret_in_plain_text() -> None:
    p = plan(step("a"), outputs={"h": "Bearer ${{ inputs.token }}", "k": "${{ secrets.KEY }}"})
    m = machine(
        p, inputs={"token": "***"}, sealed_inputs={"token": "t0ken"}, secrets={"KEY": "s3cret"}
    )
    drive(m)
    assert m.run.outputs == {"h": "Bearer ***", "k": "***"}
