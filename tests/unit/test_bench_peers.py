"""The pure parts of ``make bench-peers`` (benchmarks/peers/run.py): arguments, tool
selection, sizes, statistics, ratios, floors and the table — without installing or
starting any peer. The peer modules are imported for their metadata only, which must
work in Plait's venv where none of the peers is installed."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS))
run = importlib.import_module("run")
common = importlib.import_module("_common")


def test_defaults_and_quick() -> None:
    args = run.parse_args([])
    assert args.reps == 3
    assert not args.quick
    assert args.only == []
    assert args.workload == []
    quick = run.parse_args(["--quick", "--only", "dbos", "--workload", "2", "--workload", "6"])
    assert quick.reps == 1
    assert quick.only == ["dbos"]
    assert quick.workload == [2, 6]
    assert run.parse_args(["--quick", "--reps", "2"]).reps == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "temporal"], "--only 'temporal': no such tool"),
        (["--workload", "9"], "--workload 9: no such workload"),
        (["--reps", "0"], "--reps must be at least 1"),
        (["--timeout-scale", "0"], "--timeout-scale must be positive"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_select_tools_adds_the_references_and_the_floor() -> None:
    assert [t.key for t in run.select_tools([])] == [t.key for t in run.TOOLS]
    assert [t.key for t in run.select_tools(["dbos-pg"])] == [
        "plait",
        "plait-pg",
        "dbos-pg",
        "floor",
    ]
    family = [t.key for t in run.select_tools(["prefect"])]
    assert family == ["plait", "prefect", "prefect-server", "floor"]
    assert [t.key for t in run.select_tools(["procrastinate"])] == [
        "plait",
        "plait-pg",
        "procrastinate",
        "floor",
    ]


def test_sizes_full_quick_and_capped() -> None:
    assert run.size_for(2, quick=False) == 1000
    assert run.size_for(6, quick=False) == 10_000
    assert run.size_for(6, quick=True) == 500
    assert run.size_for(2, quick=False, max_size={2: 40}) == 40
    assert run.size_for(2, quick=True, max_size={2: 400}) == 100  # quick is smaller still
    assert run.steps_of(4, 200) == 1000
    assert run.steps_of(2, 1000) == 1000
    assert run.timeout_for(2, quick=False, scale=2) == 600
    assert run.timeout_for(7, quick=True, scale=1) == 60


def test_summarize_median_and_spread() -> None:
    s = run.summarize([2.0, 1.0, 4.0])
    assert s == {"median": 2.0, "min": 1.0, "max": 4.0, "n": 3, "spread_pct": 150.0}
    assert run.summarize([]) is None
    one = run.summarize([None, 3.0])
    assert one is not None
    assert one["n"] == 1


def test_per_step_ratio_compares_different_sizes() -> None:
    # 40 steps in 4 s against 1,000 steps in 1 s: 0.1 s vs 1 ms a step
    assert run.per_step_ratio(4.0, 40, 1.0, 1000) == 100.0
    assert run.per_step_ratio(1.0, 10, 0.0, 10) is None


def test_floor_seconds() -> None:
    floors = {
        "python_start_s": 0.02,
        "subprocess_loop_s": 1.0,
        "subprocess_loop_size": 200,
        "sqlite_wal_normal_commit_s": 0.0001,
        "pg_commit_s": 0.001,
        "fib_s": 0.004,
        "fib_size": 40,
    }
    assert run.floor_seconds(1, "sqlite", 1, floors) == 0.02
    assert run.floor_seconds(5, "sqlite", 40, floors) == pytest.approx(0.2)
    assert run.floor_seconds(2, "sqlite", 1000, floors) == pytest.approx(0.1)
    assert run.floor_seconds(2, "pg", 1000, floors) == pytest.approx(1.0)
    assert run.floor_seconds(4, "pg", 200, floors) == pytest.approx(1.0)  # 5 steps a run
    assert run.floor_seconds(7, "sqlite", 40, floors) == pytest.approx(0.008)
    assert run.floor_seconds(2, "redis", 1000, floors) is None  # no commit to compare with
    assert run.floor_seconds(2, "sqlite", 1000, {}) is None


def _row(tool: str, size: int, answer: float, durable: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"tool": tool, "size": size, "answer": run.summarize([answer])}
    if durable is not None:
        row["durable"] = run.summarize([durable])
    return row


def test_comparisons_and_table() -> None:
    floors = {"sqlite_wal_normal_commit_s": 0.0001, "pg_commit_s": 0.001}
    rows = [
        _row("plait", 1000, 0.5),
        _row("plait-pg", 1000, 2.0),
        _row("prefect", 1000, 5.0, durable=10.0),
        _row("dbos-pg", 1000, 20.0),
        _row("airflow", 40, 40.0),
        {"tool": "celery", "size": 1000, "samples": [], "answer": None, "error": "timed out"},
        {"tool": "floor", "na": "one commit per step: from workload 8"},
    ]
    run.add_comparisons(rows, 2, floors)
    by = {r["tool"]: r for r in rows}
    assert by["plait"]["x_plait"] == 1.0
    assert by["plait"]["x_floor"] == 5.0
    assert by["prefect"]["x_plait_answer"] == 10.0
    assert by["prefect"]["x_plait"] == 20.0
    assert by["dbos-pg"]["x_plait"] == 10.0  # against Plait on PostgreSQL
    assert by["dbos-pg"]["x_floor"] == 20.0  # 1,000 PostgreSQL commits = 1 s
    assert by["airflow"]["x_plait"] == 2000.0  # 1 s a step against 0.5 ms
    floor_rows = [
        {
            "tool": "floor",
            "size": 200,
            "answer": run.summarize([0.0001]),
            "extra": {
                "sqlite_wal_normal_commit_s": run.summarize([0.0001]),
                "pg_commit_s": run.summarize([0.001]),
            },
        }
    ]
    report = {
        "workloads": [
            {"workload": 2, "name": "sequential no-op steps, durable", "rows": rows},
            {"workload": 8, "name": "commit rate", "rows": floor_rows},
        ]
    }
    table = run.render_table(report)
    assert "2. sequential no-op steps, durable" in table
    assert "Prefect 3 (local)" in table
    assert "10.0×/20.0×" in table
    assert "✗ timed out" in table
    assert "n/a: one commit per step" in table
    assert "10,000 commits/s" in table
    assert "1,000 commits/s" in table


def test_figure_prefers_the_durable_record() -> None:
    assert run.figure(_row("prefect", 10, 1.0, durable=3.0)) == ("durable", 3.0)
    assert run.figure(_row("plait", 10, 1.0)) == ("answer", 1.0)
    assert run.figure({"tool": "x"}) is None


def test_peer_modules_load_without_their_tools() -> None:
    for tool in run.TOOLS:
        mod = run.peer_module(tool)
        assert tool.variant in mod.VARIANTS
        assert isinstance(mod.NOT_APPLICABLE, dict)
        assert mod.VENV is None or isinstance(mod.VENV, str)
    needs = run.requirements_by_venv(run.TOOLS)
    assert set(needs) == {"prefect", "dbos", "airflow", "queues"}
    assert any(r.startswith("celery") for r in needs["queues"])
    assert any(r.startswith("procrastinate") for r in needs["queues"])
    assert "fastapi==0.150.0" in needs["prefect"]


def test_airflow_dags_are_python() -> None:
    airflow = importlib.import_module("airflow_bench")
    for workload in (1, 2, 3, 4, 5, 6, 7):
        source = airflow.dag_file(workload, 7)
        compile(source, f"w{workload}.py", "exec")
        assert airflow.dag_id(workload, 7) in source


def test_plait_workflows_validate() -> None:
    from plait.actions.registry import ActionRegistry
    from plait.model import load_workflow

    plait_bench = importlib.import_module("plait_bench")
    models = ActionRegistry().input_models()
    for workload in (2, 3, 4, 5, 6, 7):
        text, _ = plait_bench.source(workload, 3)
        plan = load_workflow(text, f"w{workload}.yaml", models).plan
        assert plan.nodes


def test_step_functions_and_rss() -> None:
    assert common.fib(10) == 55
    assert common.noop() is None
    assert run.tree_rss_mb([os.getpid()]) > 1


def test_render_an_earlier_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--render", str(tmp_path / "missing.json"), "--no-chart"]) == 2
    assert "no such file" in capsys.readouterr().err
    saved = tmp_path / "peers.json"
    rows = [_row("plait", 1, 0.4), _row("dbos", 1, 2.0)]
    run.add_comparisons(rows, 1, {"python_start_s": 0.02})
    saved.write_text(json.dumps({"workloads": [{"workload": 1, "name": "one step", "rows": rows}]}))
    assert run.main(["--render", str(saved), "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert "DBOS (SQLite)" in out
    assert "5.00×" in out  # 2.0 s against Plait's 0.4 s
    assert "20.0×" in out  # Plait's 0.4 s against the bare interpreter's 0.02 s


def test_markdown_tables() -> None:
    rows = [
        _row("plait", 1000, 0.5),
        _row("prefect", 1000, 5.0, durable=10.0),
        _row("airflow", 40, 40.0),
        {"tool": "celery", "size": 1000, "samples": [], "answer": None, "error": "a|b"},
    ]
    run.add_comparisons(rows, 2, {"sqlite_wal_normal_commit_s": 0.0001})
    report = {
        "workloads": [{"workload": 2, "name": "sequential", "rows": rows}],
        "floors": {"sqlite_wal_normal_commit_s": 0.0001},
    }
    md = run.render_markdown(report)
    assert "| Prefect 3 (local) | 20.0× |" in md  # the matrix: durable per step
    assert "| Prefect 3 (local) | 1,000 | 5.00 s | 10.00 s |" in md
    assert "10.0× / 20.0×" in md
    assert "| Airflow 3 (standalone) | 40 ‡ |" in md  # capped size marked
    assert "✗ a/b" in md  # a pipe in an error cannot break the table
    assert "| SQLite WAL, synchronous=NORMAL | 10,000 | 100 µs |" in md
