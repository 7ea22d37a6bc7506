"""Live progress of a run in the terminal (``plait run``, ``plait resume``).

On a terminal, a Rich live view shows the step tree with status, attempt and duration,
and log lines scroll above it. Elsewhere (a pipe, CI), each change is one plain line,
so logs stay readable and greppable — written by :class:`PlainProgress` without Rich,
which a script's ``plait run`` then never imports (it is a tenth of the start-up).
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any

from plait.engine.api import Transition
from plait.engine.machine import RunMachine
from plait.engine.state import RunState, StepState, StepStatus
from plait.model.durations import format_duration
from plait.model.plan import Plan
from plait.store.base import LogLine

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.text import Text

ICONS = {
    "pending": ("·", "dim"),
    "queued": ("○", "cyan"),
    "running": ("▶", "bold blue"),
    "retrying": ("↻", "yellow"),
    "waiting": ("⏸", "magenta"),
    "succeeded": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "timed_out": ("⏱", "red"),
    "skipped": ("-", "dim"),
    "cancelled": ("⊘", "yellow"),
}
_ANNOUNCE = {"running", "retrying", "waiting", "succeeded", "failed", "timed_out", "cancelled"}
MAX_ROWS = 40


class Progress:
    """A :class:`~plait.runtime.runner.RunListener` that draws the run for a person."""

    def __init__(self, console: Console, plan: Plan, *, live: bool, show_logs: bool = True):
        self.console = console
        self.plan = plan
        self.show_logs = show_logs
        self._machine: RunMachine | None = None
        self._live: Any = None
        if live:
            from rich.live import Live

            self._live = Live(
                get_renderable=self._render,
                console=console,
                refresh_per_second=8,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )

    def __enter__(self) -> Progress:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    # -- RunListener -----------------------------------------------------------------
    def on_transition(self, run: RunState, machine: RunMachine, transition: Transition) -> None:
        self._machine = machine
        if self._live is not None:
            return
        for step in transition.steps:
            if str(step.status) in _ANNOUNCE:
                self.console.print(self._line(step), highlight=False)

    def on_log(self, line: LogLine) -> None:
        if not self.show_logs:
            return
        from rich.text import Text

        prefix = Text(f"{line.step} | ", style="dim")
        body = Text(line.line, style="red" if line.stream == "stderr" else "")
        self.console.print(prefix + body, highlight=False, markup=False)

    # -- drawing -----------------------------------------------------------------------
    def _line(self, step: StepState) -> Text:
        from rich.text import Text

        text = Text()
        for part, style in describe(step):
            text.append(part, style=style)
        return text

    def _render(self) -> Group:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("step")
        table.add_column("status")
        table.add_column("attempt", justify="right")
        table.add_column("time", justify="right")
        machine = self._machine
        if machine is None:
            return Group(table)
        rows = self._rows(machine)
        for depth, step in rows[:MAX_ROWS]:
            icon, style = ICONS.get(str(step.status), ("?", ""))
            table.add_row(
                Text("  " * depth + step.key),
                Text(f"{icon} {step.status}", style=style),
                str(step.attempt or ""),
                _took(step) or "",
            )
        if len(rows) > MAX_ROWS:
            table.add_row(Text(f"… {len(rows) - MAX_ROWS} more", style="dim"), "", "", "")
        return Group(table)

    def _rows(self, machine: RunMachine) -> list[tuple[int, StepState]]:
        rows: list[tuple[int, StepState]] = []
        for key, node in self.plan.nodes.items():
            state = machine.steps.get(key)
            if state is None:
                continue
            depth = 0
            parent = node.parent
            while parent is not None:
                depth += 1
                parent = self.plan.nodes[parent].parent
            rows.append((depth, state))
        if len(rows) > MAX_ROWS:  # big runs: what is happening now matters most
            rows.sort(key=lambda r: (not r[1].status.active, r[1].status == "pending"))
        return rows


class PlainProgress:
    """The same announcements as lines of plain text, for a pipe or a log file."""

    def __init__(self, stream: IO[str] | None = None, *, show_logs: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.show_logs = show_logs

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def on_transition(self, run: RunState, machine: RunMachine, transition: Transition) -> None:
        for step in transition.steps:
            if str(step.status) in _ANNOUNCE:
                self.stream.write("".join(part for part, _ in describe(step)) + "\n")

    def on_log(self, line: LogLine) -> None:
        if self.show_logs:
            self.stream.write(f"{line.step} | {line.line}\n")


def describe(step: StepState) -> list[tuple[str, str]]:
    """A step's announcement as (text, Rich style) parts."""
    icon, style = ICONS.get(str(step.status), ("?", ""))
    parts = [(f"{icon} {step.key} {step.status}", style)]
    if step.attempt > 1:
        parts.append((f" (attempt {step.attempt})", "dim"))
    took = _took(step)
    if took and step.status.terminal:
        parts.append((f" in {took}", "dim"))
    if step.error and step.status in (StepStatus.FAILED, StepStatus.TIMED_OUT):
        parts.append((f": {step.error}", "red"))
    elif step.reason and step.status in (StepStatus.RETRYING, StepStatus.WAITING):
        parts.append((f": {step.reason}", "dim"))
    return parts


def _took(step: StepState) -> str | None:
    if step.started_at is None:
        return None
    end = step.finished_at or time.time()
    return format_duration(max(0.0, end - step.started_at))
