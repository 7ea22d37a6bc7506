"""load_workflow: every problem at once, each as FILE:LINE:COL: message."""

from __future__ import annotations

import hashlib
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from plait.errors import ValidationError
from plait.model import LoadedWorkflow, load_file, load_workflow

DATA = Path(__file__).parent / "data"


class HttpInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    expect_status: int = 200


class ShellInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str
    working_directory: str | None = None


ACTIONS: dict[str, type[BaseModel]] = {"http": HttpInput, "shell": ShellInput}


def problems(text: str, actions: dict[str, type[BaseModel]] | None = None) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_workflow(textwrap.dedent(text), "w.yaml", actions)
    return [str(p) for p in info.value.problems]


def one(text: str, actions: dict[str, type[BaseModel]] | None = None) -> str:
    found = problems(text, actions)
    assert len(found) == 1, found
    return found[0]


def test_design_example_loads() -> None:
    text = (DATA / "design_example.yaml").read_text()
    loaded = load_workflow(text, "design.yaml")
    assert isinstance(loaded, LoadedWorkflow)
    assert loaded.spec.name == "deployment"
    assert loaded.source == text
    assert loaded.checksum == hashlib.sha256(text.encode()).hexdigest()
    assert list(loaded.plan.roots["main"]) == [
        "pre-deployment",
        "approve",
        "deploy",
        "post-deployment",
    ]


def test_load_file_and_unreadable_file(tmp_path: Path) -> None:
    assert load_file(DATA / "design_example.yaml").plan.name == "deployment"
    with pytest.raises(ValidationError, match="cannot read"):
        load_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: \xff\n")
    with pytest.raises(ValidationError, match="not UTF-8"):
        load_file(bad)


def test_unknown_key_with_did_you_mean_at_the_key() -> None:
    assert (
        one("""\
        name: w
        steps:
          - id: a
            run: x
            need: [b]
        """)
        == "w.yaml:5:5: steps[0]: unknown key 'need' (did you mean 'needs'?)"
    )


def test_unknown_top_level_key() -> None:
    assert one("name: w\nstep: []\nsteps: [{id: a, run: x}]\n") == (
        "w.yaml:2:1: unknown key 'step' (did you mean 'steps'?)"
    )


def test_unknown_key_in_nested_models() -> None:
    text = """\
        name: w
        defaults: {retries: {max: 2, backof: linear}}
        triggers:
          - schedule: {cron: "0 * * * *", timezon: UTC}
          - cron: {}
        steps: [{id: a, run: x}]
        """
    assert problems(text) == [
        "w.yaml:2:30: defaults.retries: unknown key 'backof' (did you mean 'backoff'?)",
        "w.yaml:4:35: triggers[0].schedule: unknown key 'timezon' (did you mean 'timezone'?)",
        "w.yaml:5:5: triggers[1]: unknown key 'cron'",
    ]


def test_wrong_type_names_the_field() -> None:
    assert one("""\
        name: w
        steps:
          - id: a
            run: x
          - id: b
            run: y
          - id: c
            run: z
            timeout: 5 minutes
        """) == (
        "w.yaml:9:14: steps[2].timeout: '5 minutes' is not a duration "
        "(write it like 500ms, 30s, 5m, 1h30m or 2d)"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("retries: lots", "steps[0].retries: expected a number of retries or a policy"),
        ("max_parallel: many", "steps[0].max_parallel: expected an integer, got 'many'"),
        ("on_error: ignore", "steps[0].on_error: 'ignore' is not allowed (expected 'fail', "),
        ("needs: {a: 1}", "steps[0].needs: expected a step id or a list of step ids"),
        ("env: [a]", "steps[0].env: expected a mapping, got ['a']"),
        ("with: [a]", "steps[0].with: expected a mapping"),
        ("if: [a]", "steps[0].if: expected an expression or true/false"),
        ("name: [a]", "steps[0].name: expected text, got ['a']"),
    ],
)
def test_type_messages(line: str, message: str) -> None:
    found = one(f"name: w\nsteps:\n  - id: a\n    run: x\n    {line}\n")
    assert found.startswith("w.yaml:5:")
    assert message in found


def test_missing_keys_point_at_the_mapping() -> None:
    assert problems("description: no name\nsteps:\n  - {id: a, run: x}\n") == [
        "w.yaml:1:1: missing required key 'name'"
    ]
    assert problems("name: w\nsteps: [{id: a, run: x}]\nnotify:\n  - on: [failed]\n") == [
        "w.yaml:4:5: notify[0]: missing required key 'channel'"
    ]


