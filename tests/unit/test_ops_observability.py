"""Pieces of observability without I/O: JSON log lines and their context, the metrics
tail's gap bookkeeping and histograms, trace ids from run ids, the CLI's global options."""

from __future__ import annotations

import io
import json
import logging

from prometheus_client.core import Metric

from plait.ops import logging as logctx
from plait.ops import metrics, tracing


def _record(message: str, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("plait.test.json")
    return logger.makeRecord(
        "plait.test.json", logging.ERROR, "f.py", 1, message, (), None, extra=extra
    )


def test_a_json_line_has_the_fields_that_are_known() -> None:
    formatter = logctx.JsonFormatter()
    plain = json.loads(formatter.format(_record("plain")))
    assert set(plain) == {"time", "level", "logger", "message"}
    assert plain["level"] == "error"
    assert plain["logger"] == "plait.test.json"
    token = logctx.bind(run_id="r1", step="build", attempt=2, request_id=None)
    try:
        inner = logctx.bind(request_id="q1")
        line = json.loads(formatter.format(_record("with context", step="override")))
        logctx.reset(inner)
        assert "request_id" not in logctx.current()
    finally:
        logctx.reset(token)
    assert line["run_id"] == "r1"
    assert line["attempt"] == 2
    assert line["request_id"] == "q1"
    assert line["step"] == "override"  # extra= wins over the context
    assert logctx.current() == {}


def test_exceptions_and_odd_values_stay_one_json_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, "f.py", 1, "failed: %s", (object(),), __import__("sys").exc_info()
        )
    text = logctx.JsonFormatter().format(record)
    assert "\n" not in text
    parsed = json.loads(text)
    assert "ValueError: bad" in parsed["exception"]
    assert parsed["message"].startswith("failed: <object object")


def test_configure_replaces_its_own_handler() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        logctx.configure(logging.INFO, "json", first)
        logctx.configure(logging.INFO, "json", second)
        logging.getLogger("plait.test.cfg").info("hello")
        assert first.getvalue() == ""
        assert json.loads(second.getvalue())["message"] == "hello"
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
        root.setLevel(level)


def test_the_metrics_tail_waits_for_ids_committed_late() -> None:
    cursor = metrics._Cursor(10)
    cursor.take([11, 14, 15], now=100.0)
    assert cursor.high == 15
    assert set(cursor.gaps) == {12, 13}
    cursor.take([13], now=101.0)  # committed late: read, no longer awaited
    assert set(cursor.gaps) == {12}
    cursor.expire(100.0 + metrics.GAP_WAIT + 1)  # a rolled-back insert: given up
    assert cursor.gaps == {}
    cursor.take([10**9], now=200.0)  # a jump: only a bounded number of gaps is kept
    assert len(cursor.gaps) <= metrics.MAX_GAPS


def test_histograms_are_cumulative() -> None:
    hist = metrics._Histogram((1.0, 5.0))
    for value in (0.5, 3.0, 3.0, 100.0):
        hist.observe(("wf",), value)
    family: Metric = hist.family("plait_x_seconds", "x", ["workflow"])
    got = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert got[("plait_x_seconds_bucket", "1.0")] == 1
    assert got[("plait_x_seconds_bucket", "5.0")] == 3
    assert got[("plait_x_seconds_bucket", "+Inf")] == 4
    assert got[("plait_x_seconds_count", None)] == 4
    assert got[("plait_x_seconds_sum", None)] == 106.5


def test_trace_ids_come_from_run_ids() -> None:
    run_id = "01a1b2c3-d4e5-7f00-8123-456789abcdef"
    assert tracing.trace_hex(run_id) == "01a1b2c3d4e57f008123456789abcdef"
    assert tracing.trace_id_of("not-a-uuid") == tracing.trace_id_of("not-a-uuid") != 0
    assert tracing.run_span_id(run_id) == tracing.run_span_id(run_id) != 0
    assert tracing.run_span_id(run_id) != tracing.run_span_id("other")


def test_global_options_with_values_are_not_commands() -> None:
    from plait.cli import _command_of

    assert _command_of(["--log-format", "json", "run", "x.yaml"]) == "run"
    assert _command_of(["--log-level", "debug", "--log-format", "json", "logs"]) == "logs"
    assert _command_of(["--log-format=json", "validate"]) == "validate"
