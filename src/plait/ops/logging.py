"""Process logs: plain text or one JSON object per line, with the run, step, request
and trace they concern.

Context comes from a :class:`~contextvars.ContextVar`, so it follows the code that
runs for a run or a request without being passed down: the runner binds ``run_id``,
``step``, ``attempt`` and ``trace_id`` around each step attempt (asyncio gives every
attempt its own task, so their contexts never mix), and the server's request middleware
binds ``request_id`` (and ``trace_id`` when tracing is on). Thread-pool hops keep it:
Starlette's ``run_in_threadpool`` copies the context into the worker thread.

Handlers are configured only by entry points (:func:`configure`, called by the CLI's
``--log-level`` and ``--log-format``); library code logs with
``logging.getLogger(__name__)`` as everywhere.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any, TextIO

FORMATS = ("text", "json")
#: the context fields, in the order a JSON line shows them
FIELDS = ("run_id", "workflow", "step", "attempt", "request_id", "trace_id", "span_id")
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"

_EMPTY: Mapping[str, Any] = {}
_context: ContextVar[Mapping[str, Any]] = ContextVar("plait_log_context", default=_EMPTY)


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add ``fields`` (None values are left out) to the log context of the running code;
    undo with :func:`reset`. Returns the token :func:`reset` needs."""
    merged = dict(_context.get())
    merged.update((k, v) for k, v in fields.items() if v is not None)
    return _context.set(merged)


def reset(token: Token[Mapping[str, Any]]) -> None:
    _context.reset(token)


def current() -> Mapping[str, Any]:
    """The log context of the running code (read-only)."""
    return _context.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (ISO 8601, UTC, milliseconds), ``level``,
    ``logger``, ``message``, the context fields that are known, fields given with
    ``extra={...}`` under the same names, and ``exception`` with the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _context.get()
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = context.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _iso(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def configure(level: int, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr) in
    ``fmt`` (``text`` or ``json``), replacing handlers an earlier call installed."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_plait", False):
            root.removeHandler(old)
    handler._plait = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


__all__ = ["FIELDS", "FORMATS", "JsonFormatter", "bind", "configure", "current", "reset"]