def test_step_shape_problems_point_at_the_step() -> None:
    assert one("name: w\nsteps:\n  - id: a\n    uses: http\n    run: x\n") == (
        "w.yaml:3:5: steps[0]: a step needs exactly one of uses, run, parallel or sequence "
        "(it has uses and run)"
    )
    assert one("name: w\nsteps:\n  - run: x\n") == (
        "w.yaml:3:5: steps[0]: a step needs an 'id' (or a 'name' to derive it from)"
    )


def test_bad_names_and_ids() -> None:
    found = problems("name: My Flow\nsteps:\n  - id: bad id\n    run: x\n")
    assert found == [
        "w.yaml:1:7: name: 'My Flow' is not allowed (use lowercase letters, digits, '_' and '-', "
        "starting with a letter or digit)",
        "w.yaml:3:9: steps[0].id: 'bad id' is not allowed (use letters, digits, '_' and '-', "
        "not starting with '-')",
    ]


def test_duplicate_yaml_keys_are_reported_with_other_problems() -> None:
    found = problems("name: w\nsteps: [{id: a, run: x, timeout: never}]\nname: v\n")
    assert found == [
        "w.yaml:2:34: steps[0].timeout: 'never' is not a duration (write it like 500ms, 30s, "
        "5m, 1h30m or 2d)",
        "w.yaml:3:1: duplicate key 'name' (first at line 1)",
    ]


def test_duplicate_step_ids_share_one_space_across_phases() -> None:
    found = problems("""\
        name: w
        steps:
          - id: a
            parallel:
              - {id: b, run: x}
          - {id: b, run: y}
        finally:
          - {id: a, run: z}
        """)
    assert found == [
        "w.yaml:6:10: steps[1]: duplicate step id 'b' (also used at steps[0].parallel[0])",
        "w.yaml:8:10: finally[0]: duplicate step id 'a' (also used at steps[0])",
    ]


def test_unknown_needs_with_did_you_mean_and_across_phases() -> None:
    found = problems("""\
        name: w
        steps:
          - {id: build, run: x}
          - {id: test, run: y, needs: [biuld]}
        on_failure:
          - {id: undo, run: z, needs: build}
        """)
    assert found == [
        "w.yaml:4:32: steps[1].needs[0]: unknown step 'biuld' (did you mean 'build'?)",
        "w.yaml:6:31: on_failure[0].needs: 'build' is in steps, and needs cannot cross from "
        "on_failure",
    ]


def test_cycles() -> None:
    assert (
        one("""\
        name: w
        steps:
          - {id: a, run: x, needs: b}
          - {id: b, run: y, needs: [a]}
        """)
        == "w.yaml:3:28: needs form a cycle: a -> b -> a"
    )
    assert one("name: w\nsteps:\n  - {id: a, run: x, needs: a}\n") == (
        "w.yaml:3:28: needs form a cycle: a -> a"
    )


def test_needing_a_later_step_through_a_group_is_a_cycle() -> None:
    found = one("""\
        name: w
        steps:
          - id: g
            parallel:
              - {id: a, run: x, needs: [later]}
          - {id: later, run: y}
        """)
    assert found == "w.yaml:5:32: needs form a cycle: a -> later -> g -> a"


def test_expression_syntax_errors_anywhere() -> None:
    found = problems("""\
        name: w
        env: {A: "${{ 1 + }}"}
        steps:
          - id: a
            run: echo ${{ inputs.x ) }}
            if: "a =="
            with: {working_directory: "${{ 'x' | }}"}
        """)
    assert len(found) == 4
    assert found[0].startswith("w.yaml:2:10: env.A: expression '${{ 1 + }}': syntax error")
    assert found[1].startswith("w.yaml:5:10: steps[0].run: expression")
    assert found[2].startswith("w.yaml:6:9: steps[0].if: expression 'a ==': syntax error")
    assert found[3].startswith("w.yaml:7:31: steps[0].with.working_directory: expression")


