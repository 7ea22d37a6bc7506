"""The physical floor, measured in the same run and alternated with the tools: what
this machine costs for the parts no orchestrator can avoid.

- workload 1: the bare interpreter (``python -c pass``), timed by the driver;
- workload 5: a bare ``subprocess.run`` loop of the shell steps' command line;
- workload 7: calling ``fib(10)`` forty times (no durability: the compute itself);
- workload 8: commit rates — one row inserted per transaction, the step's minimum
  durable write — on SQLite in WAL mode with ``synchronous=NORMAL`` (what Plait uses:
  safe against a crash of the process), on SQLite with ``synchronous=FULL`` (an fsync
  per commit, safe against power loss) and on PostgreSQL (``synchronous_commit`` on,
  the default). Workloads 2, 3, 4 and 6 take their floor from these: one commit per
  step.

Runs in Plait's venv (``sqlite3`` and ``psycopg`` are there).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

NAME = "floor"
VENV = None
REQUIREMENTS: list[str] = []
VARIANTS = {"": "this machine"}
NOT_APPLICABLE = {
    2: "one commit per step: from workload 8",
    3: "one commit per step: from workload 8",
    4: "one commit per step: from workload 8",
    6: "one commit per step: from workload 8",
}


def whole_process(
    python: str, work: Path, variant: str, pg: str
) -> tuple[list[str], dict[str, str]]:
    return [python, "-c", "pass"], {}


def sqlite_commits(path: Path, n: int, synchronous: str) -> float:
    """Seconds per commit of a one-row insert on a WAL database."""
    import sqlite3
    import time

    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        t0 = time.perf_counter()
        for i in range(n):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (v) VALUES (?)", (f"step {i}",))
            db.execute("COMMIT")
        return (time.perf_counter() - t0) / n
    finally:
        db.close()


def pg_commits(url: str, n: int) -> float:
    """Seconds per commit of a one-row insert on PostgreSQL (a temporary-free table)."""
    import time

    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS peers_floor")
        db.execute("CREATE TABLE peers_floor (id bigserial PRIMARY KEY, v text)")
        t0 = time.perf_counter()
        for i in range(n):
            db.execute("INSERT INTO peers_floor (v) VALUES (%s)", (f"step {i}",))
        took = (time.perf_counter() - t0) / n
        db.execute("DROP TABLE peers_floor")
        return took


def run(workload: int, size: int, work: Path, pg: str) -> dict[str, Any]:
    import subprocess

    from _common import SHELL_ARGV, Clock, fib

    if workload == 5:
        clock = Clock()
        for _ in range(size):
            subprocess.run(SHELL_ARGV, check=True)
        return {"answer_s": clock.since()}
    if workload == 7:
        clock = Clock()
        for _ in range(size):
            fib(10)
        return {"answer_s": clock.since()}
    if workload == 8:
        work.mkdir(parents=True, exist_ok=True)
        out = {
            "sqlite_wal_normal_commit_s": sqlite_commits(work / "floor.db", size, "NORMAL"),
            "sqlite_wal_full_commit_s": sqlite_commits(work / "floor.db", size, "FULL"),
        }
        if pg:
            out["pg_commit_s"] = pg_commits(pg, size)
        out["answer_s"] = out["sqlite_wal_normal_commit_s"]
        return out
    raise ValueError(f"workload {workload}: {NOT_APPLICABLE.get(workload, 'not a floor')}")


def main() -> None:
    from _common import emit, parse

    a = parse()
    emit(**run(a.workload, a.size, Path(a.work), a.pg))


if __name__ == "__main__":
    main()
