"""Step routing in the model: ``queue``, ``runs_on`` and ``priority`` — validated with
positions, inherited step > group > ``defaults``, compiled into the plan and the steps
the engine creates, and described by ``plait schema``."""

from __future__ import annotations

import textwrap

import pytest

from plait.engine.api import Outcome
from plait.engine.machine import RunMachine
from plait.engine.state import RunState
from plait.errors import ValidationError
from plait.model import load_workflow
from plait.model.plan import Plan
from plait.model.schema import workflow_json_schema


def plan_of(text: str) -> Plan:
    return load_workflow(textwrap.dedent(text), "w.yaml").plan


def problems(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_workflow(textwrap.dedent(text), "w.yaml")
    return [str(p) for p in info.value.problems]


ROUTED = """\
name: routed
defaults: {queue: builds, priority: 2}
steps:
  - id: plain
    run: x
  - id: train
    run: x
    queue: gpu
    runs_on: {gpu: true, region: eu}
    priority: 10
  - id: group
    runs_on: {arch: arm64}
    priority: -5
    parallel:
      - {id: child, run: x}
      - {id: own, run: x, runs_on: {}, priority: 0, queue: default}
  - id: fan
    for_each: [1, 2]
    run: x
    queue: fan-out.v2
"""


def test_routing_is_inherited_step_group_defaults() -> None:
    nodes = plan_of(ROUTED).nodes
    got = {k: (n.queue, dict(n.runs_on), n.priority) for k, n in nodes.items()}
    assert got == {
        "plain": ("builds", {}, 2),
        "train": ("gpu", {"gpu": "true", "region": "eu"}, 10),  # values are text
        "group": ("builds", {"arch": "arm64"}, -5),
        "child": ("builds", {"arch": "arm64"}, -5),
        "own": ("default", {}, 0),  # the nearest runs_on wins whole: {} needs no tag
        "fan": ("fan-out.v2", {}, 2),
    }


def test_without_routing_a_step_goes_to_the_default_queue() -> None:
    node = plan_of("name: w\nsteps:\n  - {id: a, run: x}\n").nodes["a"]
    assert (node.queue, dict(node.runs_on), node.priority) == ("default", {}, 0)


def test_steps_and_for_each_items_carry_their_routing() -> None:
    plan = plan_of(ROUTED)
    machine = RunMachine(plan, RunState(id="r", workflow="routed"))
    assert machine.steps["train"].runs_on == {"gpu": "true", "region": "eu"}
    assert (machine.steps["train"].queue, machine.steps["train"].priority) == ("gpu", 10)
    machine.start(1.0)
    for _ in range(10):  # run every queued step until the fan-out has made its items
        for step in [s for s in machine.steps.values() if s.status == "queued"]:
            if step.parent == "fan":
                continue
            machine.attempt_started(step.key, 1, 1.0)
            machine.attempt_finished(step.key, 1, Outcome("succeeded"), 2.0)
    items = [s for s in machine.steps.values() if s.parent == "fan"]
    assert len(items) == 2
    assert {(s.queue, s.priority) for s in items} == {("fan-out.v2", 2)}


def test_bad_routing_is_reported_at_its_position() -> None:
    found = problems(
        """\
        name: w
        defaults: {queue: "bad queue"}
        steps:
          - id: a
            run: x
            queue: ${{ inputs.q }}
          - id: b
            run: x
            runs_on: {"-gpu": "true", ok: "${{ inputs.v }}"}
          - id: c
            run: x
            priority: 2000000
          - id: d
            run: x
            priority: high
          - id: e
            run: x
            runs_on: [gpu]
        """
    )
    text = "\n".join(found)
    assert "w.yaml:2:19: defaults.queue: 'bad queue' is not a queue name" in text
    assert "w.yaml:6:12: steps[0].queue: '${{ inputs.q }}' is not a queue name" in text
    assert "expressions are not allowed" in text
    assert "steps[1].runs_on: '-gpu' is not a tag name" in text
    assert "steps[1].runs_on.ok: '${{ inputs.v }}' is not a tag value" in text
    assert "w.yaml:12:15: steps[2].priority: priority must be between -1,000,000" in text
    assert "w.yaml:15:15: steps[3].priority: expected an integer, got 'high'" in text
    assert "w.yaml:18:14: steps[4].runs_on: expected a mapping, got ['gpu']" in text
    assert len(found) == 7, found


def test_the_schema_describes_routing() -> None:
    schema = workflow_json_schema()
    step = schema["$defs"]["StepSpec"]["properties"]
    assert step["queue"]["anyOf"][0]["pattern"].startswith("^[A-Za-z0-9]")
    assert step["priority"]["anyOf"][0] == {
        "type": "integer",
        "minimum": -1_000_000,
        "maximum": 1_000_000,
    }
    assert "runs_on" in step
    assert {"queue", "runs_on", "priority"} <= set(schema["$defs"]["DefaultsSpec"]["properties"])
