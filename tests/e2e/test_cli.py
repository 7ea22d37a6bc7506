"""`plait run`, `validate`, `graph` and `schema` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import EXAMPLES, Plait


def _result_file(results: Path) -> dict:
    files = sorted(results.glob("workflow_*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_run_prints_run_id_first_and_writes_the_result(plait: Plait, tmp_path: Path) -> None:
    res = plait(
        "run",
        str(EXAMPLES / "hello.yaml"),
        "-i",
        "name=Ada",
        "--results-dir",
        str(tmp_path / "out"),
    )
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("run ")
    assert len(first.split()[1]) == 36
    assert "Hello, Ada!" in res.stdout
    doc = _result_file(tmp_path / "out")
    assert set(doc) >= {
        "run_id",
        "workflow_name",
        "success",
        "status",
        "duration",
        "inputs",
        "outputs",
        "steps",
    }
    assert doc["run_id"] == first.split()[1]
    assert doc["success"] is True
    assert doc["status"] == "succeeded"
    assert doc["inputs"] == {"name": "Ada"}
    assert doc["outputs"]["greeting"] == "Hello, Ada"
    step = doc["steps"][0]
    assert set(step) == {"id", "name", "status", "attempts", "duration", "outputs", "error"}
    assert step["id"] == "greet"
    assert step["attempts"] == 1


def test_json_output_is_one_document(plait: Plait, tmp_path: Path) -> None:
    res = plait(
        "run", str(EXAMPLES / "hello.yaml"), "--json", "--quiet", "--results-dir", str(tmp_path)
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["workflow_name"] == "hello"
    assert f"run {doc['run_id']}" in res.stderr


@pytest.mark.parametrize(
    ("name", "inputs", "code"),
    [
        ("hello.yaml", [], 0),
        ("deployment.yaml", ["-i", "version=1.4.2"], 0),
        ("retries.yaml", [], 0),
        ("fan-out.yaml", [], 0),
        ("rollback.yaml", [], 1),
    ],
)
def test_examples_run(
    plait: Plait, tmp_path: Path, name: str, inputs: list[str], code: int
) -> None:
    res = plait("run", str(EXAMPLES / name), *inputs, "--results-dir", str(tmp_path))
    assert res.returncode == code, res.stdout + res.stderr
    assert "Traceback" not in res.stderr


def test_failed_deployment_rolls_back(plait: Plait, tmp_path: Path) -> None:
    ok = plait(
        "run",
        str(EXAMPLES / "deployment.yaml"),
        "-i",
        "version=1.0.0",
        "--results-dir",
        str(tmp_path / "a"),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = plait(
        "run",
        str(EXAMPLES / "deployment.yaml"),
        "-i",
        "version=2.0.0",
        "-i",
        "fail_deploy=true",
        "--results-dir",
        str(tmp_path / "b"),
    )
    assert bad.returncode == 1
    doc = _result_file(tmp_path / "b")
    status = {s["id"]: s["status"] for s in doc["steps"]}
    assert status["deploy"] == "failed"
    assert status["notify"] == "skipped"
    assert status["monitoring"] == "skipped"
    assert status["rollback"] == "succeeded"
    assert status["cleanup"] == "succeeded"
    assert "rolled back staging to 1.0.0" in bad.stdout


def test_retries_example_uses_backoff(plait: Plait, tmp_path: Path) -> None:
    res = plait("run", str(EXAMPLES / "retries.yaml"), "--results-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    doc = _result_file(tmp_path)
    assert doc["steps"][0]["attempts"] == 3
    assert doc["outputs"]["attempts"] == "3"


def test_fan_out_collects_item_outputs(plait: Plait, tmp_path: Path) -> None:
    res = plait("run", str(EXAMPLES / "fan-out.yaml"), "--results-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    doc = _result_file(tmp_path)
    assert doc["outputs"]["checked"] == ["/health", "/api/v1/status", "/metrics", "/ready"]
    assert "checked 4 endpoints" in res.stdout


def test_invalid_file_reports_every_problem_with_positions(plait: Plait, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\n"
        "steps:\n"
        "  - id: a\n"
        "    run: echo a\n"
        "    need: [b]\n"
        "  - id: b\n"
        "    run: echo b\n"
        "    timeout: soon\n"
    )
    for cmd in (("validate", str(bad)), ("run", str(bad))):
        res = plait(*cmd)
        assert res.returncode == 2
        assert f"{bad}:5:5:" in res.stderr
        assert "did you mean 'needs'" in res.stderr
        assert f"{bad}:8:" in res.stderr
        assert "Traceback" not in res.stderr


def test_yaml_syntax_error(plait: Plait, tmp_path: Path) -> None:
    bad = tmp_path / "syntax.yaml"
    bad.write_text("name: x\nsteps:\n  - id: a\n    run: [unclosed\n")
    res = plait("run", str(bad))
    assert res.returncode == 2
    assert str(bad) + ":" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["/nonexistent/wf.yaml"], "no such file"),
        ([str(EXAMPLES / "deployment.yaml")], "version"),
        (
            [str(EXAMPLES / "deployment.yaml"), "-i", "version=1", "-i", "environment=moon"],
            "environment",
        ),
        ([str(EXAMPLES / "retries.yaml"), "-i", "failures=many"], "failures"),
        ([str(EXAMPLES / "hello.yaml"), "-i", "nmae=x"], "nmae"),
        ([str(EXAMPLES / "hello.yaml"), "-i", "novalue"], "NAME=VALUE"),
    ],
)
def test_bad_input_exits_2(plait: Plait, args: list[str], needle: str) -> None:
    res = plait("run", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr


def test_validate_all_examples(plait: Plait) -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    res = plait("validate", *files)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count(": ok") == len(files)


@pytest.mark.parametrize(
    ("fmt", "needle"), [("text", "pre-deployment"), ("mermaid", "flowchart"), ("dot", "digraph")]
)
def test_graph_formats(plait: Plait, fmt: str, needle: str) -> None:
    res = plait("graph", str(EXAMPLES / "deployment.yaml"), "--format", fmt)
    assert res.returncode == 0, res.stderr
    assert needle in res.stdout
    assert "deploy" in res.stdout


def test_schema_is_json_schema(plait: Plait) -> None:
    res = plait("schema")
    assert res.returncode == 0
    schema = json.loads(res.stdout)
    assert "$schema" in schema
    assert "properties" in schema


def test_help_on_every_command(plait: Plait) -> None:
    for cmd in (
        ["--help"],
        ["run", "--help"],
        ["resume", "--help"],
        ["validate", "--help"],
        ["graph", "--help"],
        ["schema", "--help"],
        ["runs", "--help"],
        ["db", "--help"],
    ):
        res = plait(*cmd)
        assert res.returncode == 0, cmd
        assert "Usage" in res.stdout


def test_runs_commands_read_the_local_store(plait: Plait, tmp_path: Path) -> None:
    res = plait("run", str(EXAMPLES / "hello.yaml"), "--results-dir", str(tmp_path))
    run_id = res.stdout.split()[1]
    listed = plait("runs", "list", "--json")
    assert listed.returncode == 0
    assert run_id in listed.stdout
    shown = plait("runs", "show", run_id, "--json")
    assert json.loads(shown.stdout)["status"] == "succeeded"
    logs = plait("runs", "logs", run_id)
    assert "Hello, world!" in logs.stdout
    missing = plait("runs", "show", "nope")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
