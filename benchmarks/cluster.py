"""Cluster mode on PostgreSQL (``make bench``): worker processes sharing one database.

Real ``plait worker`` processes (``python -m plait.cli worker``) on a fresh database of
the local PostgreSQL server; runs are created by this process in one transaction each
batch, exactly as the API creates them (same rows, same ``NOTIFY plait_ready``). What is
measured, every figure beside a baseline of the same run on the same machine:

1. **Baseline**: this machine's PostgreSQL — a round trip (``SELECT 1``) and a durable
   commit (one-row ``UPDATE`` + ``COMMIT``) from one connection, and the commit rate of
   four connections at once. A durable step costs at least one commit.
2. **Per-step overhead, one worker**: one run of 500 sequential no-op ``python`` steps
   (after a first one, so the worker has the plan); wall time per step from the first
   step's end to the last's (target ≤ 1 ms), set against the commit latency, and the
   worker's CPU per step.
3. **Claim-to-start latency**: a one-step run is committed while one worker idles; the
   time from the commit until the worker has claimed and started the step (the
   attempt's ``started_at``) — with ``NOTIFY`` (the default), and without it, when only
   the worker's poll (every 0.5 s) finds the step. p50/p95.
4. **Throughput with 1, 2 and 4 worker processes**: 200 runs × 5 sequential no-op steps
   committed at once; steps per second from the commit until the last step finished,
   and the workers' CPU per step.

Results go to ``benchmarks/results/cluster.json``. The database is dropped and every
worker stopped on any exit (workers also get SIGTERM if the benchmark dies).
Options: ``python benchmarks/cluster.py --help``; ``PLAIT_BENCH_POSTGRES_ADMIN`` is the
server (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ADMIN_URL = os.environ.get(
    "PLAIT_BENCH_POSTGRES_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOOP = "    uses: python\n    with: {function: 'noop:noop'}\n"


def _chain(name: str, steps: int) -> str:
    """A workflow of ``steps`` sequential no-op steps (steps run in order by default)."""
    body = "".join(f"  - id: s{i}\n{NOOP}" for i in range(steps))
    return f"name: {name}\nsteps:\n{body}"


def pct(samples: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of samples in seconds, as ms."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 2)


# -- the database --------------------------------------------------------------------
@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    import sqlalchemy as sa

    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"plait_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()


def _reachable() -> bool:
    import sqlalchemy as sa

    engine = sa.create_engine(ADMIN_URL, poolclass=sa.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _libpq(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def bench_baseline(url: str, n: int = 500) -> dict[str, Any]:
    """Round trip and durable commit of this PostgreSQL, one connection and four."""
    import psycopg

    dsn = _libpq(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_baseline (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO bench_baseline SELECT g, 0 FROM generate_series(0, 7) g")
    with psycopg.connect(dsn) as conn:
        trips = []
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            trips.append(time.perf_counter() - t0)
        conn.commit()
        commits = []
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute("UPDATE bench_baseline SET n = n + 1 WHERE id = 0")
            conn.commit()
            commits.append(time.perf_counter() - t0)

    def writer(i: int, out: list[float]) -> None:
        with psycopg.connect(dsn) as conn:
            t0 = time.perf_counter()
            for _ in range(n // 4):
                conn.execute("UPDATE bench_baseline SET n = n + 1 WHERE id = %s", (i + 1,))
                conn.commit()
            out.append(time.perf_counter() - t0)

    spans: list[float] = []
    threads = [threading.Thread(target=writer, args=(i, spans)) for i in range(4)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "name": "baseline: this PostgreSQL",
        "round_trip_ms_p50": pct(trips, 50),
        "commit_ms_p50": pct(commits, 50),
        "commit_ms_p95": pct(commits, 95),
        "commits_per_second_1_connection": round(n / sum(commits)),
        "commits_per_second_4_connections": round(4 * (n // 4) / wall),
    }


# -- workers ---------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Linux: SIGTERM the worker if the benchmark dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Workers:
    """``count`` worker processes, each in its own process group."""

    def __init__(self, url: str, home: Path, count: int, concurrency: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        env.update(
            PLAIT_HOME=str(home),
            PLAIT_DATABASE_URL=url,
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])),
            PLAIT_DB_POOL_SIZE="4",
            PLAIT_DB_MAX_OVERFLOW="4",
        )
        self.logs = [home.parent / f"worker{i}.log" for i in range(count)]
        self.procs = []
        for log_path in self.logs:
            with log_path.open("ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "plait.cli", "worker", "-c", str(concurrency)],
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=_die_with_parent,
                    )
                )

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def check(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


class Bench:
    """The store, the deployed workflows and the helpers of the measurements."""

    def __init__(self, url: str, home: Path) -> None:
        from plait.server.compose import build_services
        from plait.settings import Settings

        self.url, self.home = url, home
        self.services = build_services(Settings(home=home, database_url=url))
        self.store = self.services.store
        self.versions: dict[str, Any] = {}

    def deploy(self, source: str) -> None:
        from plait.model import load_workflow

        loaded = load_workflow(source, "bench.yaml", self.services.registry.input_models())
        plan = loaded.plan
        version, _ = self.services.server_store.deploy(
            plan.namespace, plan.name, loaded.source, loaded.checksum, "bench"
        )
        self.versions[plan.name] = version

    def create(self, workflow: str, count: int, *, notify: bool = True) -> tuple[list[str], float]:
        """``count`` started runs in one transaction, as ``RunService.start`` writes
        them (its two commits folded into one); returns their ids and when the commit
        returned. Without ``notify``, workers find them only by polling."""
        from plait.engine.machine import RunMachine
        from plait.engine.state import RunState
        from plait.runtime.ids import new_run_id
        from plait.store import codec

        version = self.versions[workflow]
        plan = self.services.runs.plan(version.id)
        now = time.time()
        runs, steps, events = [], [], []
        for _ in range(count):
            run = RunState(
                id=new_run_id(now),
                workflow=plan.name,
                namespace=plan.namespace,
                version_id=version.id,
                trigger={"type": "manual"},
                created_at=now,
            )
            machine = RunMachine(plan, run, [], secrets={})
            transition = machine.start(now)
            run.version = 1
            runs.append(codec.run_row(run, None))
            steps += [codec.step_row(run.id, s, None) for s in machine.steps.values()]
            events += [codec.event_row(e) for e in transition.events]
        store = self.store
        q, hooks = store._q, store._hooks  # the store's own statements, in one transaction
        with hooks.cursor() as cur:
            cur.executemany(q.insert_run.sql, q.insert_run.many(runs))
            cur.executemany(q.insert_steps.sql, q.insert_steps.many(steps))
            cur.executemany(q.insert_events.sql, q.insert_events.many(events))
            if notify:  # what the store sends in a transaction that queues steps
                hooks.notify(cur, "plait_ready", "")
        return [r["id"] for r in runs], time.time()

    def wait_finished(self, ids: list[str], timeout: float, workers: Workers) -> None:
        import sqlalchemy as sa

        deadline = time.monotonic() + timeout
        query = sa.text(
            "SELECT count(*) FROM runs WHERE id = ANY(:ids) "
            "AND status IN ('succeeded', 'failed', 'cancelled', 'timed_out')"
        )
        while True:
            with self.store.engine.connect() as conn:
                done = conn.execute(query, {"ids": ids}).scalar_one()
            if done == len(ids):
                return
            workers.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {len(ids)} runs finished in {timeout} s")
            time.sleep(0.005 if len(ids) == 1 else 0.05)

    def attempt_times(self, ids: list[str]) -> list[tuple[float, float]]:
        import sqlalchemy as sa

        query = sa.text(
            "SELECT started_at, finished_at FROM attempts WHERE run_id = ANY(:ids) "
            "AND status = 'succeeded'"
        )
        with self.store.engine.connect() as conn:
            return [(float(a), float(b)) for a, b in conn.execute(query, {"ids": ids})]

    def failed(self, ids: list[str]) -> int:
        import sqlalchemy as sa

        query = sa.text("SELECT count(*) FROM runs WHERE id = ANY(:ids) AND status <> 'succeeded'")
        with self.store.engine.connect() as conn:
            return int(conn.execute(query, {"ids": ids}).scalar_one())

    def db_cpu_seconds(self) -> float:
        """CPU used so far by this database's server processes (the server is local)."""
        import sqlalchemy as sa

        query = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        with self.store.engine.connect() as conn:
            pids = [int(p) for p in conn.execute(query).scalars()]
        total = 0.0
        for pid in pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def listeners(self) -> int:
        import sqlalchemy as sa

        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'plait-listen%'"
        )
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    @contextlib.contextmanager
    def workers(self, count: int, concurrency: int) -> Iterator[Workers]:
        workers = Workers(self.url, self.home, count, concurrency)
        try:
            deadline = time.monotonic() + 60
            while self.listeners() < count:  # every worker up and listening
                workers.check()
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not come up in 60 s")
                time.sleep(0.1)
            time.sleep(0.5)
            yield workers
        finally:
            workers.stop()


