"""A history of runs for the insights tests, written through the real store's own calls
(``create_run``, ``commit``, ``append_logs``) as the engine writes them — plus a test
that what it writes reads back as a run with its steps, attempts and log.

``History.run`` takes each step's tries (status, seconds, error, log lines, wait
before) and writes a finished run: steps one after the other from ``at``, the run
succeeded when every step's last try did.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from plait.engine.state import (
    AttemptRecord,
    AttemptStatus,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
)
from plait.store.base import LogLine
from plait.store.migrate import open_store
from plait.store.sql import SqlStore

#: 2026-05-01T00:00:00Z: seeded histories start here unless told otherwise
T0 = 1_777_593_600.0


@dataclass(frozen=True)
class Try:
    """One attempt: how it ended, how long it took, its error and log, and how long
    the step waited before it (a retry's backoff)."""

    status: str = "succeeded"
    took: float = 1.0
    error: str | None = None
    log: tuple[str, ...] = ()
    wait: float = 0.0


def ok(took: float = 1.0) -> Try:
    return Try("succeeded", took)


def fail(error: str, took: float = 1.0, log: Sequence[str] = (), wait: float = 0.0) -> Try:
    return Try("failed", took, error, tuple(log), wait)


class History:
    """Writes finished runs into a store (see the module docstring)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.runs: list[str] = []

    def version(self, source: str, namespace: str | None = None) -> int:
        """Save a workflow source as a version (as ``plait run`` does); its id."""
        name = re.search(r"^name:\s*(\S+)", source, re.M)
        ns = re.search(r"^namespace:\s*(\S+)", source, re.M)
        assert name is not None
        checksum = hashlib.sha256(source.encode()).hexdigest()
        found = self.store.save_version(
            namespace or (ns.group(1) if ns else "default"), name.group(1), source, checksum, "t"
        )
        return found.id

    def run(
        self,
        workflow: str,
        steps: Mapping[str, Sequence[Try]],
        *,
        at: float,
        namespace: str = "default",
        version_id: int | None = None,
        queued: float = 0.0,
    ) -> str:
        """A finished run created at ``at`` (started ``queued`` seconds later)."""
        run_id = str(uuid.uuid4())
        run = RunState(run_id, workflow, namespace, version_id, RunStatus.QUEUED, created_at=at)
        self.store.create_run(run, [StepState(k, _node(k)) for k in steps], [])
        clock = at + queued
        states, attempts, lines = [], [], []
        succeeded = True
        for key, tries in steps.items():
            first = clock + tries[0].wait
            for n, t in enumerate(tries, start=1):
                clock += t.wait
                attempts.append(
                    AttemptRecord(
                        run_id, key, n, AttemptStatus(t.status), clock, clock + t.took, t.error
                    )
                )
                lines += [LogLine(run_id, key, n, "stderr", line, clock + t.took) for line in t.log]
                clock += t.took
            last = tries[-1]
            succeeded = succeeded and last.status == "succeeded"
            states.append(
                StepState(
                    key,
                    _node(key),
                    StepStatus(last.status),
                    attempt=len(tries),
                    error=last.error,
                    started_at=first,
                    finished_at=clock,
                )
            )
        run.status = RunStatus.SUCCEEDED if succeeded else RunStatus.FAILED
        run.started_at, run.finished_at = at + queued, clock
        run.error = None if succeeded else "a step failed"
        self.store.commit(run, 0, states, attempts)
        if lines:
            self.store.append_logs(lines)
        self.runs.append(run_id)
        return run_id

    def simple(
        self, workflow: str, took: float, *, at: float, status: str = "succeeded", **kw: object
    ) -> str:
        """A run of one step ``work`` that took ``took`` seconds."""
        error = None if status == "succeeded" else "boom"
        return self.run(workflow, {"work": [Try(status, took, error)]}, at=at, **kw)  # type: ignore[arg-type]


def _node(key: str) -> str:
    return re.sub(r"\[\d+\]$", "", key)


def test_a_seeded_run_reads_back_as_the_engine_would_have_written_it(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'plait.db'}")
    try:
        history = History(store)
        run_id = history.run(
            "deploy",
            {
                "build": [ok(2.0)],
                "push": [
                    fail("HTTP 503 from https://r.example/v2", log=["retrying"]),
                    Try(wait=3.0),
                ],
            },
            at=T0,
        )
        snap = store.load_run(run_id)
        tries = store.attempts(run_id)
        log = store.read_logs(run_id)
    finally:
        store.close()
    assert snap.run.status == "succeeded"
    assert snap.run.started_at == T0
    assert snap.run.finished_at == T0 + 2.0 + 1.0 + 3.0 + 1.0
    push = next(s for s in snap.steps if s.key == "push")
    assert (push.status, push.attempt) == ("succeeded", 2)
    assert [(a.step, a.attempt, a.status) for a in tries] == [
        ("build", 1, "succeeded"),
        ("push", 1, "failed"),
        ("push", 2, "succeeded"),
    ]
    assert tries[2].started_at - (tries[1].finished_at or 0) == 3.0
    assert [(line.step, line.attempt, line.line) for line in log] == [("push", 1, "retrying")]
