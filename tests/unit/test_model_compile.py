"""compile_spec: deps, dependents, inherited settings and the rest of the Plan."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from plait.errors import ValidationError
from plait.model import WorkflowSpec, compile_spec, load_workflow
from plait.model.plan import DEFAULT_ON_ERROR_RETRY, NO_RETRY, Plan, RetryPolicy


class Shell(BaseModel):
    command: str


def plan_of(text: str) -> Plan:
    return load_workflow(textwrap.dedent(text), "w.yaml").plan


def spec(data: dict[str, Any]) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"name": "w", **data})


TREE = """\
name: tree
steps:
  - {id: a, run: x}
  - id: p
    parallel:
      - {id: p1, run: x}
      - id: s
        sequence:
          - {id: s1, run: x}
          - {id: s2, run: x}
          - {id: s3, run: x, needs: [s1]}
      - {id: p3, run: x, needs: [p1]}
  - {id: b, run: x}
  - {id: c, run: x, needs: [a, a, p]}
  - {id: d, run: x, needs: []}
on_failure:
  - {id: f1, run: x}
  - {id: f2, run: x}
finally:
  - {id: z, run: x}
"""


def test_deps_follow_the_ordering_rules() -> None:
    plan = plan_of(TREE)
    deps = {k: n.deps for k, n in plan.nodes.items()}
    assert deps == {
        "a": (),
        "p": ("a",),
        "p1": (),
        "s": (),
        "s1": (),
        "s2": ("s1",),
        "s3": ("s1",),
        "p3": ("p1",),
        "b": ("p",),
        "c": ("a", "p"),
        "d": (),
        "f1": (),
        "f2": ("f1",),
        "z": (),
    }


def test_dependents_are_the_reverse_of_deps() -> None:
    plan = plan_of(TREE)
    assert plan.dependents["a"] == ("p", "c")
    assert plan.dependents["s1"] == ("s2", "s3")
    assert plan.dependents["p"] == ("b", "c")
    assert plan.dependents["b"] == ()
    assert set(plan.dependents) == set(plan.nodes)


def test_nodes_are_in_definition_order_with_parents_and_children() -> None:
    plan = plan_of(TREE)
    assert list(plan.nodes) == [
        "a",
        "p",
        "p1",
        "s",
        "s1",
        "s2",
        "s3",
        "p3",
        "b",
        "c",
        "d",
        "f1",
        "f2",
        "z",
    ]
    assert plan.nodes["p"].children == ("p1", "s", "p3")
    assert plan.nodes["s2"].parent == "s"
    assert plan.nodes["s"].parent == "p"
    assert plan.nodes["p"].kind == "parallel"
    assert plan.nodes["s"].kind == "sequence"
    assert plan.roots == {
        "main": ("a", "p", "b", "c", "d"),
        "on_failure": ("f1", "f2"),
        "finally": ("z",),
    }
    assert [n.key for n in plan.phase_nodes("on_failure")] == ["f1", "f2"]
    assert plan.nodes["f1"].phase == "on_failure"
    assert plan.nodes["z"].phase == "finally"


def test_lines_come_from_the_file() -> None:
    plan = plan_of(TREE)
    assert plan.nodes["a"].line == 3
    assert plan.nodes["s2"].line == 10
    assert compile_spec(spec({"steps": [{"id": "a", "run": "x"}]})).nodes["a"].line == 0


SETTINGS = """\
name: settings
defaults:
  timeout: 10m
  retries: {max: 2, backoff: linear}
  on_error: continue
  env: {LEVEL: defaults, D: "1"}
steps:
  - {id: plain, run: x}
  - id: group
    timeout: 1m
    retries: 5
    on_error: fail
    env: {LEVEL: group, G: "1"}
    sequence:
      - {id: inherits, run: x}
      - {id: own, run: x, timeout: 5s, retries: {max: 1, initial: 2s}, on_error: retry,
         env: {LEVEL: step}}
      - id: inner
        parallel:
          - {id: deep, run: x}
  - {id: retry-default, run: x, on_error: retry, retries: 0}