def test_names_inputs_and_functions_are_checked() -> None:
    found = problems("""\
        name: w
        inputs: {version: {}}
        steps:
          - id: a
            run: echo ${{ inputs.verison }} ${{ stepz.a }} ${{ item }} ${{ lenn(x) }}
            outputs: {ok: "${{ result.outputs.ok }}", bad: "${{ x | uper }}"}
            env: {R: "${{ result }}"}
        """)
    assert found == [
        "w.yaml:5:10: steps[0].run: 'item' is available only in a step with for_each",
        "w.yaml:5:10: steps[0].run: unknown name 'stepz' (did you mean 'steps'?) "
        "(known: env, inputs, run, secrets, steps, trigger)",
        "w.yaml:5:10: steps[0].run: unknown name 'x' (known: env, inputs, run, secrets, steps, "
        "trigger)",
        "w.yaml:5:10: steps[0].run: unknown function 'lenn' (did you mean 'len'?)",
        "w.yaml:5:10: steps[0].run: unknown input 'verison' (did you mean 'version'?)",
        "w.yaml:6:52: steps[0].outputs.bad: unknown name 'x' (known: env, inputs, result, run, "
        "secrets, steps, trigger)",
        "w.yaml:6:52: steps[0].outputs.bad: unknown filter 'uper' (did you mean 'upper'?)",
        "w.yaml:7:14: steps[0].env.R: 'result' is available only in a step's outputs",
    ]


def test_allowed_names_pass() -> None:
    load_workflow(
        textwrap.dedent("""\
        name: w
        inputs: {v: {}}
        env: {A: "${{ inputs.v }}"}
        steps:
          - id: a
            run: echo ${{ env.A }} ${{ run.id }} ${{ trigger.x }} ${{ secrets.S }}
            env: {S: "${{ success() }} ${{ inputs.v is defined }} ${{ [1] | first }}"}
            if: failure() or always() or cancelled() or success()
          - id: b
            for_each: inputs.v.split(',')
            with: {x: "${{ item }}-${{ index }} ${{ len(range(3)) }} ${{ 'a' | upper }}"}
            uses: x
            outputs: {o: "${{ result.outputs | tojson }}"}
        """)
    )


def test_steps_that_cannot_have_run_before() -> None:
    found = problems("""\
        name: w
        steps:
          - id: g
            parallel:
              - {id: a, run: "echo ${{ steps.b.outputs.x }}"}
              - {id: b, run: x}
          - {id: c, run: "echo ${{ steps.a.status }}", needs: []}
          - {id: d, run: "echo ${{ steps.d.outputs.x }} ${{ steps.nope.outputs }}"}
          - {id: e, run: "echo ${{ steps.a.output }}", needs: [g]}
        on_failure:
          - {id: f, run: "echo ${{ steps.e.status }} ${{ steps.h.status }}"}
        finally:
          - {id: h, run: "echo ${{ steps.f.status }} ${{ steps.a.outputs.x }}"}
        """)
    assert found == [
        "w.yaml:5:22: steps[0].parallel[0].run: steps.b cannot have run before step 'a' "
        "(add 'b' to its needs, or move it earlier)",
        "w.yaml:7:18: steps[1].run: steps.a cannot have run before step 'c' "
        "(add 'a' to its needs, or move it earlier)",
        "w.yaml:8:18: steps[2].run: step 'd' cannot read its own steps.d (use result in outputs:)",
        "w.yaml:8:18: steps[2].run: unknown step 'nope'",
        "w.yaml:9:18: steps[3].run: steps.a.output: a step has only outputs and status",
        "w.yaml:11:18: on_failure[0].run: steps.h cannot have run before step 'f' "
        "(add 'h' to its needs, or move it earlier)",
    ]


def test_steps_reachable_through_deps_and_groups_pass() -> None:
    load_workflow(
        textwrap.dedent("""\
        name: w
        steps:
          - id: g
            sequence:
              - {id: a, run: x}
              - id: inner
                parallel:
                  - {id: b, run: "${{ steps.a.outputs.x }}"}
          - {id: c, run: "${{ steps.b.status }} ${{ steps.g.status }}"}
          - {id: d, needs: [c], run: "${{ steps.a.outputs.y }}"}
          - {id: e, needs: [], run: x}
          - {id: f, needs: [d, e], run: "${{ steps.e.status }} ${{ steps.b.status }}"}
        outputs: {all: "${{ steps.f.status }} ${{ steps.e.status }}"}
        notify: [{channel: ops, message: "${{ steps.a.status }}"}]
        """)
    )


