"""``plait`` — the command line (DESIGN §6).

Exit codes: 0 success, 1 a run that did not succeed (or an operation that failed),
2 bad input (a missing or invalid file, bad inputs or options). No command prints a
traceback for bad input; ``--log-level debug`` shows one for unexpected errors.
Heavy imports happen inside the commands, so ``plait run`` starts fast.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from plait import __version__
from plait.errors import PlaitError, ValidationError

if TYPE_CHECKING:
    from rich.console import Console

    from plait.local import RunResult
    from plait.model.plan import Plan

log = logging.getLogger("plait")

app = typer.Typer(
    name="plait",
    help="Plait: durable workflow automation. Run YAML workflows locally, or serve them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Database migrations of the store.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs in the local store ($PLAIT_HOME).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(runs_app, name="runs")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    _err().print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"plait {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error (to stderr).")
    ] = "warning",
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            envvar="PLAIT_LOG_FORMAT",
            show_envvar=True,
            help="text, or json: one JSON object per line with run, step and request ids.",
        ),
    ] = "text",
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    from plait.ops import logging as logs

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        fail(f"--log-level {log_level!r} is not one of debug, info, warning, error")
    if log_format.lower() not in logs.FORMATS:
        fail(f"--log-format {log_format!r} is not one of {', '.join(logs.FORMATS)}")
    logs.configure(level, log_format.lower(), sys.stderr)


# -- loading ----------------------------------------------------------------------------
def _registry() -> Any:
    from plait.actions.registry import ActionRegistry

    return ActionRegistry()


def _load(path: Path, registry: Any) -> tuple[Plan, str]:
    from plait.model import load_workflow

    if not path.exists():
        fail(f"{path}: no such file")
    if path.is_dir():
        fail(f"{path}: is a directory, not a workflow file")
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot read: {exc}")
    try:
        loaded = load_workflow(source, str(path), registry.input_models())
    except ValidationError as exc:
        _print_problems(exc)
        raise typer.Exit(EXIT_USAGE) from None
    return loaded.plan, source


def _print_problems(exc: ValidationError) -> None:
    err = _err()
    for problem in exc.problems:
        err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    n = len(exc.problems)
    err.print(f"{n} problem{'s' if n != 1 else ''} found", style="red")


def _parse_inputs(pairs: list[str], plan: Plan) -> dict[str, Any]:
    from plait.errors import InputError
    from plait.model.inputs import validate_inputs

    given: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"-i {pair!r}: write inputs as NAME=VALUE")
        given[name.strip()] = value
    try:
        return validate_inputs(plan, given, from_strings=True)
    except InputError as exc:
        for problem in exc.problems:
            _err().print(f"input {problem.message}", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None


# -- run and resume ---------------------------------------------------------------------
InputsOpt = Annotated[
    list[str] | None, typer.Option("--input", "-i", help="An input as NAME=VALUE (repeatable).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
ResultsOpt = Annotated[
    Path, typer.Option("--results-dir", help="Where to write workflow_<name>_<time>.json.")
]
WorkdirOpt = Annotated[
    Path | None,
    typer.Option("--workdir", help="Directory steps run in (default: the current one)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Do not show step logs.")]


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="The workflow YAML file.")],
    inputs: InputsOpt = None,
    json_out: JsonOpt = False,
    results_dir: ResultsOpt = Path("logs"),
    workdir: WorkdirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run a workflow file to completion with no server.

    Prints `run <id>` first, then live progress; writes the result JSON to
    --results-dir. Exit 0 succeeded, 1 failed, 2 invalid file or inputs. A run whose
    process is killed continues with `plait resume <id>`.
    """
    registry = _registry()
    plan, source = _load(file, registry)
    values = _parse_inputs(inputs or [], plan)
    _drive(
        plan,
        json_out,
        results_dir,
        quiet,
        lambda s, cb: s.run(plan, source, values, workdir=workdir, on_start=cb),
    )


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The id `plait run` printed.")],
    json_out: JsonOpt = False,
    results_dir: ResultsOpt = Path("logs"),
    workdir: WorkdirOpt = None,
    quiet: QuietOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Resume even if the old process seems alive.")
    ] = False,
) -> None:
    """Continue a run whose process stopped or was killed, from its last committed
    state. Finished steps do not run again; steps that were running start again."""
    from plait.errors import NotFound
    from plait.local import LocalSession, load_source

    session = LocalSession()
    try:
        snap = session.store.load_run(run_id)
        version = session.store.get_version(snap.run.version_id or 0)
        plan = load_source(version.source, snap.run.workflow, session.registry)
    except NotFound:
        fail(f"no run {run_id!r} in {session.settings.home}")
    finally:
        session.store.close()
    _drive(
        plan,
        json_out,
        results_dir,
        quiet,
        lambda s, cb: s.resume(run_id, workdir=workdir, force=force, on_start=cb),
    )


