"""What every peer module shares: the workloads' sizes, their step functions and the
protocol by which a measurement reports back to the driver.

This file is imported both by the driver (Plait's venv) and by each peer module running
in its own isolated venv, so it uses the standard library only.

A measurement is one process: ``VENV/bin/python benchmarks/peers/<tool>.py --workload N
--size S --variant V --work DIR [...]``. It sets up what it needs (imports, database,
definitions) untimed, times the workload itself and prints one line
``PEERS-RESULT {json}`` with at least ``answer_s`` (the caller got its answer) and,
where it differs, ``durable_s`` (the result is recorded in the tool's store). Workload 1
is timed from outside by the driver (the whole process, start-up to exit).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

MARK = "PEERS-RESULT "

# workload number -> (short name, full size, --quick size)
WORKLOADS: dict[int, tuple[str, int, int]] = {
    1: ("one-step workflow, whole process", 1, 1),
    2: ("sequential no-op steps, durable", 1000, 100),
    3: ("parallel no-op steps", 1000, 100),
    4: ("runs started at once, 5 steps each", 200, 20),
    5: ("shell steps (floor: bare subprocess loop)", 200, 20),
    6: ("fan-out, max_parallel 50", 10_000, 500),
    7: ("sequential fib(10) steps", 40, 40),
    8: ("commit rate of the store (the floor)", 1000, 200),
}
STEPS_PER_RUN = 4 + 1  # workload 4: five steps in each run
MAX_PARALLEL = 50  # workloads 3 and 6: one bound for every tool


def noop() -> None:
    """The no-op step: what is measured is everything around it."""


def fib(n: int) -> int:
    """Workload 7's light step (the published comparison's ``fib(10)``)."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


SHELL_ARGV = ["/bin/sh", "-c", "true"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments every peer module takes from the driver."""
    ap = argparse.ArgumentParser(description="one measurement of one peer (run by run.py)")
    ap.add_argument("--workload", type=int, required=True, choices=sorted(WORKLOADS))
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--variant", default="")
    ap.add_argument("--work", required=True, help="a fresh directory for this measurement")
    ap.add_argument("--pg", default="", help="PostgreSQL URL of this tool's database")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--api", default="", help="URL of the tool's running server, if any")
    ap.add_argument("--timeout", type=float, default=600.0)
    return ap.parse_args(argv)


def emit(**fields: Any) -> None:
    """Report one measurement to the driver (the last such line counts)."""
    sys.stdout.write(MARK + json.dumps(fields) + "\n")
    sys.stdout.flush()


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.01) -> None:
    """Poll ``check`` until it is true; a clear error when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:g} s")
        time.sleep(every)


class Clock:
    """``perf_counter`` stamps relative to one start, rounded for the JSON."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def since(self) -> float:
        return round(time.perf_counter() - self.t0, 6)


def quiet_logs() -> None:
    """Tools that log every step to the terminal would measure the terminal."""
    import logging

    logging.disable(logging.WARNING)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
