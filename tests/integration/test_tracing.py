"""OpenTelemetry traces of real runs (SQLite store, a shell step, an http step against a
local HTTP server), read back from the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from plait.local import LocalSession
from plait.model import load_workflow
from plait.ops import logging as logctx
from plait.ops import tracing
from plait.settings import Settings


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        _Handler.seen.append(dict(self.headers.items()))
        status = 503 if self.path.startswith("/down") else 200
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def web() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    traced = tracing.Tracing(exporter, batch=False)
    tracing.set_current(traced)
    try:
        yield exporter
    finally:
        tracing.set_current(None)
        traced.shutdown()


def _settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    return Settings(home=home, database_url=f"sqlite:///{home}/plait.db")


async def _run(tmp_path: Path, source: str) -> tuple[str, str]:
    session = LocalSession(_settings(tmp_path))
    plan = load_workflow(source, "wf.yaml", session.registry.input_models()).plan
    try:
        result = await session.run(plan, source, {}, workdir=tmp_path)
    finally:
        await session.close()
    return result.run_id, result.status


def _by_name(found: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in found:
        out.setdefault(span.name, []).append(span)
    return out


async def test_a_run_is_one_trace_of_attempt_spans_with_http_children(
    tmp_path: Path, web: str, spans: InMemorySpanExporter
) -> None:
    source = f"""
name: traced
steps:
  - id: build
    run: echo building
  - id: check
    uses: http
    with: {{url: "{web}/health"}}
  - id: flaky
    uses: http
    with: {{url: "{web}/down"}}
    retries: {{max: 1, backoff: constant, initial: 10ms}}
    on_error: continue
"""
    run_id, status = await _run(tmp_path, source)
    assert status == "succeeded"
    found = spans.get_finished_spans()
    names = _by_name(found)
    trace_id = tracing.trace_id_of(run_id)
    assert f"{trace_id:032x}" == run_id.replace("-", "")  # the trace id is the run id
    assert {s.context.trace_id for s in found} == {trace_id}

    (run,) = names["run traced"]
    assert run.context.span_id == tracing.run_span_id(run_id)
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["plait.status"] == "succeeded"
    assert run.status.status_code is StatusCode.OK

    (build,) = names["step build"]
    (check,) = names["step check"]
    flaky = sorted(names["step flaky"], key=lambda s: s.attributes["plait.attempt"])  # type: ignore[index]
    for step in (build, check, *flaky):
        assert step.parent is not None
        assert step.parent.span_id == run.context.span_id
        assert step.attributes is not None
        assert step.attributes["plait.run_id"] == run_id
        assert step.attributes["plait.workflow"] == "traced"
    assert build.attributes is not None
    assert build.attributes["plait.action"] == "shell"
    assert build.attributes["plait.status"] == "succeeded"
    assert check.attributes is not None
    assert check.attributes["plait.action"] == "http"
    assert [s.attributes["plait.attempt"] for s in flaky] == [1, 2]  # type: ignore[index]
    assert {s.attributes["plait.status"] for s in flaky} == {"failed"}  # type: ignore[index]
    assert all(s.status.status_code is StatusCode.ERROR for s in flaky)
    assert "503" in (flaky[0].status.description or "")

    requests = names["GET"]
    assert len(requests) == 3  # check once, flaky twice
    parents = {r.parent.span_id for r in requests if r.parent is not None}
    assert parents == {check.context.span_id, *(s.context.span_id for s in flaky)}
    assert all(r.kind is SpanKind.CLIENT for r in requests)
    codes = sorted(r.attributes["http.response.status_code"] for r in requests)  # type: ignore[index]
    assert codes == [200, 503, 503]
    # the request carried the trace on to the server it called
    assert all(f"-{trace_id:032x}-" in h["traceparent"] for h in _Handler.seen)
    # every span lies inside the run's time
    for span in found:
        assert run.start_time is not None
        assert span.start_time is not None
        assert run.start_time <= span.start_time


async def test_a_resumed_run_continues_the_same_trace(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """Two processes, one trace: the first is killed in the middle of a step, `plait
    resume` finishes the run; the resumed attempt's span joins the run's trace."""
    flag = tmp_path / "second-time"
    source = f"""
