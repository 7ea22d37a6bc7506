"""Plait's performance measurements (``make bench``).

Each figure is printed with a baseline measured in the same run on the same machine,
and the ratio between them, so a busy machine moves both. Results also go to
``benchmarks/results/latest.json``.

1. 1,000 sequential no-op ``python`` steps, durable on SQLite: engine overhead per step
   (target ≤ 0.3 ms) — baseline: calling the same function 1,000 times directly.
2. 1,000 parallel no-op steps: steps per second (target ≥ 5,000).
3. 200 shell ``true`` steps against a bare ``subprocess.run`` loop of the same command
   lines (target ≤ 1.2×).
4. ``plait run`` of a one-step workflow as a whole process (target ≤ 0.4 s) — baseline:
   the bare interpreter start-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def _yaml_steps(n: int, body: str, *, parallel: bool) -> str:
    steps = "\n".join(
        f"  - id: s{i}\n{body}" + ("    needs: []\n" if parallel else "") for i in range(n)
    )
    return f"name: bench\nsteps:\n{steps}"


PY_BODY = "    uses: python\n    with: {function: 'noop:noop'}\n"
SH_BODY = "    run: 'true'\n"


def _session(home: Path, concurrency: int) -> Any:
    from plait.local import LocalSession
    from plait.settings import Settings

    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    session.runner.concurrency = concurrency
    return session


def _run_yaml(source: str, home: Path, concurrency: int = 32) -> tuple[float, Any]:
    from plait.model import load_workflow

    async def go() -> tuple[float, Any]:
        from plait.runtime.tuning import tune_gc

        session = _session(home, concurrency)
        plan = load_workflow(source, "bench.yaml", session.registry.input_models()).plan
        tune_gc()  # as `plait run` does after start-up (once per process)
        try:
            t0 = time.perf_counter()
            result = await session.run(plan, source, {}, workdir=HERE)
            return time.perf_counter() - t0, result
        finally:
            await session.close()

    return asyncio.run(go())


def bench_sequential(tmp: Path, n: int = 1000) -> dict[str, Any]:
    from noop import noop

    t0 = time.perf_counter()
    for _ in range(n):
        noop()
    base = time.perf_counter() - t0
    times = []
    for i in range(3):
        took, result = _run_yaml(_yaml_steps(n, PY_BODY, parallel=False), tmp / f"seq{i}")
        assert result.success, result.status
        times.append(took)
    best = min(times)
    per_step_ms = (best - base) / n * 1000
    return {
        "name": "sequential python steps",
        "steps": n,
        "seconds": round(best, 3),
        "baseline_seconds": round(base, 6),
        "overhead_ms_per_step": round(per_step_ms, 4),
        "target": "<= 0.3 ms",
        "ok": per_step_ms <= 0.3,
    }


def bench_parallel(tmp: Path, n: int = 1000) -> dict[str, Any]:
    times = []
    for i in range(3):
        took, result = _run_yaml(_yaml_steps(n, PY_BODY, parallel=True), tmp / f"par{i}", 64)
        assert result.success, result.status
        times.append(took)
    best = min(times)
    rate = n / best
    return {
        "name": "parallel python steps",
        "steps": n,
        "seconds": round(best, 3),
        "steps_per_second": round(rate),
        "target": ">= 5000",
        "ok": rate >= 5000,
    }


def bench_shell(tmp: Path, n: int = 200) -> dict[str, Any]:
    from plait.actions.shell import default_shell

    argv = [*default_shell(), "true"]
    bases, times = [], []
    for i in range(3):  # alternated, so that a change of the machine's load hits both
        t0 = time.perf_counter()
        for _ in range(n):
            subprocess.run(argv, check=True)
        bases.append(time.perf_counter() - t0)
        took, result = _run_yaml(_yaml_steps(n, SH_BODY, parallel=False), tmp / f"sh{i}")
        assert result.success, result.status
        times.append(took)
    base, best = min(bases), min(times)
    ratio = best / base
    return {
        "name": "sequential shell steps",
        "steps": n,
        "seconds": round(best, 3),
        "baseline_seconds": round(base, 3),
        "ratio": round(ratio, 3),
        "target": "<= 1.2x",
        "ok": ratio <= 1.2,
    }


def bench_startup(tmp: Path, n: int = 7) -> dict[str, Any]:
    wf = tmp / "one.yaml"
    wf.write_text("name: one\nsteps:\n  - id: hello\n    run: 'true'\n")
    env = {**os.environ, "PLAIT_HOME": str(tmp / "startup")}
    plait = [sys.executable, "-m", "plait.cli"]
    cmd = [*plait, "run", str(wf), "--quiet", "--results-dir", str(tmp / "res")]
    # An installed wheel has its bytecode compiled by pip; a checkout run with
    # PYTHONDONTWRITEBYTECODE (as CI and this machine set it) would compile every module
    # on every start. Measure the installed state.
    import plait

    package = str(Path(plait.__file__).parent)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)
    subprocess.run(cmd, env=env, check=True, capture_output=True)  # creates the store

    def timed(argv: list[str]) -> float:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run(argv, env=env, check=True, capture_output=True)
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    base = timed([sys.executable, "-c", "pass"])
    took = timed(cmd)
    return {
        "name": "plait run, one step, whole process",
        "seconds": round(took, 3),
        "baseline_seconds": round(base, 3),
        "target": "<= 0.4 s",
        "ok": took <= 0.4,
    }


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="plait-bench-"))
    results = []
    try:
        for bench in (bench_sequential, bench_parallel, bench_shell, bench_startup):
            r = bench(tmp)
            results.append(r)
            mark = "ok " if r["ok"] else "MISS"
            fields = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("name", "ok"))
            print(f"[{mark}] {r['name']}: {fields}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = HERE / "results" / "latest.json"
    out.write_text(
        json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}, indent=2) + "\n"
    )
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
