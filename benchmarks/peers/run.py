"""Plait side by side with Prefect, DBOS, Airflow and the job queues, and the physical
floor of this machine (``make bench-peers``).

Each peer runs from its own virtual environment under ``benchmarks/peers/.venvs/``
(created and filled from PyPI on first use), Plait from this repository's venv. Every
measurement is a separate process (``<tool>_bench.py``, one module per peer) that sets
up untimed, times the workload itself and reports ``answer_s`` (the caller has its
answer) and, where it comes later, ``durable_s`` (the tool's store has recorded it).
Workload 1 is timed from outside: the whole process, start-up to exit.

Order: for each workload, each repetition runs every tool once, in an order rotated by
one tool per repetition, so a change of the machine's load falls on all tools alike.
The services of the peers (``prefect server``, ``airflow standalone``, the Celery and
procrastinate workers) are started once and frozen (SIGSTOP) while another tool is
measured, so an idle scheduler does not take CPU from the others. Figures are the
median of the repetitions with their spread ((max − min) / median); ratios are per
step against Plait on the same kind of store (PostgreSQL tools against Plait on
PostgreSQL); "× floor" is against this machine's floor measured in the same run
(``floor.py``).

Output: a table on the terminal, ``benchmarks/results/peers.json`` and a chart of the
ratios, ``benchmarks/results/peers.png`` (matplotlib from its own venv).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENVS = HERE / ".venvs"
RESULTS = ROOT / "benchmarks" / "results"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import MARK, STEPS_PER_RUN, WORKLOADS  # noqa: E402


@dataclass(frozen=True)
class Tool:
    """One column of the comparison: a peer module in one of its variants."""

    key: str
    module: str
    variant: str
    backend: str  # sqlite | pg | redis | none: which commit floor applies
    reference: str  # the Plait variant it is compared with
    label: str


TOOLS: tuple[Tool, ...] = (
    Tool("plait", "plait_bench", "sqlite", "sqlite", "plait", "Plait (SQLite)"),
    Tool("plait-pg", "plait_bench", "pg", "pg", "plait-pg", "Plait (PostgreSQL)"),
    Tool("prefect", "prefect_bench", "local", "sqlite", "plait", "Prefect 3 (local)"),
    Tool("prefect-server", "prefect_bench", "server", "sqlite", "plait", "Prefect 3 (server)"),
    Tool("dbos", "dbos_bench", "sqlite", "sqlite", "plait", "DBOS (SQLite)"),
    Tool("dbos-pg", "dbos_bench", "pg", "pg", "plait-pg", "DBOS (PostgreSQL)"),
    Tool("airflow", "airflow_bench", "standalone", "sqlite", "plait", "Airflow 3 (standalone)"),
    Tool("procrastinate", "procrastinate_bench", "pg", "pg", "plait-pg", "procrastinate (PG)"),
    Tool("celery", "celery_bench", "redis", "redis", "plait", "Celery (Redis)"),
    Tool("floor", "floor", "", "none", "plait", "floor (this machine)"),
)
BY_KEY = {t.key: t for t in TOOLS}
# Per-measurement time limits, seconds (full size; --quick uses a third, at least 60).
TIMEOUTS = {1: 180, 2: 300, 3: 300, 4: 300, 5: 300, 6: 300, 7: 180, 8: 120}
# A tool whose first repetition took longer than this is not repeated (bounded runs).
REPEAT_UNDER_S = 45.0


# -- arguments --------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="benchmarks/peers/run.py",
        description="Plait beside Prefect, DBOS, Airflow, procrastinate and Celery, "
        "and this machine's floor (make bench-peers).",
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TOOL",
        help="measure only this tool (repeatable; a family name such as 'prefect' "
        "selects all its variants; Plait and the floor are always measured): "
        + ", ".join(t.key for t in TOOLS),
    )
    ap.add_argument(
        "--workload",
        action="append",
        type=int,
        default=[],
        metavar="N",
        help="run only workload N (repeatable): "
        + "; ".join(f"{n} {w[0]}" for n, w in WORKLOADS.items()),
    )
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3; --quick 1)")
    ap.add_argument(
        "--timeout-scale", type=float, default=1.0, help="multiply every time limit by this"
    )
    ap.add_argument("--no-install", action="store_true", help="use the venvs as they are")
    ap.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    ap.add_argument(
        "--pg-admin",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL allowed to create and drop the suite's own databases",
    )
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="Celery's Redis")
    ap.add_argument("--out", type=Path, default=RESULTS / "peers.json")
    ap.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the table of an earlier run's JSON (and redraw its chart)",
    )
    ap.add_argument("--markdown", action="store_true", help="with --render: Markdown tables")
    args = ap.parse_args(argv)
    known = {t.key for t in TOOLS}
    for name in args.only:
        if not any(t.key == name or t.key.startswith(name + "-") for t in TOOLS):
            ap.error(f"--only {name!r}: no such tool; one of {', '.join(sorted(known))}")
    for n in args.workload:
        if n not in WORKLOADS:
            ap.error(f"--workload {n}: no such workload; 1 to {max(WORKLOADS)}")
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    if args.timeout_scale <= 0:
        ap.error("--timeout-scale must be positive")
    return args


def select_tools(only: Sequence[str]) -> list[Tool]:
    """The tools to measure: those named (a family name selects its variants), always
    with the Plait variants they are compared with and the floor."""
    if not only:
        return list(TOOLS)
    chosen = {t.key for t in TOOLS for n in only if t.key == n or t.key.startswith(n + "-")}
    chosen |= {BY_KEY[k].reference for k in list(chosen)} | {"plait", "floor"}
    return [t for t in TOOLS if t.key in chosen]


def size_for(workload: int, quick: bool, max_size: dict[int, int] | None = None) -> int:
    """The size one tool runs a workload at: full or quick, capped by the tool's own
    ``MAX_SIZE`` (ratios are per step, so a capped size still compares)."""
    _, full, small = WORKLOADS[workload]
    size = small if quick else full
    if max_size and workload in max_size:
        size = min(size, max_size[workload])
    return size


def timeout_for(workload: int, quick: bool, scale: float) -> float:
    base = TIMEOUTS[workload]
    return (max(60.0, base / 3) if quick else base) * scale


# -- statistics -------------------------------------------------------------------------------
def summarize(values: Iterable[float | None]) -> dict[str, float] | None:
    """Median, extremes and spread ((max − min) / median, in %) of some samples."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    med = statistics.median(xs)
    spread = (xs[-1] - xs[0]) / med * 100 if med > 0 else 0.0
    return {
        "median": round(med, 6),
        "min": round(xs[0], 6),
        "max": round(xs[-1], 6),
        "n": len(xs),
        "spread_pct": round(spread, 1),
    }


