"""The runtime on a real SQLite store: retries, failure handling, timeouts, fan-out,
secrets, durable waits and crash recovery — driven in-process."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from plait.engine.state import StepStatus
from plait.local import LocalSession, RunResult
from plait.model import load_workflow
from plait.settings import Settings

HERE = Path(__file__).resolve().parent


def _settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    return Settings(home=home, database_url=f"sqlite:///{home}/plait.db")


async def _run(
    tmp_path: Path, source: str, inputs: dict[str, Any] | None = None, **env: str
) -> tuple[RunResult, LocalSession]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        session = LocalSession(_settings(tmp_path))
        plan = load_workflow(source, "wf.yaml", session.registry.input_models()).plan
        try:
            result = await session.run(plan, source, inputs or {}, workdir=tmp_path)
        finally:
            await session.close()
        return result, session
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _status(result: RunResult) -> dict[str, str]:
    return {s.id: s.status for s in result.steps}


async def test_retries_with_backoff_then_success(tmp_path: Path) -> None:
    source = f"""
name: flaky
steps:
  - id: flaky
    retries: {{max: 3, backoff: exponential, initial: 100ms, factor: 2}}
    run: |
      n=$(( $(cat {tmp_path}/n 2>/dev/null || echo 0) + 1 )); echo $n > {tmp_path}/n
      date +%s.%N >> {tmp_path}/times
      [ $n -ge 3 ]
"""
    result, _ = await _run(tmp_path, source)
    assert result.success
    assert result.step("flaky").attempts == 3
    times = [float(t) for t in (tmp_path / "times").read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.09
    assert gaps[1] >= 0.19


async def test_retries_exhausted_fails_the_run(tmp_path: Path) -> None:
    source = """
name: always-fails
steps:
  - id: bad
    retries: {max: 2, backoff: constant, initial: 10ms}
    run: echo "nope" >&2; exit 4
  - id: after
    run: echo never
"""
    result, _ = await _run(tmp_path, source)
    assert result.status == "failed"
    assert result.step("bad").attempts == 3
    assert "exit code 4" in (result.step("bad").error or "")
    assert _status(result)["after"] == "skipped"


async def test_on_error_continue_and_failure_functions(tmp_path: Path) -> None:
    source = """
name: mixed
steps:
  - id: optional
    run: exit 1
    on_error: continue
  - id: main
    run: echo main
  - id: only-on-failure
    if: failure()
    run: echo should not run
on_failure:
  - id: rollback
    run: echo rollback
finally:
  - id: cleanup
    run: echo cleanup
"""
    result, _ = await _run(tmp_path, source)
    assert result.success, result
    status = _status(result)
    assert status == {
        "optional": "failed",
        "main": "succeeded",
        "only-on-failure": "skipped",
        "rollback": "skipped",
        "cleanup": "succeeded",
    }


async def test_failure_runs_on_failure_then_finally(tmp_path: Path) -> None:
    source = f"""
name: failing
steps:
  - id: pre
    parallel:
      - id: slow-sibling
        run: sleep 0.3; echo done > {tmp_path}/sibling
      - id: breaks
        run: exit 1
  - id: deploy
    run: echo deploy
  - id: page
    if: failure()
    run: echo paging
on_failure:
  - id: rollback
    run: echo rollback
finally:
  - id: cleanup
    if: always()
    run: echo cleanup
"""
    result, _ = await _run(tmp_path, source)
    assert result.status == "failed"
    status = _status(result)
    assert status["slow-sibling"] == "succeeded"  # already running steps finish
    assert (tmp_path / "sibling").exists()
    assert status["deploy"] == "skipped"
    assert status["page"] == "succeeded"
    assert status["rollback"] == "succeeded"
    assert status["cleanup"] == "succeeded"


async def test_step_timeout_kills_the_process_tree(tmp_path: Path) -> None:
    source = f"""
name: hangs
steps:
  - id: hang
    timeout: 300ms
    run: |
      bash -c 'echo $$ > {tmp_path}/child.pid; sleep 60' &
      sleep 60
"""
    t0 = time.monotonic()
    result, _ = await _run(tmp_path, source)
    assert time.monotonic() - t0 < 10
    assert result.status == "failed"
    assert _status(result)["hang"] == "timed_out"
    pid = int((tmp_path / "child.pid").read_text())
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the grandchild outlived the step's timeout")


async def test_run_timeout(tmp_path: Path) -> None:
    source = """
name: slow-run
timeout: 300ms
steps:
  - id: long
    run: sleep 30
  - id: next
    run: echo next
on_failure:
  - id: rollback
    run: echo rollback
finally:
  - id: cleanup
    run: echo cleanup
"""
    result, _ = await _run(tmp_path, source)
    assert result.status == "timed_out"
    status = _status(result)
    assert status["long"] == "timed_out"
    assert status["next"] == "skipped"
    assert status["rollback"] == "succeeded"
    assert status["cleanup"] == "succeeded"


async def test_for_each_fan_out_respects_max_parallel(tmp_path: Path) -> None:
    source = f"""
name: fan
steps:
  - id: each
    for_each: "${{{{ range(6) | list }}}}"
    max_parallel: 2
    run: |
      echo start >> {tmp_path}/events; sleep 0.2; echo end >> {tmp_path}/events
      echo "square=$(( ${{{{ item }}}} * ${{{{ item }}}} ))" >> "$PLAIT_OUTPUT"