# -- the measurements ------------------------------------------------------------------
def bench_overhead(bench: Bench, base: dict[str, Any], steps: int) -> dict[str, Any]:
    from noop import noop

    t0 = time.perf_counter()
    for _ in range(steps):
        noop()
    direct = time.perf_counter() - t0
    with bench.workers(1, 16) as workers:
        warm, _ = bench.create("bench-chain", 1)  # the worker parses the plan once
        bench.wait_finished(warm, 300, workers)
        cpu0, db0 = workers.cpu_seconds(), bench.db_cpu_seconds()
        ids, _ = bench.create("bench-chain", 1)
        bench.wait_finished(ids, 300, workers)
        cpu, db = workers.cpu_seconds() - cpu0, bench.db_cpu_seconds() - db0
    times = sorted(bench.attempt_times(ids))
    if len(times) != steps or bench.failed(ids):
        raise RuntimeError("the chain did not succeed")
    # from the first step's end to the last's: the steady state, without the claim of
    # the run's first step and the load of the run
    wall = times[-1][1] - times[0][1]
    per_step = (wall - direct) / (steps - 1) * 1000
    return {
        "name": f"per-step overhead, one worker, {steps} sequential no-op steps",
        "ms_per_step": round(per_step, 3),
        "commit_ms_p50": base["commit_ms_p50"],
        "ms_per_step_beyond_one_commit": round(per_step - base["commit_ms_p50"], 3),
        "worker_cpu_ms_per_step": round(cpu / steps * 1000, 3),
        "postgres_cpu_ms_per_step": round(db / steps * 1000, 3),
        "target": "<= 1 ms",
        "ok": per_step <= 1.0,
    }