def steps_of(workload: int, size: int) -> int:
    """How many steps a workload of this size runs (what "per step" divides by)."""
    return size * STEPS_PER_RUN if workload == 4 else size


def per_step_ratio(seconds: float, size: int, ref_seconds: float, ref_size: int) -> float | None:
    """How many times Plait's time per step this is (> 1: slower than Plait)."""
    if not ref_seconds or not size or not ref_size:
        return None
    return round((seconds / size) / (ref_seconds / ref_size), 2)


def floor_seconds(workload: int, backend: str, size: int, floors: dict[str, Any]) -> float | None:
    """This machine's floor for one tool's figure, measured in the same run: the bare
    interpreter (1), the bare subprocess loop (5), one commit per step on the tool's
    store (2, 3, 4, 6, 7; plus fib itself for 7). None where no floor applies."""
    if workload == 1:
        return floors.get("python_start_s")
    if workload == 5:
        loop = floors.get("subprocess_loop_s")
        loop_size = floors.get("subprocess_loop_size")
        return loop / loop_size * size if loop and loop_size else None
    commit = {
        "sqlite": floors.get("sqlite_wal_normal_commit_s"),
        "pg": floors.get("pg_commit_s"),
    }.get(backend)
    if commit is None or workload not in (2, 3, 4, 6, 7):
        return None
    extra = 0.0
    if workload == 7 and floors.get("fib_s") and floors.get("fib_size"):
        extra = floors["fib_s"] / floors["fib_size"] * size
    return float(commit) * steps_of(workload, size) + extra


def figure(row: dict[str, Any]) -> tuple[str, float] | None:
    """The figure a row is compared by: when the result is durably recorded if the
    tool says so separately, else when the caller had its answer."""
    for key in ("durable", "answer"):
        if row.get(key):
            return key, float(row[key]["median"])
    return None


