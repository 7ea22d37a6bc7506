"""Retention redaction on real databases: old finished runs lose their data (not even
the SQLite file keeps it), recent and unfinished runs keep everything."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from plait.engine.state import (
    AttemptRecord,
    AttemptStatus,
    Event,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
)
from plait.security.crypto import Keyring
from plait.store.base import LogLine
from plait.store.migrate import open_store
from plait.store.redact import REDACTED, RedactPolicy, count_eligible, redact
from plait.store.sql import SqlStore

DAY = 86400.0
NOW = 1_000 * DAY
PLANTED = "PLANTED-c4n4ry-9f3e"


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    s = open_store(url, Keyring.generate())
    yield s
    s.close()


def add_run(
    store: SqlStore,
    run_id: str,
    secret: str,
    *,
    status: RunStatus = RunStatus.SUCCEEDED,
    finished: float | None,
    workflow: str = "deploy",
    parent: str | None = None,
) -> None:
    run = RunState(
        id=run_id,
        workflow=workflow,
        status=status,
        inputs={"who": secret},
        sealed_inputs={"pw": secret},
        trigger={"type": "webhook", "body": {"x": secret}},
        outputs={"result": secret},
        error=f"failed: {secret}",
        created_at=(finished or NOW) - 60,
        started_at=(finished or NOW) - 50,
        finished_at=finished,
        parent_run_id=parent,
    )
    step = StepState(
        "a",
        "a",
        StepStatus.SUCCEEDED,
        item={"host": secret},
        outputs={"out": secret},
        sealed_outputs={"t": secret},
        error=secret,
        started_at=run.started_at,
        finished_at=finished,
    )
    event = Event(run_id, "step.failed", "a", {"attempt": 1, "error": secret}, at=1.0)
    store.create_run(run, [step], [event])
    attempt = AttemptRecord(run_id, "a", 1, AttemptStatus.FAILED, 1.0, 2.0, secret)
    store.commit(replace(run, version=1), 0, [step], [attempt])
    store.append_logs([LogLine(run_id, "a", 1, "stdout", f"line {secret}", 1.0)])


def test_old_finished_runs_are_redacted_and_the_rest_kept(store: SqlStore, url: str) -> None:
    add_run(store, "old", PLANTED, finished=NOW - 100 * DAY, status=RunStatus.FAILED)
    add_run(store, "recent", "recent-keep", finished=NOW - 10 * DAY)
    add_run(store, "unfinished", "running-keep", status=RunStatus.RUNNING, finished=None)
    add_run(store, "parent", "parent-keep", status=RunStatus.WAITING, finished=None)
    add_run(store, "child", "child-keep", finished=NOW - 100 * DAY, parent="parent")
    add_run(store, "other", "other-keep", finished=NOW - 100 * DAY, workflow="other")

    policy = RedactPolicy(cutoff=NOW - 90 * DAY, workflow="deploy")
    assert count_eligible(store, policy).as_dict() == {
        "runs": 1,
        "steps": 1,
        "attempts": 1,
        "events": 1,
        "log_lines": 1,
    }
    report = redact(store, policy)
    assert report.as_dict() == {"runs": 1, "steps": 1, "attempts": 1, "events": 1, "log_lines": 1}

    old = store.load_run("old")
    assert old.run.status is RunStatus.FAILED  # the skeleton stays
    assert old.run.finished_at == NOW - 100 * DAY
    assert old.run.started_at is not None
    assert old.run.inputs == {"who": REDACTED}
    assert old.run.outputs == {"result": REDACTED}
    assert old.run.sealed_inputs == {}
    assert old.run.error == REDACTED
    assert old.run.trigger == {"type": "webhook", "body": REDACTED}
    (step,) = old.steps
    assert step.status is StepStatus.SUCCEEDED
    assert step.finished_at == NOW - 100 * DAY
    assert (step.outputs, step.sealed_outputs, step.item) == (
        {"out": REDACTED},
        {},
        {"host": REDACTED},
    )
    assert store.attempts("old")[0].error == REDACTED
    assert store.read_logs("old") == []
    (event,) = store.read_events(run_id="old")
    assert event.event.data == {"attempt": 1, "error": REDACTED}

    for run_id, secret in [
        ("recent", "recent-keep"),
        ("unfinished", "running-keep"),
        ("child", "child-keep"),
        ("other", "other-keep"),
    ]:
        kept = store.load_run(run_id)
        assert kept.run.sealed_inputs == {"pw": secret}
        assert kept.steps[0].outputs == {"out": secret}
        assert len(store.read_logs(run_id)) == 1

    # Running it again changes nothing more.
    assert redact(store, policy).runs == 1
    assert store.load_run("old").run.inputs == {"who": REDACTED}

    if url.startswith("sqlite"):
        store.close()
        db = Path(url.removeprefix("sqlite:///"))
        files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
        data = b"".join(p.read_bytes() for p in files)
        assert b"recent-keep" in data  # the check can see plain text
        assert PLANTED.encode() not in data


def test_without_a_workflow_every_old_finished_run_is_redacted(store: SqlStore) -> None:
    add_run(store, "a", PLANTED, finished=NOW - 100 * DAY)
    add_run(store, "b", PLANTED, finished=NOW - 100 * DAY, workflow="other")
    add_run(store, "c", "keep", finished=NOW - 1 * DAY)
    report = redact(store, RedactPolicy(cutoff=NOW - 90 * DAY), batch=1)
    assert report.runs == 2
    assert store.load_run("b").run.inputs == {"who": REDACTED}
    assert store.load_run("c").run.inputs == {"who": "keep"}