def test_if_must_be_bare_or_one_template() -> None:
    assert one("name: w\nsteps:\n  - {id: a, run: x, if: 'x ${{ inputs }}'}\n") == (
        "w.yaml:3:25: steps[0].if: write the condition as a bare expression or as one ${{ }}"
    )
    load_workflow("name: w\nsteps:\n  - {id: a, run: x, if: '${{ always() }}'}\n")


def test_trigger_and_workflow_level_scopes() -> None:
    found = problems("""\
        name: w
        inputs: {v: {}}
        concurrency: {key: "${{ steps.a.status }}"}
        triggers:
          - webhook: {secret: "${{ inputs.v }}"}
          - event: {type: run.failed, if: "event.run.x == 1"}
          - schedule: {cron: "0 * * * *", inputs: {vv: 1}}
        steps: [{id: a, run: x}]
        """)
    assert found == [
        "w.yaml:3:20: concurrency.key: 'steps' is available only in steps, workflow outputs "
        "and notify messages",
        "w.yaml:5:23: triggers[0].webhook.secret: unknown name 'inputs' (known: env, secrets)",
        "w.yaml:7:48: triggers[2].schedule.inputs.vv: unknown input 'vv' (did you mean 'v'?)",
    ]


def test_actions_are_checked_when_given() -> None:
    found = problems(
        """\
        name: w
        inputs: {s: {}}
        steps:
          - {id: a, uses: htp}
          - {id: b, uses: http, with: {url: 3}}
          - {id: c, uses: http, with: {expect_status: "${{ inputs.s }}"}}
          - {id: d, uses: http, with: {url: x, expect_status: "${{ 1 }}", extra: 1}}
          - {id: e, run: ls, with: {working_dir: /tmp}}
          - {id: f, uses: http, with: {url: "x", expect_status: "two hundred"}}
        """,
        ACTIONS,
    )
    assert found == [
        "w.yaml:4:19: steps[0].uses: unknown action 'htp' (did you mean 'http'?)",
        "w.yaml:5:37: steps[1].with.url: expected text, got 3",
        "w.yaml:6:31: steps[2].with: missing required key 'url'",
        "w.yaml:7:67: steps[3].with: unknown key 'extra'",
        "w.yaml:8:29: steps[4].with: unknown key 'working_dir' (did you mean 'working_directory'?)",
        "w.yaml:9:57: steps[5].with.expect_status: expected an integer, got 'two hundred'",
    ]


def test_inputs_with_expressions_are_left_to_run_time() -> None:
    load_workflow(
        "name: w\ninputs: {u: {}}\nsteps:\n"
        "  - {id: a, uses: http, with: {url: '${{ inputs.u }}', expect_status: '${{ 2 }}'}}\n"
        "  - {id: b, run: 'ls ${{ inputs.u }}'}\n",
        actions=ACTIONS,
    )


def test_several_kinds_of_problems_are_all_reported_sorted() -> None:
    found = problems(
        """\
        name: w
        steps:
          - {id: a, uses: nope}
          - {id: b, run: x, needs: [zz]}
          - {id: a, run: "${{ inputs.q }}"}
          - {id: c, run: x, needs: [d]}
          - {id: d, run: x, needs: [c]}
        """,
        ACTIONS,
    )
    lines = [int(p.split(":")[1]) for p in found]
    assert lines == sorted(lines)
    assert len(found) == 5
    assert {p.split(": ", 1)[1].split(":")[0] for p in found} >= {
        "steps[0].uses",
        "steps[1].needs[0]",
        "steps[2]",
        "steps[2].run",
    }
    assert any("needs form a cycle: c -> d -> c" in p for p in found)


def test_a_thousand_steps_load_quickly() -> None:
    lines = ["name: big", "inputs: {v: {default: x}}", "steps:"]
    for i in range(1000):
        lines.append(f"  - id: s{i}")
        lines.append(f"    run: echo ${{{{ inputs.v }}}} {i}")
        if i:
            lines.append(f"    if: steps.s{i - 1}.status == 'succeeded'")
        if i % 10 == 0:
            lines.append(f"    needs: [{', '.join(f's{j}' for j in range(max(0, i - 3), i))}]")
    text = "\n".join(lines) + "\n"
    started = time.perf_counter()
    loaded = load_workflow(text, "big.yaml")
    elapsed = time.perf_counter() - started
    assert len(loaded.plan.nodes) == 1000
    # A guard against quadratic blow-ups, not a speed test (that is `make bench`): a
    # thousand steps must not take anywhere near the 10 s of an O(n^2) pass under coverage.
    assert elapsed < 10.0, elapsed