def add_comparisons(rows: list[dict[str, Any]], workload: int, floors: dict[str, Any]) -> None:
    """Fill in each row's ratios to its Plait reference and its multiple of the floor."""
    by_tool = {r["tool"]: r for r in rows}
    for r in rows:
        tool = BY_KEY.get(r["tool"])
        if tool is None or not r.get("answer"):
            continue
        ref = by_tool.get(tool.reference)
        if ref and ref.get("answer") and tool.key != "floor" and workload != 8:
            ref_fig = figure(ref)
            steps, ref_steps = steps_of(workload, r["size"]), steps_of(workload, ref["size"])
            r["x_plait_answer"] = per_step_ratio(
                r["answer"]["median"], steps, ref["answer"]["median"], ref_steps
            )
            got = figure(r)
            if got and ref_fig:
                r["x_plait"] = per_step_ratio(got[1], steps, ref_fig[1], ref_steps)
        fl = floor_seconds(workload, tool.backend, r["size"], floors)
        got = figure(r)
        if fl and got and tool.key != "floor":
            r["floor_s"] = round(fl, 6)
            r["x_floor"] = round(got[1] / fl, 1)


# -- the table --------------------------------------------------------------------------------
def _secs(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f} s"
    if x >= 1:
        return f"{x:.2f} s"
    return f"{x * 1000:.1f} ms"


def _ratio(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}×" if x >= 100 else f"{x:.2f}×" if x < 10 else f"{x:.1f}×"


def render_table(report: dict[str, Any]) -> str:
    """The terminal table: one block per workload, one line per tool."""
    lines: list[str] = []
    head = (
        f"{'tool':<24}{'n':>7}  {'answer (median, spread)':<26}{'durable':<12}"
        f"{'per step':>11}{'× Plait':>16}{'× floor':>10}"
    )
    for block in report["workloads"]:
        n = block["workload"]
        lines.append("")
        lines.append(f"{n}. {block['name']}")
        if n == 8:
            for r in block["rows"]:
                if r.get("error") or r.get("na"):
                    continue
                for key, label in (
                    ("sqlite_wal_normal_commit_s", "SQLite WAL, synchronous=NORMAL"),
                    ("sqlite_wal_full_commit_s", "SQLite WAL, synchronous=FULL"),
                    ("pg_commit_s", "PostgreSQL, synchronous_commit=on"),
                ):
                    s = r.get("extra", {}).get(key)
                    if s:
                        med = s["median"]
                        lines.append(
                            f"  {label:<36}{1 / med:>10,.0f} commits/s  "
                            f"({med * 1e6:,.0f} µs each, spread {s['spread_pct']:.0f}%)"
                        )
            continue
        lines.append("  " + head + ("  peak RSS" if n == 6 else ""))
        for r in block["rows"]:
            name = BY_KEY[r["tool"]].label if r["tool"] in BY_KEY else r["tool"]
            if r.get("na"):
                lines.append(f"  {name:<24}{'':>7}  n/a: {r['na']}")
                continue
            if not r.get("answer"):
                lines.append(f"  {name:<24}{r.get('size', ''):>7}  ✗ {r.get('error', 'no result')}")
                continue
            a = r["answer"]
            ans = f"{_secs(a['median'])} ±{a['spread_pct']:.0f}% (n={a['n']})"
            dur = _secs(r["durable"]["median"]) if r.get("durable") else "="
            got = figure(r)
            per = (got[1] / steps_of(n, r["size"])) if got and n != 1 else None
            x_plait = r.get("x_plait")
            xp = _ratio(x_plait)
            if r.get("x_plait_answer") is not None and r.get("durable"):
                xp = f"{_ratio(r['x_plait_answer'])}/{_ratio(x_plait)}"
            line = (
                f"  {name:<24}{r['size']:>7}  {ans:<26}{dur:<12}{_secs(per):>11}"
                f"{xp:>16}{_ratio(r.get('x_floor')):>10}"
            )
            if n == 6 and r.get("peak_rss_mb"):
                line += f"  {r['peak_rss_mb']['median']:,.0f} MB"
            if r.get("note"):
                line += f"  [{r['note']}]"
            lines.append(line)
    lines.append("")
    lines.append(
        "× Plait: time per step ÷ Plait's on the same kind of store (answer/durable "
        "where they differ); × floor: ÷ this machine's floor in the same run."
    )
    return "\n".join(lines)


SHORT = {
    1: "1 whole process",
    2: "2 sequential",
    3: "3 parallel",
    4: "4 200 runs",
    5: "5 shell",
    6: "6 fan-out",
    7: "7 fib(10)",
}