name: resumable
steps:
  - id: first
    run: echo one
  - id: second
    run: |
      if [ -e {flag} ]; then echo done; else touch {flag}; kill -9 $PPID; sleep 5; fi
"""
    wf = tmp_path / "wf.yaml"
    wf.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIT_", "OTEL_"))}
    env["PLAIT_HOME"] = str(tmp_path / "home")
    run = [sys.executable, "-m", "plait.cli", "run", str(wf), "-q"]
    killed = await asyncio.to_thread(
        subprocess.run,
        [*run, "--results-dir", str(tmp_path / "res")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode != 0
    run_id = killed.stdout.split()[1]
    session = LocalSession(_settings(tmp_path))
    try:
        result = await session.resume(run_id, workdir=tmp_path, force=True)
    finally:
        await session.close()
    assert result.status == "succeeded"
    names = _by_name(spans.get_finished_spans())
    (second,) = names["step second"]
    assert second.context.trace_id == tracing.trace_id_of(run_id)
    assert second.parent is not None
    assert second.parent.span_id == tracing.run_span_id(run_id)
    assert second.attributes is not None
    assert second.attributes["plait.attempt"] == 2
    (run_span,) = names["run resumable"]
    assert run_span.context.trace_id == tracing.trace_id_of(run_id)


async def test_attempt_logs_carry_the_run_step_and_trace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With tracing off too: a record logged inside an attempt names its run, step and
    the trace id derived from the run."""
    source = """
name: logged
steps:
  - id: talk
    uses: python
    with: {function: "tests.integration.test_tracing:talk"}
"""
    formatter = logctx.JsonFormatter()
    lines: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(formatter.format(record)))

    keep = Keep()
    logging.getLogger("plait.test.talk").addHandler(keep)
    try:
        run_id, status = await _run(tmp_path, source)
    finally:
        logging.getLogger("plait.test.talk").removeHandler(keep)
    assert status == "succeeded"
    (line,) = lines
    assert line["message"] == "hello from a step"
    assert line["run_id"] == run_id
    assert line["step"] == "talk"
    assert line["attempt"] == 1
    assert line["workflow"] == "logged"
    assert line["trace_id"] == tracing.trace_hex(run_id)
    assert "span_id" not in line  # tracing is off: no span


def talk() -> dict[str, str]:
    logging.getLogger("plait.test.talk").warning("hello from a step")
    return {}


def test_without_an_endpoint_nothing_imports_opentelemetry(tmp_path: Path) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text("name: one\nsteps:\n  - id: a\n    run: 'true'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIT_", "OTEL_"))}
    env["PLAIT_HOME"] = str(tmp_path / "home")
    probe = (
        "import sys, atexit\n"
        "atexit.register(lambda: print('otel' if any(m.startswith('opentelemetry') "
        "for m in sys.modules) else 'none', file=sys.stderr))\n"
        "from plait.cli import main\n"
        "sys.argv = ['plait', 'run', sys.argv[1], '--quiet', '--results-dir', sys.argv[2]]\n"
        "main()\n"
    )
    argv = [sys.executable, "-c", probe, str(wf), str(tmp_path / "res")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert done.stderr.strip().splitlines()[-1] == "none"
    assert not tracing.configured(env)
    assert tracing.configured({**env, "PLAIT_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not tracing.configured(
        {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}
    )


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps the spans of every export request."""

    spans: list[Any] = []  # what arrived, read by the test

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                _Collector.spans.extend(scope.spans)
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()


async def test_plait_run_exports_over_otlp_when_an_endpoint_is_set(tmp_path: Path) -> None:
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    _Collector.spans = []
    wf = tmp_path / "one.yaml"
    wf.write_text("name: one\nsteps:\n  - id: a\n    run: echo hi\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIT_", "OTEL_"))}
    env["PLAIT_HOME"] = str(tmp_path / "home")
    env["PLAIT_OTLP_ENDPOINT"] = f"http://127.0.0.1:{collector.server_address[1]}"
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "plait.cli",
                "run",
                str(wf),
                "-q",
                "--results-dir",
                str(tmp_path),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        collector.shutdown()
        collector.server_close()
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[1]
    names = sorted(s.name for s in _Collector.spans)
    assert names == ["run one", "step a"]
    assert {s.trace_id.hex() for s in _Collector.spans} == {run_id.replace("-", "")}
