"""Plait server benchmarks (``make bench``), against a real ``plait serve`` process.

A fresh ``PLAIT_HOME`` in a temporary directory, ``python -m plait.cli serve`` on a free
port of 127.0.0.1 (API, scheduler and worker in one process on SQLite, as a user runs
it), the first admin from ``PLAIT_ADMIN_USER``/``PLAIT_ADMIN_PASSWORD``. Then:

1. **reads** — 50 concurrent keep-alive clients ``GET /api/v1/runs/{id}`` (a finished
   one-step run) for a fixed time after a warm-up: reads/s and p50/p95/p99 latency
   (targets ≥ 1,000 reads/s, p95 ≤ 50 ms). Baseline: the same clients on ``GET /health``
   (no authentication, no store) — the floor of this server and this load generator.
2. **starts** — 50 concurrent clients ``POST /api/v1/workflows/{name}/runs`` for a
   bounded count: starts/s and p50/p95 (the worker runs the started runs meanwhile, as
   it would in production); then the time until every started run has finished.
3. **webhook → first step started** — signed ``POST /api/v1/hooks/{name}`` sent one at
   a time to an idle server; latency = the first step's ``started_at`` (the engine's
   record) minus the client's send time; also the time the step's own function ran
   (``time.time()`` returned as its output). Target p50 ≤ 20 ms. Baseline: a sequential
   ``GET /health`` round trip.

The load generator is one asyncio process with a minimal keep-alive HTTP/1.1 client
(``--client httpx`` uses httpx instead, which costs several times the server's own CPU
per ``/health`` call). It shares the machine's cores with the server; ``--pin`` puts the
server on CPU 0 and the load generator on the others. Each load figure comes with the
CPU time the server and the load generator spent per request in the measured window
(``/proc/PID/stat``), which a busy machine disturbs far less than throughput. Every
figure is printed with its target, baseline and ratio; results go to
``benchmarks/results/server.json``. Only 127.0.0.1; every phase is bounded in count and
time; the server and the temporary directory are removed even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ADMIN, PASSWORD = "loadtest", "correct-horse-battery-staple-7"
HOOK_SECRET = "bench-webhook-secret"

# time:time is a builtin: the step costs nothing, and its output is when it ran.
STEP = "  - id: first\n    uses: python\n    with: {function: 'time:time'}\n"
READ_WF = f"name: bench-read\nsteps:\n{STEP}"
START_WF = f"name: bench-start\nsteps:\n{STEP}"
HOOK_WF = (
    "name: bench-hook\ntriggers:\n"
    f"  - webhook: {{secret: '{HOOK_SECRET}'}}\nsteps:\n{STEP}"
    "  - id: second\n    needs: [first]\n    uses: python\n    with: {function: 'time:time'}\n"
)


# -- the server process ---------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: SIGTERM the server if the benchmark dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Server:
    """``plait serve`` in its own process group; ``stop()`` always leaves nothing behind."""

    def __init__(self, tmp: Path, *, pin: bool) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "server.log"
        env = {
            **os.environ,
            "PLAIT_HOME": str(tmp / "home"),
            "PLAIT_ADMIN_USER": ADMIN,
            "PLAIT_ADMIN_PASSWORD": PASSWORD,
        }
        env.pop("PLAIT_DATABASE_URL", None)
        argv = [sys.executable, "-m", "plait.cli", "serve", "--port", str(self.port)]

        def prepare_child() -> None:  # in the child, before exec
            _die_with_parent()
            if pin:  # every thread the server starts inherits it
                os.sched_setaffinity(0, {0})

        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: steps' processes go with it
            preexec_fn=prepare_child,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"server not up after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)  # serve() stops its parts in order
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # and anything left in its group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


# -- measuring ------------------------------------------------------------------------------
def pct(samples: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of samples, in ms (samples are seconds)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 2)


def cpu_seconds(server_pid: int) -> tuple[float, float]:
    """CPU time (user + system, every thread) used so far by the server and by us."""
    fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
    server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    me = os.times()
    return server, me.user + me.system


class Response:
    """What the load phases need of an answer."""

    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)


class RawConnection:
    """One keep-alive HTTP/1.1 connection over asyncio streams: the cheapest client we
    can write, so that the load generator takes as little CPU from the server as
    possible (httpx spends several times the server's own CPU on a ``/health`` call)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> Response:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.fixed}"
        if body or method == "POST":
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
                elif name == "transfer-encoding":
                    raise OSError("chunked answers are not expected here")
            content = await reader.readexactly(length)
        except BaseException:
            await self.close()
            raise
        if close:
            await self.close()
        return Response(status, content)

    async def close(self) -> None:
        if self.streams is not None:
            writer = self.streams[1]
            self.streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class HttpxConnection:
    """The same over ``httpx.AsyncClient`` (``--client httpx``), for comparison."""

    def __init__(self, url: str, headers: dict[str, str], tls: ssl.SSLContext) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        # plain HTTP; one shared context instead of loading certifi for each client
        self.client = httpx.AsyncClient(
            base_url=url, headers=headers, timeout=30, limits=limits, verify=tls
        )

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> Response:
        headers = {"Content-Type": content_type} if body or method == "POST" else None
        r = await self.client.request(method, path, content=body, headers=headers)
        return Response(r.status_code, r.content)

    async def close(self) -> None:
        await self.client.aclose()


Connection = RawConnection | HttpxConnection
LOAD_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, httpx.HTTPError)