def render_markdown(report: dict[str, Any]) -> str:
    """The same figures as Markdown (for docs/performance.md): a matrix of the ratios to
    Plait, then one table per workload with the times, spread, ratios and floors."""
    blocks = [b for b in report["workloads"] if b["workload"] != 8]
    keys = [t.key for t in TOOLS if any(r["tool"] == t.key for b in blocks for r in b["rows"])]
    quick = bool(report.get("quick"))

    def cell(r: dict[str, Any] | None) -> str:
        if r is None:
            return ""
        if r.get("na"):
            return "n/a"
        if not r.get("answer"):
            return "✗"
        return _ratio(r.get("x_plait")) if r.get("x_plait") is not None else "—"

    lines = [
        "| time per step ÷ Plait's | " + " | ".join(SHORT[b["workload"]] for b in blocks) + " |"
    ]
    lines.append("|---" * (len(blocks) + 1) + "|")
    for key in keys:
        if key == "floor":
            continue
        row = [cell(next((x for x in b["rows"] if x["tool"] == key), None)) for b in blocks]
        lines.append(f"| {BY_KEY[key].label} | " + " | ".join(row) + " |")
    for b in blocks:
        n = b["workload"]
        full = size_for(n, quick)
        lines += ["", f"**{n}. {b['name']}** (n = {full:,})", ""]
        mem = " peak RSS |" if n == 6 else ""
        lines.append(f"| tool | n | answer | durable | spread | × Plait | × floor |{mem}")
        lines.append("|---|---|---|---|---|---|---|" + ("---|" if mem else ""))
        for r in b["rows"]:
            label = BY_KEY[r["tool"]].label if r["tool"] in BY_KEY else r["tool"]
            if r.get("na"):
                lines.append(f"| {label} | | n/a: {r['na']} | | | | |" + (" |" if mem else ""))
                continue
            if not r.get("answer"):
                why = str(r.get("error", "no result")).replace("|", "/")[:120]
                lines.append(
                    f"| {label} | {r.get('size', '')} | ✗ {why} | | | | |" + (" |" if mem else "")
                )
                continue
            a = r["answer"]
            dur = _secs(r["durable"]["median"]) if r.get("durable") else "="
            xp = _ratio(r.get("x_plait"))
            if r.get("x_plait_answer") is not None and r.get("durable"):
                xp = f"{_ratio(r['x_plait_answer'])} / {_ratio(r.get('x_plait'))}"
            size = f"{r['size']:,}" + ("" if r["size"] == full else " ‡")
            spread = f"±{a['spread_pct']:.0f}% (n={a['n']})"
            line = (
                f"| {label} | {size} | {_secs(a['median'])} | {dur} | {spread} | {xp} "
                f"| {_ratio(r.get('x_floor'))} |"
            )
            if mem:
                peak = r.get("peak_rss_mb")
                line += f" {peak['median']:,.0f} MB |" if peak else " |"
            lines.append(line)
    floors = report.get("floors", {})
    rates = [
        (label, floors.get(k))
        for k, label in (
            ("sqlite_wal_normal_commit_s", "SQLite WAL, synchronous=NORMAL"),
            ("sqlite_wal_full_commit_s", "SQLite WAL, synchronous=FULL"),
            ("pg_commit_s", "PostgreSQL, synchronous_commit=on"),
        )
    ]
    if any(v for _, v in rates):
        lines += ["", "**8. commit rate of this machine (the floor)**", ""]
        lines += ["| store | commits/s | per commit |", "|---|---|---|"]
        lines += [f"| {lab} | {1 / v:,.0f} | {v * 1e6:,.0f} µs |" for lab, v in rates if v]
    return "\n".join(lines)


# -- processes --------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Linux: SIGTERM a child if the driver dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The driver's environment without anything that would point a tool elsewhere."""
    drop = ("PLAIT_", "PREFECT_", "AIRFLOW", "DBOS_", "VIRTUAL_ENV", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def tree_rss_mb(roots: Iterable[int]) -> float:
    """Resident memory of some processes and all their descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(entry.path, "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    seen: set[int] = set()
    todo = [r for r in roots if r]
    total_kb = 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
    return total_kb / 1024


class PeakRss:
    """Samples the RSS of some process trees every 50 ms in a thread; keeps the peak."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.roots))
            self._stop.wait(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)
        return round(self.peak, 1)


class Service:
    """A peer's long-running process (server or worker) in its own process group:
    frozen with SIGSTOP while other tools are measured; ``stop()`` leaves nothing."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], ready: str, log: Path, cwd: Path
    ) -> None:
        self.name, self.ready, self.log_path = name, ready, log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            env=_clean_env(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.paused = False

    def log_tail(self, n: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def wait_ready(self, timeout: float) -> None:
        """Until the health URL answers 200 (``ready`` starts with http) or the log
        shows ``ready``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}: {self.log_tail(600)}"
                )
            if self.ready.startswith("http"):
                with (
                    contextlib.suppress(OSError, ValueError),
                    urllib.request.urlopen(self.ready, timeout=2) as r,
                ):
                    if r.status == 200:
                        return
            elif self.ready in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout:g} s: {self.log_tail(600)}")

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def pause(self) -> None:
        if not self.paused:
            self._signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False
            time.sleep(0.5)  # let it notice the time that passed before measuring

    def stop(self) -> None:
        self._signal(signal.SIGCONT)
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


