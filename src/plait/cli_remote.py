"""The server's API from the terminal: ``plait login``, ``deploy``, ``trigger``,
``approve``, ``reject``, and ``plait runs …`` when a server is named (DESIGN §6).

The server is ``--server URL`` or ``PLAIT_SERVER``; the token ``PLAIT_TOKEN`` or the
session ``plait login`` saved (see :mod:`plait.client`). Exit codes as everywhere in
the CLI: 0 done, 1 a run that did not succeed or a refused operation, 2 bad input
(an invalid file or inputs, an unknown run or workflow). Server errors are printed as
the server's message, never as a traceback.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from plait.cli_common import echo_json, server_option

if TYPE_CHECKING:
    from plait.client import Client, ClientError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: statuses that mean the request itself was wrong (exit 2), not that it failed
_BAD_INPUT = frozenset({400, 404, 413, 422})
_ENDED = frozenset({"succeeded", "failed", "cancelled", "timed_out"})

ServerOpt = Annotated[
    str | None, server_option("The Plait server's URL (e.g. http://127.0.0.1:8080).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
CommentOpt = Annotated[str, typer.Option("--comment", "-m", help="Why; kept with the decision.")]


# -- plumbing ------------------------------------------------------------------------------
def _say_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def exit_for(exc: ClientError) -> int:
    return EXIT_USAGE if exc.status in _BAD_INPUT else EXIT_FAILED


def report(exc: ClientError) -> None:
    """The server's message, then each detail it gave (every invalid input …)."""
    _say_error(exc.message)
    details = exc.details if isinstance(exc.details, list) else []
    for d in details:
        if isinstance(d, dict) and d.get("message") and d.get("message") != exc.message:
            typer.echo(f"  {d.get('text') or d['message']}", err=True)
    if exc.status == 401:
        typer.echo("  log in with `plait login` or set PLAIT_TOKEN", err=True)


@contextmanager
def connected(server: str | None) -> Iterator[Client]:
    """A client for the command; any ClientError ends it with its message and code."""
    from plait.client import Client, ClientError

    try:
        with Client.from_env(server) as client:
            yield client
    except ClientError as exc:
        report(exc)
        raise typer.Exit(exit_for(exc)) from None


def result_of(run: dict[str, Any]) -> dict[str, Any]:
    """A run from the API in the shape of ``plait run``'s result file (DESIGN §6)."""
    return {
        "run_id": run["id"],
        "workflow_name": run["workflow"],
        "success": run["status"] == "succeeded",
        "status": run["status"],
        "duration": run.get("duration"),
        "inputs": run.get("inputs", {}),
        "outputs": run.get("outputs"),
        "steps": [
            {
                "id": s["id"],
                "name": s["name"],
                "status": s["status"],
                "attempts": s["attempt"],
                "duration": s.get("duration"),
                "outputs": s.get("outputs"),
                "error": s.get("error"),
            }
            for s in run.get("steps", [])
        ],
        "error": run.get("error"),
    }