"""
    result, _ = await _run(tmp_path, source)
    assert result.success
    assert result.step("each").outputs == {
        "square": ["0", "1", "4", "9", "16", "25"],
        "exit_code": [0] * 6,
    }
    running = peak = 0
    for line in (tmp_path / "events").read_text().split():
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    assert peak <= 2


async def test_secrets_are_masked_everywhere(tmp_path: Path) -> None:
    token = "s3cr3t-t0ken-value"
    source = """
name: secretive
inputs:
  token: {type: string, secret: true}
steps:
  - id: leak
    run: |
      echo "token is ${{ inputs.token }} and env ${{ secrets.API_KEY }}"
      echo "header=Bearer ${{ inputs.token }}" >> "$PLAIT_OUTPUT"
  - id: use
    run: echo "passing ${{ steps.leak.outputs.header }} on"
outputs:
  header: "${{ steps.leak.outputs.header }}"
"""
    result, session = await _run(
        tmp_path, source, {"token": token}, PLAIT_SECRET_API_KEY="env-secret-42"
    )
    assert result.success
    assert result.inputs == {"token": "***"}
    assert result.step("leak").outputs == {"exit_code": 0, "header": "Bearer ***"}
    assert result.outputs == {"header": "Bearer ***"}
    logs = [ln.line for ln in session.store.read_logs(result.run_id)]  # store is closed
    del logs
    raw = b""
    for f in (tmp_path / "home").glob("plait.db*"):
        raw += f.read_bytes()
    assert token.encode() not in raw
    assert b"env-secret-42" not in raw
    con = sqlite3.connect(tmp_path / "home" / "plait.db")
    lines = [r[0] for r in con.execute("select line from logs order by id")]
    con.close()
    assert "token is *** and env ***" in lines
    assert "passing *** on" in lines  # the output derived from a secret is a secret


async def test_expression_error_fails_the_step_with_the_expression(tmp_path: Path) -> None:
    source = """
name: bad-expr
inputs:
  n: {type: integer, default: 0}
steps:
  - id: divide
    run: echo ${{ 10 // inputs.n }}
    retries: 3
"""
    result, _ = await _run(tmp_path, source)
    assert result.status == "failed"
    step = result.step("divide")
    assert step.attempts <= 1  # not retried: it cannot get better
    assert "10 // inputs.n" in (step.error or "")


async def test_durable_sleep_survives_a_restart(tmp_path: Path) -> None:
    source = """
name: sleeper
steps:
  - id: nap
    uses: sleep
    with: {duration: 1s}
  - id: after
    run: echo awake
"""
    settings = _settings(tmp_path)
    session = LocalSession(settings)
    plan = load_workflow(source, "wf.yaml", session.registry.input_models()).plan
    version = session.store.save_version("default", "sleeper", source, "x", None)
    run_id = await session.runner.start(plan, {}, version_id=version.id, workdir=tmp_path)
    await asyncio.sleep(0.2)
    snap = session.store.load_run(run_id)
    nap = next(s for s in snap.steps if s.key == "nap")
    assert nap.status is StepStatus.WAITING
    assert nap.available_at
    await session.close()  # the process "dies" while the step waits

    t0 = time.monotonic()
    again = LocalSession(settings)
    try:
        result = await again.resume(run_id)
    finally:
        await again.close()
    assert result.success
    assert time.monotonic() - t0 < 1.5  # only the rest of the second was slept
    assert _status(result) == {"nap": "succeeded", "after": "succeeded"}


async def test_python_steps_and_outputs(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text(
        "async def double(x):\n    return {'value': x * 2}\n"
        "def boom():\n    raise RuntimeError('kaput')\n"
    )
    source = """
name: py
steps:
  - id: double
    uses: python
    with: {function: "helpers:double", args: {x: 21}}
  - id: show
    run: echo "${{ steps.double.outputs.value }}"
  - id: boom
    uses: python
    with: {function: "helpers:boom"}
    on_error: continue
"""
    result, _ = await _run(tmp_path, source)
    assert result.success
    assert result.step("double").outputs == {"value": 42}
    assert "RuntimeError: kaput" in (result.step("boom").error or "")


def _children() -> list[int]:
    """Processes whose parent is this one (zombies included)."""
    me, found = str(os.getpid()), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                found.append(int(entry))
    return found


async def test_a_shell_started_before_a_failed_commit_runs_its_command_once(
    tmp_path: Path,
) -> None:
    # A shell step's process starts while its start is committed, held before the
    # command. When that commit fails (the database is away), the process must go
    # without running anything, and the step runs once, after the retried commit.
    from plait.errors import StoreUnavailable
    from plait.store.sql import SqlStore

    marker = tmp_path / "ran"
    source = (
        "name: wf\nsteps:\n"
        "  - id: first\n    run: 'true'\n"
        f"  - id: second\n    run: echo once >> {marker}\n"
    )
    real_commit = SqlStore.commit
    failed: list[object] = []
    before = set(_children())

    def commit(self: SqlStore, run: Any, expected: int, steps: Any, *a: Any, **kw: Any) -> None:
        claims = [s for s in steps if s.key == "second" and s.status is StepStatus.RUNNING]
        if claims and not failed:
            failed.append(claims)
            # the held shell is up by now; show it cannot have run the command
            assert set(_children()) - before
            raise StoreUnavailable("the database is away (test)")
        real_commit(self, run, expected, steps, *a, **kw)

    SqlStore.commit = commit  # type: ignore[method-assign]
    try:
        result, _ = await _run(tmp_path, source)
    finally:
        SqlStore.commit = real_commit  # type: ignore[method-assign]
    assert failed
    assert result.status == "succeeded", result.error
    assert marker.read_text() == "once\n"
    assert not set(_children()) - before
