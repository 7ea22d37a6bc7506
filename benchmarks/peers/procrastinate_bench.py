"""procrastinate (a PostgreSQL job queue), in its own venv. The driver applies its
schema to a fresh database and starts one worker (``--concurrency 50``, LISTEN/NOTIFY);
the measuring process defers jobs and waits for them.

procrastinate has no chains or groups: a sequence is a job that defers the next one
when it is done (workloads 2, 4, 7), parallel work is a batch of jobs deferred at once
(3, 6). A job's status is written to PostgreSQL by the worker, and the caller learns of
the end by reading it (polled every 10 ms), so the answer is the durable record.
Finished jobs of earlier measurements are deleted (untimed) before each one.

Chained jobs are slow with procrastinate's defaults: the worker clears its "new job"
flag after each fetch, so the notification of a job deferred by the job that is running
is often lost while the worker is fetching, and the next job waits for the worker's
5 s polling interval (``fetch_job_polling_interval``). We keep the defaults, as a user
would run it, and say so in the results.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import MAX_PARALLEL, STEPS_PER_RUN, fib  # noqa: E402

NAME = "procrastinate"
VENV = "queues"
REQUIREMENTS = ["procrastinate>=3,<4", "psycopg[binary,pool]>=3.1"]
VARIANTS = {"pg": "PostgreSQL"}
# A chained job often waits for the worker's 5 s poll (see the module's docstring): at
# ~0.7 s a step, 1,000 would exceed the time limit; compared per step at 100.
MAX_SIZE = {2: 100}
NOT_APPLICABLE = {
    5: "a job queue runs Python functions; a shell step would be our own subprocess call",
}


def _make_app() -> Any:
    import procrastinate

    conninfo = os.environ.get("PEERS_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    @app.task(name="peers.step", queue="peers")
    async def step(k: int, n: int, fn: str) -> None:
        if fn == "fib":
            fib(10)
        if k + 1 < n:
            await step.defer_async(k=k + 1, n=n, fn=fn)

    return app


# What the worker loads (only there: the driver imports this module for its metadata).
app = _make_app() if os.environ.get("PEERS_WORKER") else None


def prepare(python: str, pg: str) -> tuple[list[str], dict[str, str]]:
    """Before the worker starts: the schema, applied to the fresh database."""
    argv = [python, "-m", "procrastinate", "--app=procrastinate_bench.app", "schema", "--apply"]
    return argv, {"PEERS_PG": pg, "PYTHONPATH": str(HERE), "PEERS_WORKER": "1"}


def service(python: str, pg: str) -> tuple[list[str], dict[str, str], str]:
    """The worker: argv, env, and the line of its log that says it is ready."""
    argv = [
        python,
        "-m",
        "procrastinate",
        "--verbose",
        "--app=procrastinate_bench.app",
        "worker",
        f"--concurrency={MAX_PARALLEL}",
    ]
    return argv, {"PEERS_PG": pg, "PYTHONPATH": str(HERE), "PEERS_WORKER": "1"}, "Starting worker"


def run(workload: int, size: int, pg: str, timeout: float) -> dict[str, Any]:
    import asyncio
    import time

    import psycopg
    from _common import Clock

    os.environ["PEERS_PG"] = pg
    the_app = _make_app()
    step = the_app.tasks["peers.step"]

    async def go() -> dict[str, Any]:
        async with (
            the_app.open_async(),
            await psycopg.AsyncConnection.connect(pg, autocommit=True) as db,
        ):

            async def wait_for(count: int) -> None:
                deadline = time.monotonic() + timeout
                while True:
                    cur = await db.execute(
                        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
                    )
                    row = await cur.fetchone()
                    if row is not None and row[0] >= count:
                        return
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{row} of {count} jobs done after {timeout:g} s")
                    await asyncio.sleep(0.01)

            await db.execute("DELETE FROM procrastinate_jobs WHERE status = 'succeeded'")
            if workload == 1:
                await step.defer_async(k=0, n=1, fn="noop")
                await wait_for(1)
                return {}
            clock = Clock()
            if workload in (2, 7):
                await step.defer_async(k=0, n=size, fn="fib" if workload == 7 else "noop")
                expected = size
            elif workload in (3, 6):
                await step.batch_defer_async(*({"k": 0, "n": 1, "fn": "noop"} for _ in range(size)))
                expected = size
            elif workload == 4:
                jobs = ({"k": 0, "n": STEPS_PER_RUN, "fn": "noop"} for _ in range(size))
                await step.batch_defer_async(*jobs)
                expected = size * STEPS_PER_RUN
            else:
                raise ValueError(f"workload {workload}: {NOT_APPLICABLE.get(workload)}")
            await wait_for(expected)
            return {"answer_s": clock.since(), "jobs": expected, "concurrency": MAX_PARALLEL}

    return asyncio.run(go())


def main() -> None:
    from _common import emit, parse

    a = parse()
    result = run(a.workload, a.size, a.pg, a.timeout)
    if a.workload != 1:
        emit(**result)


if __name__ == "__main__":
    main()