"""


def test_settings_resolve_step_then_group_then_defaults() -> None:
    nodes = plan_of(SETTINGS).nodes
    assert (nodes["plain"].timeout, nodes["plain"].on_error) == (600, "continue")
    assert nodes["plain"].retry == RetryPolicy(max=2, backoff="linear")
    assert nodes["plain"].env == {"LEVEL": "defaults", "D": "1"}
    assert (nodes["inherits"].timeout, nodes["inherits"].on_error) == (60, "fail")
    assert nodes["inherits"].retry == RetryPolicy(max=5)
    assert nodes["inherits"].env == {"LEVEL": "group", "D": "1", "G": "1"}
    own = nodes["own"]
    assert (own.timeout, own.on_error) == (5, "retry")
    assert own.retry == RetryPolicy(max=1, initial=2.0)
    assert own.env == {"LEVEL": "step", "D": "1", "G": "1"}
    assert (nodes["deep"].timeout, nodes["deep"].retry.max) == (60, 5)
    assert nodes["retry-default"].retry == RetryPolicy(max=0)


def test_groups_keep_only_their_own_timeout_and_never_retry() -> None:
    nodes = plan_of(SETTINGS).nodes
    assert nodes["group"].timeout == 60
    assert nodes["group"].retry == NO_RETRY
    assert nodes["inner"].timeout is None
    assert nodes["inner"].on_error == "fail"
    assert nodes["group"].uses is None
    assert nodes["group"].with_ == {}


def test_builtin_defaults_and_on_error_retry() -> None:
    plan = compile_spec(
        spec(
            {
                "steps": [
                    {"id": "a", "run": "x"},
                    {"id": "b", "run": "x", "on_error": "retry"},
                    {"id": "c", "run": "x", "retries": 4},
                    {"id": "g", "parallel": [{"id": "d", "run": "x"}], "on_error": "retry"},
                ]
            }
        )
    )
    a, b, c = plan.nodes["a"], plan.nodes["b"], plan.nodes["c"]
    assert (a.timeout, a.retry, a.on_error) == (None, NO_RETRY, "fail")
    assert b.retry == DEFAULT_ON_ERROR_RETRY
    assert c.retry == RetryPolicy(max=4)
    assert c.on_error == "fail"
    assert plan.nodes["g"].on_error == "fail"
    assert plan.nodes["d"].on_error == "retry"
    assert plan.nodes["d"].retry == DEFAULT_ON_ERROR_RETRY


def test_run_becomes_shell_with_command() -> None:
    node = compile_spec(
        spec(
            {
                "steps": [
                    {
                        "id": "a",
                        "run": "make",
                        "with": {"working_directory": "/src", "shell": "bash"},
                    },
                ]
            }
        )
    ).nodes["a"]
    assert node.uses == "shell"
    assert node.with_ == {"working_directory": "/src", "shell": "bash", "command": "make"}


def test_conditions() -> None:
    nodes = compile_spec(
        spec(
            {
                "steps": [
                    {"id": "a", "run": "x", "if": "inputs.x == 1"},
                    {"id": "b", "run": "x", "if": "${{ failure() }}"},
                    {"id": "c", "run": "x", "if": True},
                    {"id": "d", "run": "x", "if": False},
                    {"id": "e", "run": "x", "if": "always() and steps.a.status == 'failed'"},
                ],
                "inputs": {"x": {"type": "integer"}},
            }
        )
    ).nodes
    assert (nodes["a"].if_, nodes["a"].if_checks_status) == ("inputs.x == 1", False)
    assert (nodes["b"].if_, nodes["b"].if_checks_status) == ("failure()", True)
    assert nodes["c"].if_ is None
    assert nodes["d"].if_ == "false"
    assert nodes["e"].if_checks_status


def test_for_each_outputs_and_max_parallel() -> None:
    nodes = compile_spec(
        spec(
            {
                "steps": [
                    {
                        "id": "a",
                        "uses": "x",
                        "for_each": "inputs.hosts",
                        "max_parallel": 3,
                        "with": {"host": "${{ item }}"},
                        "outputs": {"o": "${{ result.outputs.o }}"},
                    },
                    {"id": "b", "uses": "x", "for_each": ["a", "b"]},
                    {"id": "c", "uses": "x", "for_each": "${{ [1, 2] }}"},
                    {"id": "p", "parallel": [{"id": "p1", "run": "x"}], "max_parallel": 1},
                ],
                "inputs": {"hosts": {"type": "array"}},
            }
        )
    ).nodes
    assert nodes["a"].for_each == "${{ inputs.hosts }}"
    assert nodes["a"].max_parallel == 3
    assert nodes["a"].outputs == {"o": "${{ result.outputs.o }}"}
    assert nodes["b"].for_each == ["a", "b"]
    assert nodes["b"].outputs is None
    assert nodes["c"].for_each == "${{ [1, 2] }}"
    assert nodes["p"].max_parallel == 1


def test_workflow_level_fields() -> None:
    text = (Path(__file__).parent / "data" / "design_example.yaml").read_text()
    plan = load_workflow(text).plan
    assert plan.namespace == "ops"
    assert plan.timeout == 7200
    assert plan.labels["stage"] == "production"
    assert plan.env == {"APP_DIR": "/srv/api"}
    version = plan.inputs["version"]
    assert version.required
    assert not version.has_default
    assert version.type == "string"
    env = plan.inputs["environment"]
    assert env.has_default
    assert env.default == "staging"
    assert env.enum == ("staging", "production")
    assert plan.inputs["api_token"].secret
    assert plan.concurrency is not None
    assert plan.concurrency.key == "deploy-${{ inputs.environment }}"
    assert [t["kind"] for t in plan.triggers] == ["manual", "schedule", "webhook", "event"]
    assert plan.triggers[1]["timezone"] == "Europe/Berlin"
    assert plan.triggers[3]["if"] == "event.run.inputs.branch == 'main'"
    assert plan.notify == ({"on": ["failed", "timed_out"], "channel": "ops", "message": None},)
    assert plan.outputs == {"url": "${{ steps.deploy.outputs.url }}"}
    assert plan.secret_names == frozenset({"DEPLOY_HOOK_KEY"})


def test_secret_names_from_everywhere() -> None:
    plan = compile_spec(
        spec(
            {
                "env": {"A": "${{ secrets.ONE }}"},
                "steps": [
                    {
                        "id": "a",
                        "run": "echo ${{ secrets['TWO'] }}",
                        "with": {"x": ["${{ secrets.THREE }}"]},
                    }
                ],
            }
        )
    )
    assert plan.secret_names == frozenset({"ONE", "TWO", "THREE"})


def test_concurrency_key_defaults_to_the_workflow_name() -> None:
    plan = compile_spec(spec({"concurrency": {"limit": 2}, "steps": [{"id": "a", "run": "x"}]}))
    assert plan.concurrency is not None
    assert (plan.concurrency.key, plan.concurrency.limit) == ("w", 2)


def test_compile_spec_raises_every_problem_without_positions() -> None:
    with pytest.raises(ValidationError) as info:
        compile_spec(
            spec(
                {
                    "steps": [
                        {"id": "a", "run": "x", "needs": ["b"]},
                        {"id": "b", "run": "${{ steps.zz.outputs }}", "needs": ["a"]},
                        {"id": "a", "uses": "nope"},
                    ]
                }
            ),
            actions={"shell": Shell},
        )
    messages = [p.message for p in info.value.problems]
    assert messages == [
        "steps[2]: duplicate step id 'a' (also used at steps[0])",
        "needs form a cycle: a -> b -> a",
        "steps[1].run: unknown step 'zz'",
        "steps[2].uses: unknown action 'nope'",
    ]
    assert all(p.line == 0 for p in info.value.problems)
    assert info.value.problems[0].path == ("steps", 2, "id")


def test_needs_may_cross_groups_when_there_is_no_cycle() -> None:
    plan = plan_of("""\
        name: w
        steps:
          - {id: a, run: x}
          - id: g
            parallel:
              - {id: b, run: x}
              - {id: c, run: "${{ steps.e.status }}", needs: [e]}
          - {id: e, run: x, needs: [a]}
        """)
    assert plan.nodes["c"].deps == ("e",)
