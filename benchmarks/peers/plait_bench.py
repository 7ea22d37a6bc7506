"""Plait, from this repository's venv: the workloads as YAML workflows run by the
embedded engine (``LocalSession``, as ``plait run`` and ``Workflow.run()`` drive it),
on SQLite in a fresh home or on a fresh PostgreSQL database.

A run's answer comes after its last transition is committed (``Runner.wait`` returns a
run state loaded from the store), so "answer" and "durably recorded" are the same
moment here. On SQLite, "durable" means WAL with ``synchronous=NORMAL``: it survives a
crash of the process, not a power cut (``?synchronous=full`` for that).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: its folder is already first
    sys.path.insert(0, str(HERE))

from _common import MAX_PARALLEL, STEPS_PER_RUN  # noqa: E402

NAME = "plait"
VENV = None  # this repository's .venv
REQUIREMENTS: list[str] = []
VARIANTS = {"sqlite": "SQLite (embedded)", "pg": "PostgreSQL"}
NOT_APPLICABLE: dict[int, str] = {}
SERVICE = None


def whole_process(
    python: str, work: Path, variant: str, pg: str
) -> tuple[list[str], dict[str, str]]:
    """Workload 1 as users run it: ``plait run one.yaml`` (the CLI), bytecode compiled
    as an installed wheel has it."""
    wf = work / "one.yaml"
    wf.write_text(
        "name: one\nsteps:\n  - id: hello\n    uses: python\n    with: {function: '_common:noop'}\n"
    )
    env = {"PLAIT_HOME": str(work / "home"), "PYTHONPATH": str(HERE)}
    if variant == "pg":
        env["PLAIT_DATABASE_URL"] = pg
    argv = [
        python,
        "-m",
        "plait.cli",
        "run",
        str(wf),
        "--quiet",
        "--results-dir",
        str(work / "results"),
    ]
    return argv, env


def _steps(n: int, body: str, *, parallel: bool, prefix: str = "s") -> str:
    extra = "    needs: []\n" if parallel else ""
    return "".join(f"  - id: {prefix}{i}\n{body}{extra}" for i in range(n))


NOOP = "    uses: python\n    with: {function: '_common:noop'}\n"
FIB = "    uses: python\n    with: {function: '_common:fib', args: {n: 10}}\n"
SHELL = "    uses: shell\n    with: {command: 'true', shell: 'sh -c'}\n"  # the floor's argv


def source(workload: int, size: int) -> tuple[str, dict[str, Any]]:
    """The workflow (YAML) and inputs of one workload."""
    if workload == 2:
        return f"name: seq\nsteps:\n{_steps(size, NOOP, parallel=False)}", {}
    if workload == 3:
        return f"name: par\nsteps:\n{_steps(size, NOOP, parallel=True)}", {}
    if workload == 4:
        return f"name: five\nsteps:\n{_steps(STEPS_PER_RUN, NOOP, parallel=False)}", {}
    if workload == 5:
        return f"name: shell\nsteps:\n{_steps(size, SHELL, parallel=False)}", {}
    if workload == 6:
        text = (
            "name: fan\ninputs:\n  items: {type: array}\nsteps:\n  - id: each\n"
            f"    for_each: '${{{{ inputs.items }}}}'\n    max_parallel: {MAX_PARALLEL}\n{NOOP}"
        )
        return text, {"items": list(range(size))}
    if workload == 7:
        return f"name: fib\nsteps:\n{_steps(size, FIB, parallel=False)}", {}
    raise ValueError(f"workload {workload} is not run by this module")


def measure(workload: int, size: int, work: Path, variant: str, pg: str) -> dict[str, Any]:
    import asyncio

    from _common import Clock

    from plait.local import LocalSession
    from plait.model import load_workflow
    from plait.runtime.tuning import tune_gc
    from plait.settings import Settings

    url = pg if variant == "pg" else f"sqlite:///{work}/plait.db"
    text, inputs = source(workload, size)

    async def go() -> dict[str, Any]:
        session = LocalSession(Settings(home=work, database_url=url))
        session.runner.concurrency = MAX_PARALLEL
        plan = load_workflow(text, "bench.yaml", session.registry.input_models()).plan
        tune_gc()  # as `plait run` does once start-up is over
        try:
            if workload != 4:
                clock = Clock()
                result = await session.run(plan, text, inputs, workdir=HERE)
                took = clock.since()
                if not result.success:
                    raise RuntimeError(f"run {result.status}: {result.error}")
                return {"answer_s": took, "steps": len(result.steps)}
            version = session.store.save_version(plan.namespace, plan.name, text, "x", author=None)
            clock = Clock()
            ids = [
                await session.runner.start(plan, {}, version_id=version.id, workdir=HERE)
                for _ in range(size)
            ]
            started = clock.since()
            runs = [await session.runner.wait(i) for i in ids]
            took = clock.since()
            bad = [r.status for r in runs if str(r.status) != "succeeded"]
            if bad:
                raise RuntimeError(f"{len(bad)} runs did not succeed: {bad[:3]}")
            return {"answer_s": took, "all_started_s": started, "steps": size * STEPS_PER_RUN}
        finally:
            await session.close()

    return asyncio.run(go())


def main() -> None:
    from _common import emit, parse

    args = parse()
    emit(**measure(args.workload, args.size, Path(args.work), args.variant, args.pg))


if __name__ == "__main__":
    main()