class CpuWindow:
    """CPU used by the server and by this process between ``begin()`` and ``end()``."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.first = self.last = (0.0, 0.0)

    def begin(self) -> None:
        self.first = cpu_seconds(self.pid)

    def end(self) -> None:
        self.last = cpu_seconds(self.pid)

    def per_request(self, n: int) -> dict[str, float]:
        n = max(1, n)
        return {
            "server_cpu_ms_per_request": round((self.last[0] - self.first[0]) / n * 1000, 3),
            "client_cpu_ms_per_request": round((self.last[1] - self.first[1]) / n * 1000, 3),
        }


async def closed_loop(
    connect: Callable[[], Connection],
    call: Callable[[Connection], Awaitable[Response]],
    *,
    server_pid: int,
    clients: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    """``clients`` tasks, each with its own keep-alive connection, calling back to back;
    only calls that start after the warm-up and end before the deadline are counted."""
    pool = [connect() for _ in range(clients)]  # before the clock starts
    start = time.perf_counter()
    measure_from = start + warmup
    deadline = measure_from + duration
    latencies: list[float] = []
    errors: dict[str, int] = {}
    cpu = CpuWindow(server_pid)

    async def one(conn: Connection) -> None:
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= deadline:
                    return
                try:
                    r = await call(conn)
                    bad = None if r.status_code < 400 else str(r.status_code)
                except LOAD_ERRORS as exc:
                    bad = type(exc).__name__
                t1 = time.perf_counter()
                if bad is not None:
                    errors[bad] = errors.get(bad, 0) + 1
                elif t0 >= measure_from and t1 <= deadline:
                    latencies.append(t1 - t0)
        finally:
            await conn.close()

    async def window() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu.begin()
        await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
        cpu.end()

    await asyncio.gather(window(), *(one(c) for c in pool))
    return {
        "per_second": round(len(latencies) / duration),
        "requests": len(latencies),
        "p50_ms": pct(latencies, 50),
        "p95_ms": pct(latencies, 95),
        "p99_ms": pct(latencies, 99),
        **cpu.per_request(len(latencies)),
        "errors": errors,
    }


async def bounded(
    connect: Callable[[], Connection],
    call: Callable[[Connection], Awaitable[Response]],
    *,
    server_pid: int,
    clients: int,
    count: int,
    limit_s: float,
) -> tuple[dict[str, Any], list[str]]:
    """``count`` calls shared by ``clients`` tasks; returns figures and the ids answered."""
    latencies: list[float] = []
    ids: list[str] = []
    errors: dict[str, int] = {}
    counter = iter(range(count))
    pool = [connect() for _ in range(clients)]  # before the clock starts
    cpu = CpuWindow(server_pid)

    async def one(conn: Connection) -> None:
        try:
            for _ in counter:
                t0 = time.perf_counter()
                try:
                    r = await call(conn)
                    bad = None if r.status_code < 400 else f"{r.status_code} {r.content[:200]!r}"
                except LOAD_ERRORS as exc:
                    bad = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if bad is not None:
                    errors[bad] = errors.get(bad, 0) + 1
                else:
                    ids.append(r.json()["id"])
        finally:
            await conn.close()

    cpu.begin()
    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(c) for c in pool)), limit_s)
    took = time.perf_counter() - t0
    cpu.end()
    return {
        "per_second": round(count / took),
        "requests": count,
        "seconds": round(took, 3),
        "p50_ms": pct(latencies, 50),
        "p95_ms": pct(latencies, 95),
        "p99_ms": pct(latencies, 99),
        **cpu.per_request(count),
        "errors": errors,
    }, ids


def _stamp(iso: str | None) -> float | None:
    return None if iso is None else dt.datetime.fromisoformat(iso).timestamp()


# -- the benchmarks -------------------------------------------------------------------------
class Bench:
    def __init__(self, url: str, pid: int, token: str, args: argparse.Namespace) -> None:
        self.url = url
        self.pid = pid
        self.auth = {"Authorization": f"Bearer {token}"}
        self.args = args
        self.tls = ssl.create_default_context()

    def connect(self, *, auth: bool = True) -> Connection:
        headers = self.auth if auth else {}
        if self.args.client == "httpx":
            return HttpxConnection(self.url, headers, self.tls)
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return RawConnection(host, int(port), headers)

    def sync(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.auth, timeout=30)

    def deploy(self, source: str) -> None:
        with self.sync() as c:
            r = c.post(
                "/api/v1/workflows", content=source, headers={"Content-Type": "application/yaml"}
            )
            if r.status_code >= 300:
                raise RuntimeError(f"deploy failed: {r.status_code} {r.text}")

    def wait_finished(self, run_ids: list[str], timeout: float) -> float:
        """Seconds until every run has finished (polling each pending run in turn)."""
        t0 = time.perf_counter()
        pending = set(run_ids)
        with self.sync() as c:
            while pending:
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"{len(pending)} runs not finished after {timeout} s")
                for rid in list(pending)[:200]:
                    r = c.get(f"/api/v1/runs/{rid}")
                    r.raise_for_status()
                    if r.json()["finished_at"] is not None:
                        pending.discard(rid)
                    else:
                        break
                if pending:
                    time.sleep(0.1)
        return time.perf_counter() - t0

    def health_floor(self) -> dict[str, Any]:
        a = self.args

        async def call(c: Connection) -> Response:
            return await c.request("GET", "/health")

        return asyncio.run(
            closed_loop(
                lambda: self.connect(auth=False),
                call,
                server_pid=self.pid,
                clients=a.clients,
                warmup=a.warmup,
                duration=a.duration,
            )
        )

    def reads(self, base: dict[str, Any]) -> dict[str, Any]:
        a = self.args
        self.deploy(READ_WF)
        with self.sync() as c:
            r = c.post("/api/v1/workflows/bench-read/runs", json={"inputs": {}})
            r.raise_for_status()
            run_id = r.json()["id"]
        self.wait_finished([run_id], 30)
        path = f"/api/v1/runs/{run_id}"

        async def call(c: Connection) -> Response:
            return await c.request("GET", path)

        got = asyncio.run(
            closed_loop(
                self.connect,
                call,
                server_pid=self.pid,
                clients=a.clients,
                warmup=a.warmup,
                duration=a.duration,
            )
        )
        ok = got["per_second"] >= 1000 and got["p95_ms"] <= 50 and not got["errors"]
        return {
            "name": f"run-status reads, {a.clients} clients, {a.duration:g} s",
            **got,
            "baseline_health_per_second": base["per_second"],
            "baseline_health_p95_ms": base["p95_ms"],
            "ratio_to_baseline": round(got["per_second"] / base["per_second"], 3),
            "target": ">= 1000/s, p95 <= 50 ms",
            "ok": ok,
        }

    def starts(self, base: dict[str, Any]) -> dict[str, Any]:
        a = self.args
        self.deploy(START_WF)

        async def call(c: Connection) -> Response:
            return await c.request("POST", "/api/v1/workflows/bench-start/runs", b'{"inputs":{}}')

        got, ids = asyncio.run(
            bounded(
                self.connect,
                call,
                server_pid=self.pid,
                clients=a.clients,
                count=a.starts,
                limit_s=a.phase_timeout,
            )
        )
        drain = self.wait_finished(ids, a.phase_timeout)
        return {
            "name": f"run starts, {a.clients} clients, {a.starts} runs",
            **got,
            "all_finished_after_s": round(got["seconds"] + drain, 3),
            "baseline_health_per_second": base["per_second"],
            "ratio_to_baseline": round(got["per_second"] / base["per_second"], 3),
            "p95_within_50ms": got["p95_ms"] <= 50,
            "target": "none stated (issue 3's p95 <= 50 ms is for reads; shown for comparison)",
            "ok": not got["errors"],
        }

    def webhook(self) -> dict[str, Any]:
        a = self.args
        self.deploy(HOOK_WF)
        rtt: list[float] = []
        accept: list[float] = []
        to_started: list[float] = []
        to_function: list[float] = []
        with self.sync() as c, httpx.Client(base_url=self.url, timeout=30) as anon:
            for _ in range(20):  # sequential round-trip floor, same connection reuse
                t0 = time.perf_counter()
                anon.get("/health").raise_for_status()
                rtt.append(time.perf_counter() - t0)
            for i in range(a.hooks + 3):  # the first 3 warm caches and are not counted
                body = json.dumps({"delivery": i, "ref": "refs/heads/main"}).encode()
                sig = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
                headers = {"Content-Type": "application/json", "X-Plait-Signature": sig}
                p0 = time.perf_counter()
                sent = time.time()
                r = anon.post("/api/v1/hooks/bench-hook", content=body, headers=headers)
                took = time.perf_counter() - p0
                if r.status_code != 202:
                    raise RuntimeError(f"webhook refused: {r.status_code} {r.text}")
                run_id = r.json()["run_id"]
                deadline = time.monotonic() + 30
                while True:  # an idle server for each delivery: wait for the run to end
                    time.sleep(0.02)
                    run = c.get(f"/api/v1/runs/{run_id}").json()
                    if run["finished_at"] is not None or time.monotonic() > deadline:
                        break
                first = next(s for s in run["steps"] if s["id"] == "first")
                if i < 3:
                    continue
                accept.append(took)
                started = _stamp(first["started_at"])
                if started is not None:
                    to_started.append(started - sent)
                ran = (first.get("outputs") or {}).get("result")
                if isinstance(ran, float):
                    to_function.append(ran - sent)
        if len(to_started) < a.hooks:
            raise RuntimeError(f"only {len(to_started)} of {a.hooks} webhook runs started a step")
        p50 = pct(to_started, 50)
        base = pct(rtt, 50)
        return {
            "name": f"webhook to first step started, {a.hooks} sequential",
            "p50_ms": p50,
            "p95_ms": pct(to_started, 95),
            "max_ms": pct(to_started, 100),
            "step_function_ran_p50_ms": pct(to_function, 50),
            "webhook_202_p50_ms": pct(accept, 50),
            "baseline_health_rtt_p50_ms": base,
            "ratio_to_baseline": round(p50 / base, 1) if base else None,
            "target": "p50 <= 20 ms",
            "ok": p50 <= 20,
        }


def login(url: str) -> str:
    r = httpx.post(
        f"{url}/api/v1/auth/token", data={"username": ADMIN, "password": PASSWORD}, timeout=30
    )
    if r.status_code != 200:
        raise RuntimeError(f"login failed: {r.status_code} {r.text}")
    return str(r.json()["access_token"])


@contextlib.contextmanager
def running_server(pin: bool) -> Iterator[Server]:
    tmp = Path(tempfile.mkdtemp(prefix="plait-bench-server-"))
    server = None
    try:
        server = Server(tmp, pin=pin)
        server.wait_ready()
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _print(r: dict[str, Any]) -> None:
    mark = "ok " if r["ok"] else "MISS"
    fields = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("name", "ok"))
    print(f"[{mark}] {r['name']}: {fields}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--starts", type=int, default=1000)
    ap.add_argument("--hooks", type=int, default=50)
    ap.add_argument("--phase-timeout", type=float, default=180.0)
    ap.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="server on CPU 0, load generator on the other CPUs",
    )
    ap.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: a minimal asyncio HTTP/1.1 client (default) or httpx",
    )
    ap.add_argument("--only", choices=["reads", "starts", "webhook"], action="append")
    ap.add_argument(
        "--hold",
        type=float,
        default=0,
        help="before measuring, print the server's pid and wait this many seconds "
        "(to attach a profiler such as py-spy)",
    )
    args = ap.parse_args(argv)
    only = set(args.only or ["reads", "starts", "webhook"])
    # SIGTERM (e.g. from make being stopped) unwinds through the cleanup too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus[1:]))
    results: list[dict[str, Any]] = []
    with running_server(args.pin and len(cpus) > 1) as server:
        print(
            f"plait serve pid {server.proc.pid} on {server.url}; {len(cpus)} CPUs shared with "
            f"the load generator{' (pinned: server CPU 0)' if args.pin else ''}",
            flush=True,
        )
        try:
            token = login(server.url)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nserver log:\n{server.log()}") from None
        bench = Bench(server.url, server.proc.pid, token, args)
        if args.hold:
            time.sleep(args.hold)
        base = bench.health_floor()
        results.append(
            {
                "name": f"baseline: GET /health, {args.clients} clients, {args.duration:g} s",
                **base,
                "target": "(baseline)",
                "ok": not base["errors"],
            }
        )
        _print(results[-1])
        phases: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("reads", lambda: bench.reads(base)),
            ("starts", lambda: bench.starts(base)),
            ("webhook", bench.webhook),
        ]
        for name, phase in phases:
            if name in only:
                results.append(phase())
                _print(results[-1])
    out = HERE / "results" / "server.json"
    out.parent.mkdir(exist_ok=True)
    meta = {"cpus": len(cpus), "pinned": args.pin, "clients": args.clients}
    out.write_text(
        json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **meta, "results": results}, indent=2)
        + "\n"
    )
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
