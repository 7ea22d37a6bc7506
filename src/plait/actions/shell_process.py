"""Starting a shell step's process early and holding it at a gate (decision 0006).

A step in bash or sh is spawned while the runtime commits the attempt's start, and
waits before the step's command — ``read`` on fd 3 — until :meth:`Held.go` (the commit
returned) or :meth:`Held.abort` (it did not). If the runtime dies, the kernel closes
fd 3's other end: the shell reads end of file and exits before the command ran.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import signal
from pathlib import Path
from typing import IO, Protocol

#: what a prestarted shell runs first, on the command's first line (so line numbers in
#: its messages stay the user's): wait for the runtime's go — a newline on fd 3, written
#: once the attempt's start is committed — close fd 3 and enter the working directory;
#: end of file instead (the runtime gave up, or died) exits before the command ran
GATE = "read -r _ <&3 || exit 1; exec 3<&-; cd -- {cwd} || exit 1; "
#: variables that make bash act before the gate or show it: such steps are not prestarted
UNGATED = ("SHELLOPTS", "BASH_ENV")
#: signals Python ignores that a command must get with their default action
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


#: options a prestarted shell may have (tracing ones, -x and -v, would print the gate)
_GATEABLE_LONG = frozenset({"--noprofile", "--norc", "--posix"})
_GATEABLE_SHORT = frozenset("eufo")
_TRACING = frozenset({"xtrace", "verbose"})


@functools.lru_cache(maxsize=64)
def gateable(shell: str | None) -> bool:
    """Whether a step's ``shell:`` can be prestarted: the default, ``bash``, ``sh``, or
    bash/sh/dash with options only, ending in ``-c`` (the command is its script, so the
    gate before it is all that runs first)."""
    if shell is None:
        return True
    try:
        words = shlex.split(shell)
    except ValueError:
        return False
    if words in (["bash"], ["sh"]):
        return True
    if len(words) < 2 or words[-1] != "-c" or "{0}" in shell:
        return False
    if Path(words[0]).name not in ("bash", "sh", "dash"):
        return False
    options = iter(words[1:-1])
    for word in options:
        if word in _GATEABLE_LONG:
            continue
        if len(word) < 2 or word[0] not in "-+" or not set(word[1:]) <= _GATEABLE_SHORT:
            return False
        if "o" in word and next(options, "xtrace") in _TRACING:  # -o NAME
            return False
    return True


@functools.lru_cache(maxsize=64)
def which(program: str) -> str | None:
    return shutil.which(program)


class Process(Protocol):
    """What the action needs of a child: ``subprocess.Popen`` or a :class:`Spawned`."""

    pid: int
    returncode: int | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class Spawned:
    """A child made by ``os.posix_spawn``: its pid, output pipes and exit status."""

    def __init__(self, pid: int, stdout: int, stderr: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdout: IO[bytes] | None = open(stdout, "rb", buffering=0)  # noqa: SIM115
        self.stderr: IO[bytes] | None = open(stderr, "rb", buffering=0)  # noqa: SIM115

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


class Held:
    """A shell :meth:`ShellAction.prestart` started, waiting at the gate."""

    def __init__(self, proc: Spawned, gate: int, output_path: str, prefix: str) -> None:
        self.proc = proc
        self.output_path = output_path
        self.prefix = prefix
        self._gate: int | None = gate

    def go(self) -> Spawned:
        """The start is committed: let the command run."""
        gate, self._gate = self._gate, None
        if gate is not None:
            with contextlib.suppress(OSError):  # it exited already (a syntax error on line 1)
                os.write(gate, b"\n")
            os.close(gate)
        return self.proc

    def abort(self) -> None:
        gate, self._gate = self._gate, None
        if gate is None:
            return  # taken over by execute (or aborted already)
        os.close(gate)
        signal_group(self.proc.pid, signal.SIGKILL)  # still at the gate: nothing of it ran
        self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False when it has no processes left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed user (setuid); nothing more we can do
        return False
    return True


def spawn_held(
    path: str, argv: list[str], env: dict[bytes, bytes], stdin: int, output_path: str, prefix: str
) -> Held | None:
    """Start ``argv`` (its last word the gated command) at ``path``, held at the gate;
    None when it cannot be started (the step's ``execute`` meets the error again)."""
    gate_in, gate = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        # posix_spawn (vfork and exec in C) rather than subprocess: no Python between
        # the two and no per-variable encoding; the working directory is entered by
        # the gate, since posix_spawn cannot chdir here.
        pid = os.posix_spawn(
            path,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
                (os.POSIX_SPAWN_DUP2, gate_in, 3),
            ],
            setsid=True,
            setsigdef=_DEFAULT_SIGNALS,  # Python ignores SIGPIPE; a command must not
        )
    except (OSError, NotImplementedError):  # (the latter: no setsid in this libc)
        for fd in (gate, out_r, err_r):
            os.close(fd)
        return None  # execute meets the same error and reports it
    finally:
        for fd in (gate_in, out_w, err_w):
            os.close(fd)
    return Held(Spawned(pid, out_r, err_r), gate, output_path, prefix)