def _drive(plan: Plan, json_out: bool, results_dir: Path, quiet: bool, go: Any) -> None:
    import asyncio
    import signal

    from plait.local import LocalSession, write_result

    stream = sys.stderr if json_out else sys.stdout
    progress: Any
    if stream.isatty():
        from rich.console import Console

        from plait.console import Progress

        out = Console(stderr=json_out, highlight=False)
        progress = Progress(out, plan, live=True, show_logs=not quiet)
    else:  # a pipe or a file: plain lines, and no Rich to import
        from plait.console import PlainProgress

        progress = PlainProgress(stream, show_logs=not quiet)
    started: list[str] = []

    def on_start(run_id: str) -> None:
        started.append(run_id)
        print(f"run {run_id}", file=sys.stderr if json_out else sys.stdout, flush=True)

    async def main() -> RunResult:
        session = LocalSession(listener=progress)
        from plait.runtime.tuning import tune_gc

        tune_gc()  # after start-up: see plait.runtime.tuning
        loop = asyncio.get_running_loop()
        interrupts = [0]

        def on_sigint() -> None:
            interrupts[0] += 1
            if interrupts[0] == 1 and started:
                _err().print("cancelling (press Ctrl-C again to stop at once)…")
                session.cancel(started[0])
            else:
                raise SystemExit(130)

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            with progress:
                result: RunResult = await go(session, on_start)
                return result
        finally:
            await session.close()

    try:
        result = asyncio.run(main())
    except PlaitError as exc:
        fail(str(exc), EXIT_FAILED)
    path = write_result(result, results_dir)
    _report(result, path, json_out)
    raise typer.Exit(EXIT_OK if result.success else EXIT_FAILED)


def _report(result: RunResult, path: Path, json_out: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
        return
    from plait.model.durations import format_duration

    took = format_duration(result.duration or 0)
    if not sys.stdout.isatty():  # plain lines for scripts (and no Rich to import)
        print(f"run {result.run_id} {result.status} in {took} — result: {path}")
        if result.error:
            print(result.error)
        for step in result.steps:
            if step.status in ("failed", "timed_out") and step.error:
                print(f"  ✗ {step.id}: {step.error}")
        return
    from rich.console import Console

    con = Console(highlight=False)
    style = "green" if result.success else "red"
    con.print(f"[{style}]run {result.run_id} {result.status}[/] in {took} — result: {path}")
    if result.error:
        con.print(f"[red]{result.error}[/]", markup=True)
    for step in result.steps:
        if step.status in ("failed", "timed_out") and step.error:
            con.print(f"  [red]✗ {step.id}[/]: {step.error}", markup=True, soft_wrap=True)


# -- static commands --------------------------------------------------------------------
@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Workflow files to check.")],
    json_out: JsonOpt = False,
) -> None:
    """Check workflow files; print every problem as FILE:LINE:COL: message. Exit 0 or 2."""
    from plait.model import load_workflow

    registry = _registry()
    problems: list[dict[str, Any]] = []
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
            load_workflow(source, str(path), registry.input_models())
        except OSError as exc:
            problems.append({"file": str(path), "line": 0, "col": 0, "message": str(exc)})
        except ValidationError as exc:
            problems.extend(
                {"file": p.file, "line": p.line, "col": p.col, "message": p.message}
                for p in exc.problems
            )
        else:
            if not json_out:
                typer.echo(f"{path}: ok")
    if json_out:
        typer.echo(json.dumps({"valid": not problems, "problems": problems}, indent=2))
    else:
        for p in problems:
            where = f"{p['file']}:{p['line']}:{p['col']}" if p["line"] else p["file"]
            typer.echo(f"{where}: {p['message']}", err=True)
    raise typer.Exit(EXIT_USAGE if problems else EXIT_OK)


