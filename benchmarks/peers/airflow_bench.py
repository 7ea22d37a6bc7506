"""Apache Airflow 3, in its own venv: ``airflow standalone`` (API server, scheduler,
DAG processor, triggerer; LocalExecutor with ``parallelism`` 50; SQLite metadata
database) started by the driver on 127.0.0.1 with a fresh ``AIRFLOW_HOME``; the
workloads are DAGs written into its DAG folder before it starts.

The measuring process triggers DAG runs through the REST API (``POST
/api/v2/dags/{id}/dagRuns``) and polls their state every 50 ms; a run's ``success``
is read from the metadata database, so the answer is the durable record. Parallel work
is dynamic task mapping (``.expand``) with ``max_active_tis_per_dag`` 50; workload 4
triggers 200 runs of a five-task DAG (``max_active_runs`` 200).

Every Airflow task is a process started by the executor's supervisor, about a second
each on this machine, so the long workloads run at the smaller sizes of ``MAX_SIZE``
and are compared per step (the driver shows the size measured).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import MAX_PARALLEL, STEPS_PER_RUN  # noqa: E402

NAME = "airflow"
VENV = "airflow"
REQUIREMENTS = ["apache-airflow>=3,<4"]
VARIANTS = {"standalone": "airflow standalone, SQLite, LocalExecutor"}
NOT_APPLICABLE: dict[int, str] = {}
# A task costs ~1 s of process start-up: full sizes would take an hour per repetition.
MAX_SIZE = {2: 40, 3: 100, 4: 20, 5: 40, 6: 200}
START_TIMEOUT = 240.0


def dag_id(workload: int, size: int) -> str:
    return f"peers_w{workload}_n{size}"


def dag_file(workload: int, size: int) -> str:
    """The source of one workload's DAG (TaskFlow API)."""
    head = (
        "import datetime, sys, subprocess\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from _common import fib, noop, SHELL_ARGV\n"
        "from airflow.sdk import dag, task\n"
        "from airflow.providers.standard.operators.bash import BashOperator\n"
    )
    runs = size if workload == 4 else 16
    deco = (
        f"@dag(dag_id={dag_id(workload, size)!r}, schedule=None, catchup=False,\n"
        f"     start_date=datetime.datetime(2024, 1, 1), max_active_runs={runs},\n"
        f"     max_active_tasks={MAX_PARALLEL})\n"
    )
    if workload in (1, 2, 4, 7):
        n = {1: 1, 2: size, 4: STEPS_PER_RUN, 7: size}[workload]
        call = "fib(10)" if workload == 7 else "noop()"
        body = (
            f"def d():\n    @task\n    def step():\n        {call}\n"
            f"    prev = None\n    for i in range({n}):\n"
            "        t = step.override(task_id=f's{i}')()\n"
            "        if prev is not None:\n            prev >> t\n        prev = t\n"
        )
    elif workload == 5:
        body = (
            f"def d():\n    prev = None\n    for i in range({size}):\n"
            "        t = BashOperator(task_id=f's{i}', bash_command='true')\n"
            "        if prev is not None:\n            prev >> t\n        prev = t\n"
        )
    else:  # 3, 6: one mapped task over the items
        body = (
            f"def d():\n    @task(max_active_tis_per_dag={MAX_PARALLEL})\n"
            "    def step(item):\n        noop()\n"
            f"    step.expand(item=list(range({size})))\n"
        )
    return head + deco + body + "d()\n"


def service(
    python: str, port: int, home: Path, sizes: dict[int, int]
) -> tuple[list[str], dict[str, str], str]:
    """``airflow standalone``: argv, env, health URL. Writes the DAGs first."""
    import socket

    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    for workload, size in sizes.items():
        (dags / f"{dag_id(workload, size)}.py").write_text(dag_file(workload, size))

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    url = f"http://127.0.0.1:{port}"
    bindir = str(Path(python).parent)
    env = {
        "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",  # standalone starts `airflow ...`
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(MAX_PARALLEL),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }
    return [str(Path(bindir) / "airflow"), "standalone"], env, f"{url}/api/v2/monitor/health"


class Api:
    """The few REST calls the measurements make (urllib: nothing to import)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.server_errors = 0
        self.token = self.call("GET", "/auth/token", auth=False)["access_token"]

    def call(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        """One request; a 5xx is retried (up to 20 times, 0.5 s apart): on SQLite the
        API server answers 500 when its database is locked by the running tasks, which
        delays the measurement but is not the workload failing."""
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(21):
            req = urllib.request.Request(self.url + path, data=data, method=method)
            req.add_header("Content-Type", "application/json")
            if auth:
                req.add_header("Authorization", f"Bearer {self.token}")
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == 20:
                    raise
                self.server_errors += 1
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def fail_leftovers(self) -> int:
        """Mark the DAG runs still queued or running as failed (so that a measurement
        that timed out does not load the next one); how many there were."""
        busy = self.call("GET", "/api/v2/dags/~/dagRuns?state=running&state=queued&limit=100")
        runs = busy.get("dag_runs", [])
        for run in runs:
            quoted = urllib.request.quote(run["dag_run_id"], safe="")
            path = f"/api/v2/dags/{run['dag_id']}/dagRuns/{quoted}"
            self.call("PATCH", path, {"state": "failed"})
        if runs:
            time.sleep(5)  # their task processes notice and stop
        return len(runs)

    def trigger(self, dag: str) -> str:
        run = self.call("POST", f"/api/v2/dags/{dag}/dagRuns", {"logical_date": None})
        return str(run["dag_run_id"])

    def state(self, dag: str, run_id: str) -> str:
        quoted = urllib.request.quote(run_id, safe="")
        return str(self.call("GET", f"/api/v2/dags/{dag}/dagRuns/{quoted}")["state"])


def run(workload: int, size: int, api_url: str, timeout: float) -> dict[str, Any]:
    from _common import Clock

    api = Api(api_url)
    dag = dag_id(workload, size)
    deadline = time.monotonic() + START_TIMEOUT
    while True:  # untimed: the DAG processor has parsed the file and the DAG is active
        try:
            if not api.call("GET", f"/api/v2/dags/{dag}").get("is_paused", True):
                break
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"DAG {dag} not loaded after {START_TIMEOUT:g} s")
        time.sleep(0.5)
    with contextlib.suppress(urllib.error.HTTPError):  # best effort, untimed:
        api.fail_leftovers()  # runs an earlier measurement left behind (timed out)
    clock = Clock()
    ids = [api.trigger(dag) for _ in range(size if workload == 4 else 1)]
    pending = set(ids)
    deadline = time.monotonic() + timeout
    while pending:
        for rid in list(pending):
            state = api.state(dag, rid)
            if state == "success":
                pending.discard(rid)
            elif state == "failed":
                raise RuntimeError(f"DAG run {rid} of {dag} failed")
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} DAG runs not done after {timeout:g} s")
            time.sleep(0.05)
    return {"answer_s": clock.since(), "dag": dag, "api_5xx_retried": api.server_errors}


def main() -> None:
    from _common import emit, parse

    a = parse()
    result = run(a.workload, a.size, a.api, a.timeout)
    if a.workload != 1:
        emit(**result)


if __name__ == "__main__":
    main()
