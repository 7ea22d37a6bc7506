"""The shell action against real subprocesses: streaming, outputs, exit codes, process
trees on cancel, environment and working directory."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from plait.actions.base import ActionContext, ActionFailed, ActionResult
from plait.actions.shell import (
    MAX_LINE_CHARS,
    ShellAction,
    ShellInput,
    _LineSplitter,
)
from plait.actions.shell_outputs import parse_outputs


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, float]] = []

    def __call__(self, stream: str, line: str) -> None:
        self.lines.append((stream, line, time.monotonic()))

    def of(self, stream: str) -> list[str]:
        return [line for s, line, _ in self.lines if s == stream]


def make_ctx(
    workdir: Path, log: Log | None = None, env: dict[str, str] | None = None
) -> ActionContext:
    return ActionContext(
        run_id="run-1",
        workflow="wf",
        step="build",
        attempt=2,
        workdir=workdir,
        env=env or {},
        log=log or Log(),
        mask=lambda text: text,
    )


async def run(tmp_path: Path, command: str, log: Log | None = None, **kw: Any) -> ActionResult:
    action = ShellAction()
    try:
        return await action.execute(make_ctx(tmp_path, log), ShellInput(command=command, **kw))
    finally:
        await action.aclose()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


def words_in(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


async def wait_for_lines(path: Path, count: int) -> None:
    for _ in range(250):
        if words_in(path) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never got {count} lines")


def wait_dead(pids: list[int], timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        living = [pid for pid in pids if alive(pid)]
        if not living:
            return []
        time.sleep(0.05)
    return living


async def test_streams_stdout_and_stderr_line_by_line(tmp_path: Path) -> None:
    log = Log()
    result = await run(tmp_path, "echo one; echo two >&2; printf 'three\\nfour'", log)
    assert log.of("stdout") == ["one", "three", "four"]
    assert log.of("stderr") == ["two"]
    assert result.outputs == {"exit_code": 0}


async def test_a_line_arrives_while_the_command_still_runs(tmp_path: Path) -> None:
    log = Log()
    await run(tmp_path, "echo early; sleep 1; echo late", log)
    ended = time.monotonic()
    (_, first, at), (_, second, _) = log.lines
    assert (first, second) == ("early", "late")
    assert ended - at >= 0.8  # logged about a second before the process ended


async def test_outputs_file_with_plain_and_multiline_values(tmp_path: Path) -> None:
    command = (
        'echo "version=1.4.2" >> "$PLAIT_OUTPUT"\n'
        'echo "url=http://x/?a=b" >> "$PLAIT_OUTPUT"\n'
        '{ echo "notes<<EOF"; echo "line 1"; echo "line 2"; echo EOF; } >> "$PLAIT_OUTPUT"\n'
    )
    result = await run(tmp_path, command)
    assert result.outputs == {
        "version": "1.4.2",
        "url": "http://x/?a=b",
        "notes": "line 1\nline 2",
        "exit_code": 0,
    }


async def test_a_malformed_outputs_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ActionFailed, match=r"PLAIT_OUTPUT: line 1: expected key=value") as e:
        await run(tmp_path, 'echo "no equals sign" >> "$PLAIT_OUTPUT"')
    assert e.value.retryable is False


def test_parse_outputs_rules(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_text("a=1\n\nb==2\nc<<X\nX\nd<<END\n=\nEND\n")
    assert parse_outputs(path) == {"a": "1", "b": "=2", "c": "", "d": "="}
    path.write_text("k<<EOF\nnever closed\n")
    with pytest.raises(ValueError, match="no closing 'EOF'"):
        parse_outputs(path)


async def test_non_zero_exit_fails_with_the_last_stderr_line(tmp_path: Path) -> None:
    command = "echo 'step 1 ok'; echo 'warning: x' >&2; echo 'fatal: disk full' >&2; exit 3"
    with pytest.raises(ActionFailed) as e:
        await run(tmp_path, 'echo "partial=yes" >> "$PLAIT_OUTPUT"; ' + command)
    assert str(e.value) == "exit code 3: fatal: disk full"
    assert e.value.outputs == {"partial": "yes", "exit_code": 3}


async def test_default_shell_is_bash_with_errexit_and_pipefail(tmp_path: Path) -> None:
    with pytest.raises(ActionFailed, match="exit code 1"):
        await run(tmp_path, "false | true; echo unreachable")
    with pytest.raises(ActionFailed, match="exit code 1"):
        await run(tmp_path, "false; echo unreachable")


async def test_custom_shells(tmp_path: Path) -> None:
    log = Log()
    await run(tmp_path, "import sys; print(sys.version_info[0] + 39)", log, shell="python3")
    await run(tmp_path, "echo from sh", log, shell="sh -c")
    await run(tmp_path, "print('from a script file')", log, shell=f"{sys.executable} {{0}}")
    await run(tmp_path, "set -o | grep -q 'errexit *on' && echo errexit", log, shell="sh")
    assert log.of("stdout") == ["42", "from sh", "from a script file", "errexit"]


async def test_an_unknown_interpreter_reads_a_script_file(tmp_path: Path) -> None:
    log = Log()
    await run(tmp_path, "print('file ok')", log, shell=sys.executable)
    assert log.of("stdout") == ["file ok"]


async def test_missing_shell_fails_without_retry(tmp_path: Path) -> None:
    with pytest.raises(ActionFailed, match="cannot start 'no-such-shell-x'") as e:
        await run(tmp_path, "true", shell="no-such-shell-x -c")
    assert e.value.retryable is False


async def test_environment(tmp_path: Path) -> None:
    log = Log()
    action = ShellAction()
    ctx = make_ctx(tmp_path, log, env={"FROM_CTX": "ctx", "BOTH": "ctx"})
    os.environ["PLAIT_TEST_FROM_PROCESS"] = "process"
    try:
        command = (
            'echo "$PLAIT_TEST_FROM_PROCESS $FROM_CTX $BOTH $FROM_INPUT"; '
            'echo "$PLAIT_RUN_ID $PLAIT_STEP $PLAIT_ATTEMPT"; test -n "$PLAIT_OUTPUT"'
        )
        inp = ShellInput(command=command, env={"FROM_INPUT": "input", "BOTH": "input"})
        await action.execute(ctx, inp)
    finally:
        del os.environ["PLAIT_TEST_FROM_PROCESS"]
        await action.aclose()
    assert log.of("stdout") == ["process ctx input input", "run-1 build 2"]


async def test_working_directory_is_relative_to_the_workdir(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    log = Log()
    await run(tmp_path, "pwd", log)
    await run(tmp_path, "pwd", log, working_directory="sub")
    assert log.of("stdout") == [str(tmp_path), str(tmp_path / "sub")]
    with pytest.raises(ActionFailed, match=r"working directory .*missing does not exist"):
        await run(tmp_path, "pwd", working_directory="missing")


async def test_very_long_lines_are_split_not_buffered_whole(tmp_path: Path) -> None:
    log = Log()
    size = MAX_LINE_CHARS * 3 + 10
    await run(tmp_path, f"head -c {size} /dev/zero | tr '\\0' x; echo; echo after", log)
    lines = log.of("stdout")
    assert lines[-1] == "after"
    assert max(len(line) for line in lines) == MAX_LINE_CHARS
    assert sum(len(line) for line in lines[:-1]) == size


async def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    log = Log()
    await run(tmp_path, r"printf 'caf\xc3\xa9 \xff end\n'", log)
    assert log.of("stdout") == ["café \ufffd end"]


async def test_cancel_kills_the_whole_process_tree(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = (
        f"sleep 100 & echo $! >> {pids}\n"
        f"bash -c 'sleep 101 & echo $! >> {pids}; sleep 102' & echo $! >> {pids}\n"
        f"echo $$ >> {pids}\n"
        "wait\n"
    )
    action = ShellAction()
    task = asyncio.ensure_future(action.execute(make_ctx(tmp_path), ShellInput(command=command)))
    await wait_for_lines(pids, 4)
    started = [int(p) for p in pids.read_text().split()]
    assert all(alive(pid) for pid in started)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, 0.2)
    assert time.monotonic() - began < 2.0
    assert wait_dead(started) == []


async def test_cancel_gives_the_command_a_grace_period(tmp_path: Path) -> None:
    log = Log()
    ready = tmp_path / "ready"
    command = (
        f"trap 'echo cleaning up; exit 0' TERM; touch {ready}; echo $$ >> {ready}; sleep 100 & wait"
    )
    action = ShellAction()
    task = asyncio.ensure_future(
        action.execute(make_ctx(tmp_path, log), ShellInput(command=command))
    )
    await wait_for_lines(ready, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log.of("stdout") == ["cleaning up"]


async def test_a_process_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    command = f"trap '' TERM; sh -c 'trap \"\" TERM; echo $$ > {pid_file}; sleep 100'"
    task = asyncio.ensure_future(
        QuickShell().execute(make_ctx(tmp_path), ShellInput(command=command))
    )
    await wait_for_lines(pid_file, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_dead([int(pid_file.read_text())]) == []


class QuickShell(ShellAction):
    # Where PID 1 does not reap orphans (some containers), a terminated leftover stays a
    # zombie in the group until the grace ends; keep that short here.
    kill_grace = 0.5


async def test_leftover_background_processes_do_not_hold_the_step(tmp_path: Path) -> None:
    began = time.monotonic()
    command = 'sleep 100 & echo "pid=$!" >> "$PLAIT_OUTPUT"; echo done'
    result = await QuickShell().execute(make_ctx(tmp_path), ShellInput(command=command))
    assert time.monotonic() - began < 1.5
    assert wait_dead([int(result.outputs["pid"])]) == []


async def test_steps_run_concurrently(tmp_path: Path) -> None:
    action = ShellAction()
    logs = [Log() for _ in range(5)]
    began = time.monotonic()
    await asyncio.gather(
        *(
            action.execute(make_ctx(tmp_path, log), ShellInput(command=f"sleep 0.5; echo {i}"))
            for i, log in enumerate(logs)
        )
    )
    assert time.monotonic() - began < 2.0
    assert [log.of("stdout") for log in logs] == [[str(i)] for i in range(5)]
    await action.aclose()


async def test_the_error_message_is_masked(tmp_path: Path) -> None:
    action = ShellAction()
    ctx = make_ctx(tmp_path)
    ctx.mask = lambda text: text.replace("hunter2", "***")
    with pytest.raises(ActionFailed, match=r"exit code 1: bad password \*\*\*"):
        await action.execute(ctx, ShellInput(command="echo 'bad password hunter2' >&2; exit 1"))


def test_line_splitter_bounds_every_line() -> None:
    splitter = _LineSplitter()
    chunk = b"y" * 50_000
    lines = [*splitter.feed(chunk), *splitter.feed(chunk + b"\nz\r\n"), *splitter.feed(b"tail")]
    lines += splitter.feed(b"", final=True)
    assert max(map(len, lines)) <= MAX_LINE_CHARS
    assert "".join(lines[:-2]) == "y" * 100_000
    assert lines[-2:] == ["z", "tail"]
    assert _LineSplitter().feed("é".encode()[:1]) == []  # half a character waits


# -- prestart: the shell starts while the attempt's start is committed ------------------
def prestart(action: ShellAction, ctx: ActionContext, command: str, **kw: Any) -> ShellInput:
    inp = ShellInput(command=command, **kw)
    ctx.prestarted = action.prestart(ctx, inp)
    assert ctx.prestarted is not None
    return inp


async def test_a_prestarted_shell_runs_its_command_only_after_execute(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    log = Log()
    action = ShellAction()
    ctx = make_ctx(tmp_path, log, env={"FROM_CTX": "ctx"})
    command = (
        'touch ran; pwd; echo "$FROM_CTX $PLAIT_STEP $PLAIT_ATTEMPT"; cat; '
        "test ! -e /dev/fd/3 && echo 'fd 3 closed'; trap -p PIPE; "
        'echo "answer=42" >> "$PLAIT_OUTPUT"'
    )
    try:
        inp = prestart(action, ctx, command, working_directory="sub")
        await asyncio.sleep(0.3)  # far longer than a shell takes to start
        assert not (tmp_path / "sub" / "ran").exists()  # held at the gate
        result = await action.execute(ctx, inp)
    finally:
        await action.aclose()
    assert (tmp_path / "sub" / "ran").exists()
    # its directory, environment, an empty stdin, no gate left open, SIGPIPE not ignored
    assert log.of("stdout") == [str(tmp_path / "sub"), "ctx build 2", "fd 3 closed"]
    assert result.outputs == {"answer": "42", "exit_code": 0}


async def test_an_aborted_prestart_runs_nothing_and_leaves_no_process(tmp_path: Path) -> None:
    action = ShellAction()
    ctx = make_ctx(tmp_path)
    try:
        prestart(action, ctx, "touch ran")
        assert ctx.prestarted is not None
        pid = ctx.prestarted.proc.pid  # type: ignore[attr-defined]
        ctx.prestarted.abort()
        ctx.prestarted.abort()  # twice is harmless
    finally:
        await action.aclose()
    assert not alive(pid)
    assert not (tmp_path / "ran").exists()


async def test_a_shell_whose_runtime_dies_at_the_gate_exits_before_the_command(
    tmp_path: Path,
) -> None:
    # The runtime's end of the gate closes when its process dies: the shell reads end of
    # file and leaves without running the command (nothing was committed for it).
    action = ShellAction()
    ctx = make_ctx(tmp_path)
    try:
        prestart(action, ctx, "touch ran")
        held = ctx.prestarted
        os.close(held._gate)  # type: ignore[attr-defined]
        held._gate = None  # type: ignore[attr-defined]
        code = held.proc.wait()  # type: ignore[attr-defined]
    finally:
        await action.aclose()
    assert code == 1
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("shell", [None, "sh -c", "bash -c"])
async def test_a_prestarted_shell_reports_errors_as_a_plain_one_does(
    tmp_path: Path, shell: str | None
) -> None:
    kw = {"shell": shell} if shell else {}
    for command in ("if then", "echo one\nif then", "no-such-command-x"):
        plain_log, held_log = Log(), Log()
        with pytest.raises(ActionFailed) as plain:
            await run(tmp_path, command, plain_log, **kw)
        action = ShellAction()
        ctx = make_ctx(tmp_path, held_log)
        try:
            inp = prestart(action, ctx, command, **kw)
            with pytest.raises(ActionFailed) as held:
                await action.execute(ctx, inp)
        finally:
            await action.aclose()
        assert str(held.value) == str(plain.value)  # line numbers and all
        assert [line for _, line, _ in held_log.lines] == [line for _, line, _ in plain_log.lines]


async def test_only_bash_and_sh_are_prestarted(tmp_path: Path) -> None:
    action = ShellAction()
    try:
        ctx = make_ctx(tmp_path)
        gated = [None, "bash", "sh", "sh -c", "bash -c", "/bin/sh -e -c", "bash -eo pipefail -c"]
        for shell in gated:
            prestart(action, ctx, "true", **({"shell": shell} if shell else {}))
            ctx.prestarted.abort()  # type: ignore[union-attr]
        others = ["python3", "bash -x -c", "bash -o xtrace -c", "sh -v -c", "bash {0}", "zsh -c"]
        for other in [*others, "bash --rcfile x -c", "sh -c -e", "bash -c 'echo'"]:
            assert action.prestart(ctx, ShellInput(command="true", shell=other)) is None
        for name, value in (("SHELLOPTS", "xtrace"), ("BASH_ENV", str(tmp_path / "rc"))):
            ctx_env = make_ctx(tmp_path, env={name: value})
            assert action.prestart(ctx_env, ShellInput(command="true")) is None
            step_env = ShellInput(command="true", env={name: value})
            assert action.prestart(ctx, step_env) is None
        missing = ShellInput(command="true", working_directory="missing")
        assert action.prestart(ctx, missing) is None  # execute reports it
    finally:
        await action.aclose()
