"""DBOS Transact (Python), in its own venv: the workloads as ``@DBOS.workflow`` functions
calling ``@DBOS.step`` functions, on a SQLite system database in the measurement's
folder or on a fresh PostgreSQL database.

DBOS checkpoints each step's output in its system database before the workflow goes
on, so the answer and the durable record coincide. Parallel work (workloads 3 and 6)
uses DBOS's documented pattern: the parent workflow enqueues child workflows on a queue
with ``worker_concurrency`` 50 and waits for their handles; the queue is polled every
10 ms (DBOS's default is 1 s, which would measure the poll interval, not DBOS).
Workload 4 starts 200 workflows with ``DBOS.start_workflow``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import MAX_PARALLEL, STEPS_PER_RUN  # noqa: E402

NAME = "dbos"
VENV = "dbos"
REQUIREMENTS = ["dbos>=2,<4", "psycopg[binary]>=3.1"]
VARIANTS = {"sqlite": "SQLite system database", "pg": "PostgreSQL system database"}
NOT_APPLICABLE: dict[int, str] = {}
# Measured ≈ 0.1 s an item through the queue on this machine: 10,000 items would take
# ~17 minutes a repetition. Compared per step at 1,000.
MAX_SIZE = {6: 1000}
SERVICE = None
POLL_S = 0.01


def run(workload: int, size: int, work: Path, variant: str, pg: str) -> dict[str, Any]:
    import subprocess

    from _common import SHELL_ARGV, Clock, fib, noop, quiet_logs

    quiet_logs()
    from dbos import DBOS, DBOSConfig

    url = pg if variant == "pg" else f"sqlite:///{work}/dbos.sqlite"
    config: DBOSConfig = {"name": "peers", "system_database_url": url, "log_level": "ERROR"}
    DBOS(config=config)

    @DBOS.step()
    def noop_step() -> None:
        noop()

    @DBOS.step()
    def fib_step(n: int) -> int:
        return fib(n)

    @DBOS.step()
    def shell_step() -> int:
        return subprocess.run(SHELL_ARGV, check=True).returncode

    @DBOS.workflow()
    def one() -> None:
        noop_step()

    @DBOS.workflow()
    def sequential(n: int) -> None:
        for _ in range(n):
            noop_step()

    @DBOS.workflow()
    def fibs(n: int) -> None:
        for _ in range(n):
            fib_step(10)

    @DBOS.workflow()
    def shells(n: int) -> None:
        for _ in range(n):
            shell_step()

    @DBOS.workflow()
    def five() -> None:
        for _ in range(STEPS_PER_RUN):
            noop_step()

    @DBOS.workflow()
    def child() -> None:
        noop_step()

    @DBOS.workflow()
    def fan_out(n: int) -> int:
        queue = DBOS.retrieve_queue("fan")
        handles = [queue.enqueue(child) for _ in range(n)]
        for h in handles:
            h.get_result()
        return len(handles)

    DBOS.launch()
    try:
        DBOS.register_queue("fan", worker_concurrency=MAX_PARALLEL, polling_interval_sec=POLL_S)
        if workload == 1:
            one()
            return {}
        clock = Clock()
        if workload == 2:
            sequential(size)
        elif workload == 3 or workload == 6:
            fan_out(size)
        elif workload == 4:
            handles = [DBOS.start_workflow(five) for _ in range(size)]
            for h in handles:
                h.get_result()
        elif workload == 5:
            shells(size)
        elif workload == 7:
            fibs(size)
        took = clock.since()
        return {"answer_s": took}
    finally:
        DBOS.destroy(destroy_registry=True)


def main() -> None:
    from _common import emit, parse

    a = parse()
    result = run(a.workload, a.size, Path(a.work), a.variant, a.pg)
    if a.workload != 1:
        emit(**result)


if __name__ == "__main__":
    main()