def bench_latency(bench: Bench, samples: int) -> list[dict[str, Any]]:
    results = []
    with bench.workers(1, 16) as workers:
        for notify in (True, False):
            waits = []
            for _ in range(samples):
                ids, committed = bench.create("bench-one", 1, notify=notify)
                bench.wait_finished(ids, 30, workers)
                started = min(a for a, _ in bench.attempt_times(ids))
                waits.append(max(0.0, started - committed))
                time.sleep(random.uniform(0.0, 0.5))  # not in step with the worker's poll
            how = "NOTIFY" if notify else "polling only (every 0.5 s)"
            results.append(
                {
                    "name": f"claim-to-start latency, idle worker, {how}",
                    "samples": samples,
                    "p50_ms": pct(waits, 50),
                    "p95_ms": pct(waits, 95),
                    "mean_ms": round(statistics.fmean(waits) * 1000, 2),
                    "target": "(comparison)" if not notify else "p50 <= 20 ms",
                    "ok": True if not notify else pct(waits, 50) <= 20,
                }
            )
    return results


def bench_throughput(bench: Bench, count: int, runs: int, concurrency: int) -> dict[str, Any]:
    with bench.workers(count, concurrency) as workers:
        cpu0, db0 = workers.cpu_seconds(), bench.db_cpu_seconds()
        ids, committed = bench.create("bench-work", runs)
        bench.wait_finished(ids, 600, workers)
        cpu, db = workers.cpu_seconds() - cpu0, bench.db_cpu_seconds() - db0
    times = bench.attempt_times(ids)
    steps = len(times)
    if bench.failed(ids):
        raise RuntimeError(f"{bench.failed(ids)} runs did not succeed")
    wall = max(b for _, b in times) - committed
    return {
        "name": f"throughput, {count} worker process{'es' if count > 1 else ''}",
        "workers": count,
        "steps": steps,
        "seconds": round(wall, 3),
        "steps_per_second": round(steps / wall),
        "worker_cpu_ms_per_step": round(cpu / steps * 1000, 3),
        "postgres_cpu_ms_per_step": round(db / steps * 1000, 3),
    }


def _print(r: dict[str, Any]) -> None:
    mark = "    " if "ok" not in r else ("ok  " if r["ok"] else "MISS")
    fields = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("name", "ok"))
    print(f"[{mark}] {r['name']}: {fields}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chain", type=int, default=500, help="steps of the overhead run")
    ap.add_argument("--samples", type=int, default=40, help="latency samples, each way")
    ap.add_argument("--runs", type=int, default=200, help="runs of the throughput phase")
    ap.add_argument("--steps", type=int, default=5, help="steps per throughput run")
    ap.add_argument("--concurrency", type=int, default=16, help="per worker process")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.path.insert(0, str(HERE))
    results: list[dict[str, Any]] = []
    if not _reachable():
        print(f"skipped: PostgreSQL unreachable at {ADMIN_URL} (PLAIT_BENCH_POSTGRES_ADMIN)")
        return 0
    with fresh_database() as url, tempfile.TemporaryDirectory(prefix="plait-bench-") as tmp:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"PostgreSQL at {ADMIN_URL.rsplit('@', 1)[-1]}; {os.cpu_count()} CPUs; load {load}")
        bench = Bench(url, Path(tmp) / "home")
        try:
            bench.deploy(_chain("bench-chain", args.chain))
            bench.deploy(_chain("bench-one", 1))
            bench.deploy(_chain("bench-work", args.steps))
            base = bench_baseline(url)
            results.append(base)
            _print(base)
            results.append(bench_overhead(bench, base, args.chain))
            _print(results[-1])
            for found in bench_latency(bench, args.samples):
                results.append(found)
                _print(found)
            single = None
            for count in args.workers:
                found = bench_throughput(bench, count, args.runs, args.concurrency)
                single = single or found["steps_per_second"]
                found["vs_one_worker"] = round(found["steps_per_second"] / single, 2)
                results.append(found)
                _print(found)
        finally:
            bench.store.close()
    out = HERE / "results" / "cluster.json"
    out.parent.mkdir(exist_ok=True)
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    out.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
