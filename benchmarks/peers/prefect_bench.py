"""Prefect 3, in its own venv: the workloads as ``@flow`` functions calling ``@task``
functions.

Variants: ``local`` is Prefect's default with nothing configured — a temporary
("ephemeral") API server on SQLite in ``PREFECT_HOME``, started by the flow's process;
``server`` talks to ``prefect server start`` on 127.0.0.1 (started by the driver, SQLite).

Prefect records a flow run's state through the API before the flow call returns, but a
task run's states travel as events that the server's task-run recorder writes later.
So "answer" is when the flow call returned and "durable" is when the API counts every
task run of the workload as ``COMPLETED`` (polled every 20 ms after the answer).
Parallel work uses ``ThreadPoolTaskRunner(max_workers=50)`` (``.submit`` for workload 3,
``.map`` for workload 6); workload 4 runs 200 async flows at once with
``asyncio.gather`` in one process. Log level WARNING, as ``plait run --quiet``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import MAX_PARALLEL, STEPS_PER_RUN  # noqa: E402

NAME = "prefect"
VENV = "prefect"
# Prefect 3.8's server broke with newer FastAPI on this machine: pin the one that works.
REQUIREMENTS = ["prefect>=3.8,<4", "fastapi==0.150.0"]
VARIANTS = {
    "local": "default (ephemeral local API on SQLite)",
    "server": "prefect server on 127.0.0.1",
}
NOT_APPLICABLE: dict[int, str] = {}
# Measured ≈ 0.02 s an item to the answer and ≈ 0.1 s to the durable record on this
# machine: 10,000 items would take ~17 minutes a repetition; 200 five-step flows at once
# ≈ 1.5 s a flow. Compared per step at the sizes below.
MAX_SIZE = {4: 40, 6: 1000}


def environment(work: Path, api: str) -> dict[str, str]:
    """Prefect's settings for one process (a fresh home each measurement)."""
    env = {
        "PREFECT_HOME": str(work / "prefect-home"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # The temporary server needs more than the default 20 s to start on a busy
        # 2-core machine (≈ 25 s measured with a fresh database): wait, then measure.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    if api:
        env["PREFECT_API_URL"] = api
    return env


def service(python: str, port: int, home: Path) -> tuple[list[str], dict[str, str], str]:
    """``prefect server start`` for the ``server`` variant: argv, env, health URL."""
    argv = [
        str(Path(python).parent / "prefect"),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = environment(home, "")
    return argv, env, f"http://127.0.0.1:{port}/api/health"


def run(workload: int, size: int, work: Path, api: str) -> dict[str, Any]:
    import asyncio
    import subprocess
    import time

    os.environ.update(environment(work, api))
    from _common import SHELL_ARGV, Clock, fib, noop
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.task_runners import ThreadPoolTaskRunner

    @task
    def noop_task() -> None:
        noop()

    @task
    def item_task(item: int) -> int:
        return item

    @task
    def fib_task(n: int) -> int:
        return fib(n)

    @task
    def shell_task() -> int:
        return subprocess.run(SHELL_ARGV, check=True).returncode

    @task
    async def anoop_task() -> None:
        noop()

    @flow
    def one() -> None:
        noop_task()

    @flow
    def sequential(n: int) -> None:
        for _ in range(n):
            noop_task()

    @flow
    def fibs(n: int) -> None:
        for _ in range(n):
            fib_task(10)

    @flow
    def shells(n: int) -> None:
        for _ in range(n):
            shell_task()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL))
    def parallel(n: int) -> None:
        futures = [noop_task.submit() for _ in range(n)]
        for f in futures:
            f.result()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL))
    def fan_out(n: int) -> None:
        item_task.map(range(n)).result()

    @flow
    async def five() -> None:
        for _ in range(STEPS_PER_RUN):
            await anoop_task()

    if workload == 1:
        one()
        return {}

    one()  # untimed: start the local API server (local variant) and warm the client
    clock = Clock()
    if workload == 4:

        async def many() -> list[Any]:
            return list(await asyncio.gather(*(five(return_state=True) for _ in range(size))))

        states = asyncio.run(many())
        expected = size * STEPS_PER_RUN
    else:
        chosen = {2: sequential, 3: parallel, 5: shells, 6: fan_out, 7: fibs}[workload]
        states = [chosen(size, return_state=True)]
        expected = size
    answer = clock.since()
    bad = [s for s in states if not s.is_completed()]
    if bad:
        raise RuntimeError(f"{len(bad)} flow runs did not complete: {bad[0]}")
    flow_runs = [str(s.state_details.flow_run_id) for s in states]
    body = {
        "task_runs": {
            "flow_run_id": {"any_": flow_runs},
            "state": {"type": {"any_": ["COMPLETED"]}},
        }
    }
    deadline = time.monotonic() + 300
    with get_client(sync_client=True) as client:
        while True:
            done = int(client._client.post("/task_runs/count", json=body).json())
            if done >= expected:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done} of {expected} task runs recorded after 300 s")
            time.sleep(0.02)
    return {"answer_s": answer, "durable_s": clock.since(), "task_runs": done}


def main() -> None:
    from _common import emit, parse

    a = parse()
    result = run(a.workload, a.size, Path(a.work), a.api)
    if a.workload != 1:
        emit(**result)


if __name__ == "__main__":
    main()