# -- environments -----------------------------------------------------------------------------
def peer_module(tool: Tool) -> ModuleType:
    """A peer module's metadata (its top level imports only the standard library)."""
    return importlib.import_module(tool.module)


def plait_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def requirements_by_venv(tools: Iterable[Tool]) -> dict[str, list[str]]:
    """What each venv needs: the union of its modules' requirements (plus matplotlib
    in ``report`` for the chart)."""
    needs: dict[str, list[str]] = {}
    for tool in tools:
        mod = peer_module(tool)
        if mod.VENV is None:
            continue
        for req in mod.REQUIREMENTS:
            bucket = needs.setdefault(mod.VENV, [])
            if req not in bucket:
                bucket.append(req)
    return needs


def ensure_venv(name: str, requirements: list[str], *, install: bool, log: Path) -> str | None:
    """``.venvs/NAME`` with the requirements installed; an error message, or None."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    marker = venv / ".peers-requirements"
    wanted = "\n".join(sorted(requirements))
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return None
    if not install:
        return None if python.exists() else f"no venv at {venv} (--no-install)"
    print(f"  installing {name}: {' '.join(requirements)} (log: {log})", flush=True)
    with log.open("ab") as out:
        if not python.exists():
            made = subprocess.run(
                [sys.executable, "-m", "venv", str(venv)],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
            if made.returncode != 0:
                return f"could not create the venv {venv}"
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        got = subprocess.run(
            [*pip, *requirements], stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False
        )
    if got.returncode != 0:
        return f"pip install {' '.join(requirements)} failed (exit {got.returncode}); see {log}"
    marker.write_text(wanted)
    return None


def versions(python: str, packages: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    got = subprocess.run(
        [python, "-c", code, *packages], capture_output=True, text=True, timeout=60, check=False
    )
    with contextlib.suppress(ValueError):
        return dict(json.loads(got.stdout or "{}"))
    return {}


# -- the suite --------------------------------------------------------------------------------
@dataclass
class Suite:
    args: argparse.Namespace
    tools: list[Tool]
    workloads: list[int]
    tmp: Path
    broken: dict[str, str] = field(default_factory=dict)  # tool key -> why it cannot run
    services: dict[str, Service] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)
    pg_urls: dict[str, str] = field(default_factory=dict)
    api_urls: dict[str, str] = field(default_factory=dict)

    # -- set-up -------------------------------------------------------------------------
    def python(self, tool: Tool) -> str:
        venv = peer_module(tool).VENV
        return plait_python() if venv is None else str(VENVS / venv / "bin" / "python")

    def home(self, tool: Tool) -> Path:
        path = self.tmp / tool.key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def size(self, tool: Tool, workload: int) -> int:
        return size_for(workload, self.args.quick, getattr(peer_module(tool), "MAX_SIZE", None))

    def prepare_venvs(self) -> None:
        VENVS.mkdir(parents=True, exist_ok=True)
        needs = requirements_by_venv(self.tools)
        if not self.args.no_chart:
            needs["report"] = ["matplotlib>=3.7"]
        for name, reqs in needs.items():
            why = ensure_venv(
                name, reqs, install=not self.args.no_install, log=VENVS / f"{name}.log"
            )
            if why:
                if name == "report":
                    print(f"  no chart: {why}")
                    self.args.no_chart = True
                for tool in self.tools:
                    if name == peer_module(tool).VENV:
                        self.broken[tool.key] = why

    def create_database(self, tool: Tool) -> str:
        import psycopg  # Plait's venv has it (the postgres extra)

        name = f"peers_{tool.key.replace('-', '_')}_{os.getpid()}"
        with psycopg.connect(self.args.pg_admin, autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            db.execute(f"CREATE DATABASE {name}")
        self.databases.append(name)
        base = self.args.pg_admin.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def drop_databases(self) -> None:
        if not self.databases:
            return
        import psycopg

        with psycopg.connect(self.args.pg_admin, autocommit=True) as db:
            for name in self.databases:
                with contextlib.suppress(psycopg.Error):
                    db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def pg(self, tool: Tool) -> str:
        if tool.key not in self.pg_urls:
            needs_pg = tool.backend == "pg" or tool.key == "floor"
            self.pg_urls[tool.key] = self.create_database(tool) if needs_pg else ""
        return self.pg_urls[tool.key]

    def service(self, tool: Tool) -> Service | None:
        """Start the tool's service on first use (bounded); None if it has none."""
        if tool.key in self.services:
            return self.services[tool.key]
        mod, python, home = peer_module(tool), self.python(tool), self.home(tool)
        log = home / "service.log"
        if tool.key == "prefect-server":
            port = _free_port()
            argv, env, ready = mod.service(python, port, home)
            self.api_urls[tool.key] = f"http://127.0.0.1:{port}/api"
            limit = 180.0
        elif tool.key == "airflow":
            port = _free_port()
            sizes = {w: self.size(tool, w) for w in [1, *self.workloads] if w != 8}
            argv, env, ready = mod.service(python, port, home / "airflow", sizes)
            self.api_urls[tool.key] = f"http://127.0.0.1:{port}"
            limit = mod.START_TIMEOUT
        elif tool.key == "celery":
            argv, env, ready = mod.service(python, self.args.redis)
            limit = 60.0
        elif tool.key == "procrastinate":
            pg = self.pg(tool)
            prep, prep_env = mod.prepare(python, pg)
            subprocess.run(
                prep,
                env=_clean_env(prep_env),
                cwd=HERE,
                check=True,
                capture_output=True,
                timeout=120,
            )
            argv, env, ready = mod.service(python, pg)
            limit = 60.0
        else:
            return None
        print(f"  starting {tool.label} ({' '.join(argv[-3:])}) …", flush=True)
        t0 = time.perf_counter()
        svc = Service(tool.key, argv, env, ready, log, HERE)
        self.services[tool.key] = svc
        svc.wait_ready(limit * self.args.timeout_scale)
        print(f"  {tool.label} ready after {time.perf_counter() - t0:.1f} s", flush=True)
        return svc

    def focus(self, tool: Tool) -> Service | None:
        """Freeze every other tool's service; start or thaw this one's."""
        for key, other in self.services.items():
            if key != tool.key:
                other.pause()
        svc = self.service(tool)
        if svc is not None:
            svc.resume()
        return svc

    def stop_services(self) -> None:
        for svc in self.services.values():
            with contextlib.suppress(Exception):
                svc.stop()

    # -- one measurement ----------------------------------------------------------------
    def measure(self, tool: Tool, workload: int, size: int) -> dict[str, Any]:
        mod, python, home = peer_module(tool), self.python(tool), self.home(tool)
        svc = self.focus(tool)
        timeout = timeout_for(workload, self.args.quick, self.args.timeout_scale)
        pg = self.pg(tool)
        env: dict[str, str] = {"PYTHONPATH": str(HERE)}
        if workload == 1 and hasattr(mod, "whole_process"):
            argv, extra = mod.whole_process(python, home, tool.variant, pg)
            env.update(extra)
        else:
            argv = [python, str(HERE / f"{tool.module}.py")]
            argv += ["--workload", str(workload), "--size", str(size), "--variant", tool.variant]
            argv += ["--work", str(home), "--pg", pg, "--redis", self.args.redis]
            argv += ["--api", self.api_urls.get(tool.key, ""), "--timeout", str(timeout)]
        err_path = home / f"w{workload}.stderr"
        with err_path.open("wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                argv,
                env=_clean_env(env),
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            sampler = None
            if workload == 6:
                sampler = PeakRss([proc.pid] + ([svc.proc.pid] if svc else []))
                sampler.start()
            try:
                out, _ = proc.communicate(timeout=timeout + 30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                if sampler:
                    sampler.stop()
                return {"error": f"timed out after {timeout + 30:g} s"}
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # anything the tool left behind
            wall = time.perf_counter() - t0
        peak = sampler.stop() if sampler else None
        if proc.returncode != 0:
            tail = err_path.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            return {"error": f"exit {proc.returncode}: {tail[0][:300]}"}
        if workload == 1:
            return {"answer_s": round(wall, 6)}
        lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith(MARK)]
        if not lines:
            return {"error": "no result reported"}
        result: dict[str, Any] = json.loads(lines[-1][len(MARK) :])
        result["wall_s"] = round(wall, 3)
        if peak is not None:
            result["peak_rss_mb"] = peak
        return result

    # -- a workload over every tool -----------------------------------------------------
    def run_workload(self, workload: int) -> dict[str, Any]:
        name = WORKLOADS[workload][0]
        print(f"\n== workload {workload}: {name}", flush=True)
        samples: dict[str, list[dict[str, Any]]] = {t.key: [] for t in self.tools}
        stopped: dict[str, str] = {}  # tool -> why it gets no more repetitions
        na: dict[str, str] = {}
        for tool in self.tools:
            reason = peer_module(tool).NOT_APPLICABLE.get(workload)
            if workload == 8 and tool.key != "floor":
                reason = "measured once for the machine (the floor row)"
            if reason:
                na[tool.key] = reason
            elif tool.key in self.broken:
                stopped[tool.key] = self.broken[tool.key]
        active = [t for t in self.tools if t.key not in na]
        for rep in range(self.args.reps):
            order = active[rep % len(active) :] + active[: rep % len(active)] if active else []
            for tool in order:
                if tool.key in stopped:
                    continue
                size = self.size(tool, workload)
                if workload == 1 and rep == 0:  # untimed: create the tool's store first
                    with contextlib.suppress(Exception):
                        self.measure(tool, workload, size)
                try:
                    got = self.measure(tool, workload, size)
                except Exception as exc:  # a tool that cannot start is reported, not fatal
                    got = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                got["load_avg"] = round(os.getloadavg()[0], 2)
                samples[tool.key].append(got)
                shown = got.get("error") or ", ".join(
                    f"{k}={v}" for k, v in got.items() if k.endswith("_s") or k == "peak_rss_mb"
                )
                print(f"  rep {rep + 1} {tool.key:<15} n={size:<6} {shown}", flush=True)
                if got.get("error"):
                    stopped[tool.key] = got["error"]
                elif got.get("wall_s", 0) > REPEAT_UNDER_S:
                    stopped[tool.key] = f"one repetition took over {REPEAT_UNDER_S:g} s"
        for key in [k for k, got in samples.items() if any(g.get("error") for g in got)]:
            svc = self.services.pop(key, None)
            if svc is not None:  # a failed service may be broken: a fresh one next time
                print(f"  {key} failed: its service is restarted before its next workload")
                svc.stop()
        rows = [self.row(t, workload, samples[t.key], na.get(t.key), stopped) for t in self.tools]
        return {"workload": workload, "name": name, "rows": rows}

    def row(
        self,
        tool: Tool,
        workload: int,
        got: list[dict[str, Any]],
        na: str | None,
        stopped: dict[str, str],
    ) -> dict[str, Any]:
        if na:
            return {"tool": tool.key, "na": na}
        ok = [g for g in got if not g.get("error")]
        row: dict[str, Any] = {"tool": tool.key, "size": self.size(tool, workload), "samples": got}
        row["answer"] = summarize(g["answer_s"] for g in ok)
        if any("durable_s" in g for g in ok):
            row["durable"] = summarize(g.get("durable_s") for g in ok)
        if any("peak_rss_mb" in g for g in ok):
            row["peak_rss_mb"] = summarize(g.get("peak_rss_mb") for g in ok)
        extra = {
            k: summarize(g[k] for g in ok if k in g)
            for k in ("sqlite_wal_normal_commit_s", "sqlite_wal_full_commit_s", "pg_commit_s")
            if any(k in g for g in ok)
        }
        if extra:
            row["extra"] = extra
        errors = [g["error"] for g in got if g.get("error")]
        if errors:
            row["error"] = errors[-1]
        if not ok and tool.key in stopped and not errors:
            row["error"] = stopped[tool.key]
        full = size_for(workload, self.args.quick)
        notes = []
        if row["size"] != full:
            notes.append(f"n={row['size']} of {full}: per step")
        if ok and len(ok) < self.args.reps and tool.key in stopped and not errors:
            notes.append(stopped[tool.key])
        if notes:
            row["note"] = "; ".join(notes)
        return row

    # -- floors ---------------------------------------------------------------------------
    @staticmethod
    def floors(blocks: list[dict[str, Any]]) -> dict[str, Any]:
        """The floor row's medians, by what they measure."""
        out: dict[str, Any] = {}
        for block in blocks:
            row = next((r for r in block["rows"] if r["tool"] == "floor"), None)
            if not row or not row.get("answer"):
                continue
            n = block["workload"]
            if n == 1:
                out["python_start_s"] = row["answer"]["median"]
            elif n == 5:
                out["subprocess_loop_s"] = row["answer"]["median"]
                out["subprocess_loop_size"] = row["size"]
            elif n == 7:
                out["fib_s"] = row["answer"]["median"]
                out["fib_size"] = row["size"]
            elif n == 8:
                for k, s in row.get("extra", {}).items():
                    if s:
                        out[k] = s["median"]
        return out


def run_suite(
    args: argparse.Namespace, argv: Sequence[str], save: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    tools = select_tools(args.only)
    workloads = sorted(set(args.workload)) if args.workload else sorted(WORKLOADS)
    if args.workload and any(w in (2, 3, 4, 6, 7) for w in workloads) and 8 not in workloads:
        workloads.append(8)  # the commit floor those figures are shown against
    tmp = Path(tempfile.mkdtemp(prefix="plait-peers-"))
    suite = Suite(args, tools, workloads, tmp)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start = [round(x, 2) for x in os.getloadavg()]
    print(f"tools: {', '.join(t.key for t in tools)}; workloads: {workloads}; reps: {args.reps}")
    print(f"load average at start: {load_start} on {os.cpu_count()} CPUs; work in {tmp}")
    # Plait measured as an installed wheel has it: bytecode compiled.
    import importlib.util

    spec = importlib.util.find_spec("plait")
    if spec and spec.origin:
        subprocess.run(
            [plait_python(), "-m", "compileall", "-q", str(Path(spec.origin).parent)], check=False
        )
    blocks: list[dict[str, Any]] = []
    meta = {"at": started, "argv": list(argv), "quick": args.quick, "reps": args.reps}

    def report(done: bool) -> dict[str, Any]:
        floors = Suite.floors(blocks)
        for block in blocks:
            add_comparisons(block["rows"], block["workload"], floors)
        machine = {
            "cpus": os.cpu_count(),
            "load_avg_start": load_start,
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0],
        }
        return {
            **meta,
            "complete": done,
            "machine": machine,
            "floors": floors,
            "unavailable": suite.broken,
            "workloads": blocks,
        }

    try:
        suite.prepare_venvs()
        for w in workloads:
            blocks.append(suite.run_workload(w))
            save(report(done=False))  # an interrupted run still leaves what it measured
    finally:
        suite.stop_services()
        suite.drop_databases()
        shutil.rmtree(tmp, ignore_errors=True)
    vers: dict[str, dict[str, str]] = {"plait": versions(plait_python(), ["plait", "sqlalchemy"])}
    for tool in tools:
        venv = peer_module(tool).VENV
        if venv and tool.key not in suite.broken:
            pkgs = [
                r.split("[")[0].split("<")[0].split(">")[0].split("=")[0]
                for r in peer_module(tool).REQUIREMENTS
            ]
            vers.setdefault(tool.module.removesuffix("_bench"), versions(suite.python(tool), pkgs))
    final = report(done=True)
    final["versions"] = vers
    return final


def chart(json_path: Path, png: Path) -> str | None:
    """The PNG of the ratios, drawn by ``chart.py`` in the report venv; an error or None."""
    python = VENVS / "report" / "bin" / "python"
    if not python.exists():
        return "no report venv (matplotlib)"
    got = subprocess.run(
        [str(python), str(HERE / "chart.py"), str(json_path), str(png)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return None if got.returncode == 0 else (got.stderr.strip().splitlines() or ["?"])[-1]


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM (e.g. make being stopped) unwinds through the clean-up too."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        if not args.render.is_file():
            print(f"--render {args.render}: no such file", file=sys.stderr)
            return 2
        saved = json.loads(args.render.read_text())
        print(render_markdown(saved) if args.markdown else render_table(saved))
        if not args.no_chart:
            png = args.render.with_suffix(".png")
            why = chart(args.render, png)
            print(f"chart written to {png}" if why is None else f"no chart: {why}")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(report: dict[str, Any]) -> None:
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=1) + "\n")
        os.replace(tmp, args.out)

    with _terminate_cleanly():
        report = run_suite(args, sys.argv[1:] if argv is None else argv, save)
    save(report)
    print(render_table(report))
    print(f"\nresults written to {args.out}")
    if not args.no_chart:
        png = args.out.with_suffix(".png")
        why = chart(args.out, png)
        print(f"chart written to {png}" if why is None else f"no chart: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
