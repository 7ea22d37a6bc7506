"""Celery with Redis (broker and result backend on 127.0.0.1:6379, database 13, queue
``plait-peers``), in its own venv. The driver starts one worker (``-P threads -c 50``:
the same bound of 50 as every tool's parallel work; no gossip, mingle or heartbeat);
the measuring process is the caller.

Sequences are Celery's workflow primitive, a ``chain`` (workloads 2, 4 and 7); parallel
work is a ``group`` (3, 6). The answer is when the caller has every result. Results live
in Redis — memory, written to disk by Redis's own snapshot schedule — so there is no
"durably recorded" moment to report, and no commit floor applies.
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

NAME = "celery"
VENV = "queues"
REQUIREMENTS = ["celery[redis]>=5.3,<6"]
VARIANTS = {"redis": "Redis broker and results"}
NOT_APPLICABLE = {
    5: "a job queue runs Python functions; a shell step would be our own subprocess call",
}
QUEUE = "plait-peers"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"


def make_app() -> Any:
    from _common import fib, noop
    from celery import Celery

    url = os.environ.get("PEERS_REDIS", DEFAULT_REDIS)
    app = Celery("peers", broker=url, backend=url)
    app.conf.update(
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        result_expires=600,
    )

    @app.task(name="peers.noop")
    def noop_task(*_: Any) -> None:
        noop()

    @app.task(name="peers.fib")
    def fib_task(*_: Any) -> int:
        return fib(10)

    return app


# What the worker loads (only there: the driver imports this module for its metadata).
app = make_app() if os.environ.get("PEERS_WORKER") else None


def service(python: str, redis: str) -> tuple[list[str], dict[str, str], str]:
    """The worker: argv, env, and the line of its log that says it is ready."""
    argv = [
        python,
        "-m",
        "celery",
        "-A",
        "celery_bench:app",
        "worker",
        "-P",
        "threads",
        "-c",
        str(MAX_PARALLEL),
        "-Q",
        QUEUE,
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    return argv, {"PEERS_REDIS": redis, "PYTHONPATH": str(HERE), "PEERS_WORKER": "1"}, "ready."


def run(workload: int, size: int, timeout: float) -> dict[str, Any]:
    from _common import Clock
    from celery import chain, group

    app = make_app()
    noop_task, fib_task = app.tasks["peers.noop"], app.tasks["peers.fib"]
    if workload == 1:
        noop_task.delay().get(timeout=timeout)
        return {}
    noop_task.delay().get(timeout=timeout)  # untimed: connections, the worker awake
    clock = Clock()
    if workload == 2:
        chain(noop_task.si() for _ in range(size)).apply_async().get(timeout=timeout)
    elif workload == 3 or workload == 6:
        group(noop_task.si() for _ in range(size)).apply_async().get(timeout=timeout)
    elif workload == 4:
        runs = [
            chain(noop_task.si() for _ in range(STEPS_PER_RUN)).apply_async() for _ in range(size)
        ]
        for r in runs:
            r.get(timeout=timeout)
    elif workload == 7:
        chain(fib_task.si() for _ in range(size)).apply_async().get(timeout=timeout)
    else:
        raise ValueError(f"workload {workload}: {NOT_APPLICABLE.get(workload, 'not run')}")
    return {"answer_s": clock.since()}


def main() -> None:
    from _common import emit, parse

    a = parse()
    os.environ["PEERS_REDIS"] = a.redis
    result = run(a.workload, a.size, a.timeout)
    if a.workload != 1:
        emit(**result)


if __name__ == "__main__":
    main()
