"""The Python builder: the same model as YAML, compiled to the same plan."""

from __future__ import annotations

import dataclasses
import sys
import types
from datetime import timedelta
from typing import Any

import pytest

from plait import Step, Workflow, parallel, sequence
from plait.errors import ValidationError
from plait.model import load_workflow
from plait.model.plan import NO_RETRY, Plan, RetryPolicy


def backup_database() -> str:
    return "Database backup created"


def health_check() -> bool:
    return True


def deploy_app() -> None:
    pass


def notify_team() -> None:
    pass


def update_monitoring() -> None:
    pass


def deployment() -> Workflow:
    """The "Example: Deployment Workflow" of seed document 004, built with the API."""
    return Workflow(
        "deployment",
        steps=[
            parallel(
                Step("backup", function=backup_database, timeout=300, retries=2),
                Step("health-check", function=health_check, retries=3),
                id="pre-deployment",
            ),
            Step("deploy", function=deploy_app, on_error="fail"),
            parallel(
                Step("notify", function=notify_team, on_error="continue"),
                Step("monitoring", function=update_monitoring),
                id="post-deployment",
            ),
        ],
    )


def test_seed_004_deployment_tree_compiles() -> None:
    plan = deployment().plan()
    nodes = plan.nodes
    assert plan.roots["main"] == ("pre-deployment", "deploy", "post-deployment")
    assert nodes["pre-deployment"].kind == "parallel"
    assert nodes["pre-deployment"].children == ("backup", "health-check")
    assert nodes["post-deployment"].children == ("notify", "monitoring")
    assert nodes["deploy"].deps == ("pre-deployment",)
    assert nodes["post-deployment"].deps == ("deploy",)
    assert nodes["backup"].deps == ()
    assert nodes["health-check"].deps == ()
    assert nodes["backup"].timeout == 300
    assert nodes["health-check"].timeout is None
    assert nodes["backup"].retry == RetryPolicy(max=2)
    assert nodes["health-check"].retry == RetryPolicy(max=3)
    assert nodes["deploy"].retry == NO_RETRY
    assert nodes["deploy"].on_error == "fail"
    assert nodes["notify"].on_error == "continue"
    assert nodes["monitoring"].on_error == "fail"
    backup = nodes["backup"]
    assert backup.uses == "python"
    assert str(backup.with_["function"]).endswith(":backup_database")
    assert backup.with_["args"] == {}
    assert plan.dependents["pre-deployment"] == ("deploy",)


def without_lines(plan: Plan) -> dict[str, Any]:
    return {k: dataclasses.replace(n, line=0) for k, n in plan.nodes.items()}


def test_to_yaml_round_trips_through_the_loader() -> None:
    wf = deployment()
    text = wf.to_yaml()
    loaded = load_workflow(text)
    assert without_lines(loaded.plan) == without_lines(wf.plan())
    assert loaded.plan.nodes["backup"].line > 0


def test_every_option_and_yaml_spelling() -> None:
    wf = Workflow(
        "full",
        description="all of it",
        namespace="ops",
        labels={"team": "core"},
        inputs={"version": {"type": "string", "required": True}, "count": "integer"},
        env={"A": 1},
        defaults={"timeout": "10m", "retries": RetryPolicy(max=1, backoff="constant")},
        timeout=timedelta(hours=1),
        concurrency={"key": "k", "limit": 1, "on_conflict": "skip"},
        triggers=[{"manual": {}}, {"schedule": {"cron": "0 2 * * *"}}],
        notify=[{"on": ["failed"], "channel": "ops"}],
        steps=[
            Step(name="Build It", run="make", env={"X": "1"}, if_="inputs.count > 0"),
            sequence(
                Step("test", uses="http", with_={"url": "u"}, needs="build-it"),
                Step(
                    "each",
                    uses="x",
                    for_each=["a", "b"],
                    max_parallel=2,
                    outputs={"o": "${{ result.outputs.o }}"},
                ),
                id="checks",
                timeout="5m",
                on_error="continue",
            ),
            Step("py", function="pkg.mod:func", args={"n": 1}),
        ],
        on_failure=[Step("undo", run="undo")],
        finally_=[{"id": "cleanup", "run": "rm -rf x"}],
        outputs={"v": "${{ inputs.version }}"},
    )
    plan = wf.plan()
    assert plan.timeout == 3600
    assert plan.namespace == "ops"
    assert plan.inputs["count"].type == "integer"
    assert plan.nodes["build-it"].name == "Build It"
    assert plan.nodes["test"].deps == ("build-it",)
    assert plan.nodes["test"].on_error == "continue"
    assert plan.nodes["test"].timeout == 300
    assert plan.nodes["build-it"].retry == RetryPolicy(max=1, backoff="constant")
    assert plan.nodes["py"].with_ == {"function": "pkg.mod:func", "args": {"n": 1}}
    assert plan.roots["finally"] == ("cleanup",)
    text = wf.to_yaml()
    assert "finally:" in text
    assert "with:" in text
    assert "if:" in text
    assert "with_" not in text
    assert "finally_" not in text
    assert without_lines(load_workflow(text).plan) == without_lines(plan)


def test_errors_name_the_field() -> None:
    wf = Workflow("w", steps=[Step("a", run="x", timeout="soon"), Step("b", uses="x", needs="zz")])
    with pytest.raises(ValidationError) as info:
        wf.plan()
    assert [p.message for p in info.value.problems] == [
        "steps[0].timeout: 'soon' is not a duration (write it like 500ms, 30s, 5m, 1h30m or 2d)"
    ]
    with pytest.raises(ValidationError, match=r"steps\[1\].needs: unknown step 'zz'"):
        Workflow("w", steps=[Step("a", run="x"), Step("b", uses="x", needs="zz")]).plan()


def test_unknown_group_setting_is_an_error() -> None:
    wf = Workflow("w", steps=[parallel(Step("a", run="x"), id="g", retry=3)])
    with pytest.raises(
        ValidationError, match="unknown key 'retry' \\(did you mean 'retries'\\?\\)"
    ):
        wf.spec()


def test_functions_must_be_importable() -> None:
    with pytest.raises(ValidationError, match="module level"):
        Workflow("w", steps=[Step("a", function=lambda: None)]).spec()
    with pytest.raises(ValidationError, match="function= means uses='python'"):
        Workflow("w", steps=[Step("a", function=deploy_app, uses="http")]).spec()


def test_run_calls_the_local_runtime_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    fake = types.ModuleType("plait.local")

    def run_plan(plan: Plan, inputs: Any, *, source: str, **kw: Any) -> str:
        calls.append((plan.name, inputs, source, kw))
        return "result"

    fake.run_plan = run_plan  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "plait.local", fake)
    wf = deployment()
    assert wf.run({"x": 1}, home="/tmp/h") == "result"
    name, inputs, source, kw = calls[0]
    assert (name, inputs, kw) == ("deployment", {"x": 1}, {"home": "/tmp/h"})
    assert source == wf.to_yaml()