@app.command()
def graph(
    file: Annotated[Path, typer.Argument(help="The workflow YAML file.")],
    format: Annotated[str, typer.Option("--format", "-f", help="text, mermaid or dot.")] = "text",
) -> None:
    """Print the step graph of a workflow."""
    from plait.graph import RENDERERS

    if format not in RENDERERS:
        fail(f"--format {format!r}: choose text, mermaid or dot")
    plan, _ = _load(file, _registry())
    typer.echo(RENDERERS[format](plan))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the workflow format (for editors)."""
    from plait.model import workflow_json_schema

    typer.echo(json.dumps(workflow_json_schema(), indent=2))


# -- database ---------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from plait.settings import Settings
    from plait.store import migrate

    settings = Settings.from_env()
    _prepare_home(settings.home, settings.database_url)
    migrate.upgrade(settings.database_url, revision)
    typer.echo(f"store at revision {migrate.current(settings.database_url)}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()] = "-1") -> None:
    """Revert migrations to REVISION (default: one step back)."""
    from plait.settings import Settings
    from plait.store import migrate

    settings = Settings.from_env()
    migrate.downgrade(settings.database_url, revision)
    typer.echo(f"store at revision {migrate.current(settings.database_url) or 'base'}")


def _prepare_home(home: Path, url: str) -> None:
    if url.startswith("sqlite"):
        home.mkdir(parents=True, exist_ok=True)


# -- runs: on a server (--server / PLAIT_SERVER) or in the local store --------------------
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="PLAIT_SERVER",
        show_envvar=True,
        help="Ask this Plait server instead of the local store.",
    ),
]


@runs_app.command("list")
def runs_list(
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    status: Annotated[
        list[str] | None, typer.Option(help="Only runs with this status (repeatable).")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
) -> None:
    """Recent runs, newest first."""
    if server:
        from plait import cli_remote

        cli_remote.runs_list(server, workflow, status or [], namespace, limit, json_out)
        return
    from plait.store.base import RunFilter

    store = _local_store()
    page = store.list_runs(
        RunFilter(workflow=workflow, namespace=namespace, status=tuple(status or ())), None, limit
    )
    if json_out:
        typer.echo(json.dumps([_run_summary(r) for r in page.items], indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("run", "workflow", "status", "created", "duration")
    for r in page.items:
        s = _run_summary(r)
        table.add_row(s["id"], s["workflow"], s["status"], s["created"], s["duration"] or "")
    Console().print(table)


@runs_app.command("show")
def runs_show(run_id: str, json_out: JsonOpt = False, server: ServerOpt = None) -> None:
    """One run with its steps."""
    if server:
        from plait import cli_remote

        cli_remote.runs_show(server, run_id, json_out)
        return
    from plait.errors import NotFound
    from plait.local import build_result, load_source

    store = _local_store()
    try:
        snap = store.load_run(run_id)
    except NotFound:
        fail(f"no run {run_id!r}")
    version = store.get_version(snap.run.version_id or 0)
    plan = load_source(version.source, snap.run.workflow, _registry())
    result = build_result(plan, snap.run, {s.key: s for s in snap.steps})
    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    typer.echo(f"run {result.run_id} {result.workflow_name} {result.status}")
    for step in result.steps:
        extra = f": {step.error}" if step.error else ""
        typer.echo(f"  {step.id:<30} {step.status:<10} attempts={step.attempts}{extra}")


@runs_app.command("logs")
def runs_logs(
    run_id: str,
    step: Annotated[str | None, typer.Option(help="Only this step.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing lines until the run ends.")
    ] = False,
    server: ServerOpt = None,
) -> None:
    """The log lines of a run."""
    if server:
        from plait import cli_remote

        cli_remote.runs_logs(server, run_id, step, follow)
        return
    import time

    from plait.errors import NotFound

    store = _local_store()
    after = 0
    while True:
        lines = store.read_logs(run_id, after_id=after, limit=1000, step=step)
        for line in lines:
            typer.echo(f"{line.step or '-'} | {line.line}")
        after = lines[-1].id if lines else after
        if len(lines) == 1000:
            continue
        try:
            ended = store.load_run(run_id).run.status.terminal
        except NotFound:
            fail(f"no run {run_id!r}")
        if not follow or (ended and not store.read_logs(run_id, after_id=after, limit=1)):
            break
        time.sleep(0.3)


def _local_store() -> Any:
    from plait.local import open_home_store
    from plait.settings import Settings

    return open_home_store(Settings.from_env())


def _run_summary(run: Any) -> dict[str, Any]:
    import datetime as dt

    created = dt.datetime.fromtimestamp(run.created_at).isoformat(timespec="seconds")
    duration = None
    if run.finished_at and run.started_at:
        duration = f"{run.finished_at - run.started_at:.2f}s"
    return {
        "id": run.id,
        "workflow": run.workflow,
        "status": str(run.status),
        "created": created,
        "duration": duration,
    }


#: Global options that take a value (``--log-level debug``): the value is not a command.
_VALUED_OPTIONS = frozenset({"--log-level", "--log-format"})

#: Commands defined in this module: invoking one does not need the others registered.
_LOCAL_COMMANDS = frozenset({"run", "resume", "validate", "graph", "schema"})


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (after the global options)."""
    args = iter(argv)
    for arg in args:
        if arg in _VALUED_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _register_more(argv: list[str] | None = None) -> None:
    """Commands that talk to a server or manage accounts live in their own modules.
    ``plait run`` and the other local commands do without them: importing and
    registering them all would cost a tenth of the one-step run's start-up."""
    if _command_of(sys.argv[1:] if argv is None else argv) in _LOCAL_COMMANDS:
        return
    from plait import cli_accounts, cli_backup, cli_connections, cli_ops, cli_remote, cli_server

    cli_server.register(app)
    cli_accounts.register(app)
    cli_remote.register(app, runs_app)
    cli_ops.register(app, runs_app)
    cli_connections.register(app)
    cli_backup.register(app)
    from plait import cli_alerts

    cli_alerts.register(app)
    from plait import cli_logs

    cli_logs.register(app)
    from plait import cli_insights

    cli_insights.register(app)
    from plait import cli_ai

    cli_ai.register(app)


_register_more()


def main() -> None:
    """Console-script entry point: no traceback reaches the user for expected errors."""
    try:
        app()
    except PlaitError as exc:
        _err().print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