def _parse_pairs(pairs: list[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _say_error(f"-i {pair!r}: write inputs as NAME=VALUE")
            raise typer.Exit(EXIT_USAGE)
        given[name.strip()] = value
    return given


# -- login and deploy ----------------------------------------------------------------------
def login(
    server: ServerOpt = None,
    username: Annotated[str | None, typer.Option("--username", "-u")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    otp: Annotated[str | None, typer.Option("--otp", help="A TOTP code, if enabled.")] = None,
) -> None:
    """Log in to a server and keep the session in $PLAIT_HOME/credentials.json (0600)."""
    import getpass

    from plait.client import Client, ClientError, credentials_path, resolve_server, save_session

    url = resolve_server(server)
    if not url:
        _say_error("pass --server URL or set PLAIT_SERVER")
        raise typer.Exit(EXIT_USAGE)
    name = username or typer.prompt("username")
    secret = sys.stdin.readline().rstrip("\r\n") if password_stdin else getpass.getpass()
    try:
        with Client(url) as client:
            tokens = client.login(name, secret, otp)
    except ClientError as exc:
        report(exc)
        raise typer.Exit(EXIT_FAILED) from None
    path = credentials_path()
    save_session(path, url, tokens)
    typer.echo(f"logged in to {url} as {name} (session saved in {path})")


def deploy(
    files: Annotated[list[Path], typer.Argument(help="Workflow YAML files.")],
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Deploy workflow files: prints each name and version, created or unchanged.
    Invalid files are reported as FILE:LINE:COL: message (exit 2)."""
    from plait.client import ClientError

    results: list[dict[str, Any]] = []
    code = EXIT_OK
    with connected(server) as client:
        for path in files:
            try:
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                _say_error(f"{path}: cannot read: {exc}")
                code = EXIT_USAGE
                continue
            try:
                results.append(client.deploy(source))
            except ClientError as exc:
                if exc.status not in (400, 422):
                    raise
                _print_problems(path, exc)
                code = EXIT_USAGE
                continue
            if not json_out:
                typer.echo(_deployed_line(results[-1]))
    if json_out:
        echo_json(results)
    raise typer.Exit(code)


def _deployed_line(result: dict[str, Any]) -> str:
    name = result.get("name", "?")
    version = result.get("version", "?")
    created = result.get("created", True)
    return f"{name} v{version} {'created' if created else 'unchanged'}"


def _print_problems(path: Path, exc: ClientError) -> None:
    details = exc.details if isinstance(exc.details, list) else []
    problems = [d for d in details if isinstance(d, dict) and d.get("message")]
    if not problems:
        typer.echo(f"{path}: {exc.message}", err=True)
    for d in problems:
        line, col = d.get("line") or 0, d.get("col") or 0
        where = f"{path}:{line}:{col}" if line else str(path)
        typer.echo(f"{where}: {d['message']}", err=True)


# -- trigger and decisions -----------------------------------------------------------------
def trigger(
    name: Annotated[str, typer.Argument(help="The deployed workflow's name.")],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="An input as NAME=VALUE.")
    ] = None,
    server: ServerOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run until it ends.")] = False,
    json_out: JsonOpt = False,
    key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Start at most one run per key.")
    ] = None,
) -> None:
    """Start a run of a deployed workflow; prints `run <id>`. With --wait, shows its log
    and exits 0 if it succeeded, 1 if not."""
    values = _parse_pairs(inputs or [])
    with connected(server) as client:
        run = client.start_run(name, values, coerce=True, idempotency_key=key)
        out = sys.stderr if json_out else sys.stdout
        print(f"run {run['id']}", file=out, flush=True)
        if not wait:
            if json_out:
                echo_json(result_of(run))
            return
        if not json_out:
            _stream(client, run["id"], None, typer.echo)
        final = _wait_ended(client, run["id"])
    _finish(final, json_out)


def _wait_ended(client: Client, run_id: str) -> dict[str, Any]:
    """The run once it has ended (the log stream may end a moment before the API
    shows it, or not be followed at all with --json)."""
    while True:
        run = client.run(run_id)
        if run["status"] in _ENDED:
            return run
        time.sleep(0.3)


def _finish(run: dict[str, Any], json_out: bool) -> None:
    if json_out:
        echo_json(result_of(run))
    else:
        typer.echo(
            f"run {run['id']} {run['status']}"
            + (f" in {run['duration']:.2f}s" if run.get("duration") else "")
        )
        for step in run.get("steps", []):
            if step["status"] in ("failed", "timed_out") and step.get("error"):
                typer.echo(f"  ✗ {step['id']}: {step['error']}", err=True)
    raise typer.Exit(EXIT_OK if run["status"] == "succeeded" else EXIT_FAILED)


def _decide(approve: bool) -> Callable[..., None]:
    verb = "approved" if approve else "rejected"

    def decide(
        run_id: Annotated[str, typer.Argument(help="The run.")],
        step: Annotated[str, typer.Argument(help="The waiting approval step.")],
        comment: CommentOpt = "",
        server: ServerOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        if not server:
            run = _local_decide(run_id, step, approve, comment)
        else:
            with connected(server) as client:
                run = client.decide(run_id, step, approve, comment)
        if json_out:
            echo_json(run)
        else:
            typer.echo(f"{step} {verb}; run {run_id} is {run['status']}")

    decide.__doc__ = (
        f"Decide a waiting approval step: it is {verb}. With a server (--server or "
        "PLAIT_SERVER) through its API; otherwise in the local store, where the "
        "`plait run` that waits for it continues within a second."
    )
    return decide


def _local_service() -> Any:
    from plait.actions.registry import ActionRegistry
    from plait.local import open_home_store
    from plait.runtime.service import RunService
    from plait.settings import Settings, env_secrets

    store = open_home_store(Settings.from_env())
    secrets = env_secrets()
    return RunService(
        store,
        ActionRegistry(),
        secrets=lambda ns, names: {n: secrets[n] for n in names if n in secrets},
    )


def _local_decide(run_id: str, step: str, approve: bool, comment: str) -> dict[str, Any]:
    """Decide an approval of a run in the local store (no server)."""
    import getpass

    from plait.engine.api import Outcome
    from plait.errors import NotFound
    from plait.runtime.service import DecisionError

    who = getpass.getuser()
    if approve:
        outcome = Outcome(
            "succeeded", outputs={"approved": True, "approver": who, "comment": comment}
        )
    else:
        outcome = Outcome(
            "failed",
            outputs={"approved": False, "outcome": "rejected"},
            error=f"rejected by {who}: {comment}".rstrip(": "),
            retryable=False,
        )
    service = _local_service()
    try:
        run = service.finish_waiting(run_id, step, outcome, expect_uses="approval")
    except (DecisionError, NotFound) as exc:
        _say_error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    finally:
        service.store.close()
    return {"id": run.id, "status": str(run.status)}


# -- runs on a server ----------------------------------------------------------------------
def runs_list(
    server: str,
    workflow: str | None,
    status: list[str],
    namespace: str | None,
    limit: int,
    json_out: bool,
) -> None:
    with connected(server) as client:
        page = client.runs(workflow=workflow, status=status, namespace=namespace, limit=limit)
    items = page["items"]
    if json_out:
        echo_json(items)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("run", "workflow", "status", "created", "duration")
    for r in items:
        duration = f"{r['duration']:.2f}s" if r.get("duration") is not None else ""
        table.add_row(r["id"], r["workflow"], r["status"], str(r["created_at"])[:19], duration)
    Console().print(table)


def runs_show(server: str, run_id: str, json_out: bool) -> None:
    with connected(server) as client:
        run = client.run(run_id)
    if json_out:
        echo_json(result_of(run))
        return
    typer.echo(f"run {run['id']} {run['workflow']} v{run.get('version')} {run['status']}")
    for s in run["steps"]:
        extra = (
            f": {s['error']}"
            if s.get("error")
            else (f" ({s['reason']})" if s.get("reason") and s["status"] not in _ENDED else "")
        )
        typer.echo(f"  {s['id']:<30} {s['status']:<10} attempts={s['attempt']}{extra}")


def runs_logs(server: str, run_id: str, step: str | None, follow: bool) -> None:
    with connected(server) as client:
        if follow:
            _stream(client, run_id, step, typer.echo)
            return
        after = 0
        while True:
            page = client.logs(run_id, after=after, step=step)
            for line in page["items"]:
                typer.echo(f"{line['step'] or '-'} | {line['line']}")
            after = page["next_after"]
            if not page["more"]:
                break


def _stream(client: Client, run_id: str, step: str | None, echo: Callable[[str], None]) -> None:
    for name, data in client.follow_logs(run_id, step=step):
        if name == "log":
            echo(f"{data.get('step') or '-'} | {data.get('line', '')}")
        elif name == "end":
            typer.echo(f"run {run_id} {data.get('status')}", err=True)


def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cancel a run: running steps are killed, `finally` steps run. Without a server the
    run is cancelled in the local store; the `plait run` driving it stops within a
    second."""
    if not server:
        from plait.errors import NotFound
        from plait.runtime.service import DecisionError

        service = _local_service()
        try:
            state = service.cancel(run_id, "cancelled with plait runs cancel")
        except (NotFound, DecisionError) as exc:
            _say_error(str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        finally:
            service.store.close()
        typer.echo(f"run {run_id} {'cancelled' if state.status.terminal else 'cancelling'}")
        return
    with connected(server) as client:
        run = client.cancel(run_id)
    if json_out:
        echo_json(run)
    else:
        typer.echo(f"run {run_id} {'cancelled' if run['status'] in _ENDED else 'cancelling'}")


def runs_retry(
    run_id: Annotated[str, typer.Argument(help="The failed run.")],
    server: ServerOpt = None,
    current: Annotated[
        bool, typer.Option("--current", help="Use the workflow's current version.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run until it ends.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Re-run a failed run from its failures on the server; succeeded steps keep their
    outputs. Runs on the original version unless --current."""
    if not server:
        _say_error("retrying needs a server: pass --server URL or set PLAIT_SERVER")
        raise typer.Exit(EXIT_USAGE)
    with connected(server) as client:
        run = client.retry(run_id, "current" if current else "original")
        if not wait:
            if json_out:
                echo_json(result_of(run))
            else:
                typer.echo(f"run {run_id} retried (attempt {run['attempt']})")
            return
        if not json_out:
            _stream(client, run_id, None, typer.echo)
        final = _wait_ended(client, run_id)
    _finish(final, json_out)


def register(app: typer.Typer, runs_app: typer.Typer) -> None:
    """Add ``login``, ``deploy``, ``trigger``, ``approve``, ``reject`` and
    ``runs cancel|retry``; ``runs list|show|logs`` (in :mod:`plait.cli`) call the
    functions above when a server is named."""
    app.command()(login)
    app.command()(deploy)
    app.command()(trigger)
    app.command("approve")(_decide(True))
    app.command("reject")(_decide(False))
    runs_app.command("cancel")(runs_cancel)
    runs_app.command("retry")(runs_retry)
