"""``plait serve``, ``plait api``, ``plait worker``, ``plait scheduler``.

``serve`` runs the API (and UI), a worker and the scheduler in one process on the
embedded store; the other three run one part each, on the same store
(``PLAIT_DATABASE_URL``), so they can be spread over processes and machines.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", "-c", help="Steps this worker runs at once.", min=1)
]
QueueOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--queue",
        "-q",
        help="A queue to take steps from (repeatable; default: the queue 'default'). "
        "A step picks its queue with `queue:`.",
    ),
]
TagsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tags",
        "-t",
        help="Tags of this worker as NAME=VALUE (repeatable, or comma-separated). It runs "
        "only steps whose `runs_on` tags it all has.",
    ),
]
DrainOpt = Annotated[
    float,
    typer.Option(
        "--drain-timeout",
        help="On SIGTERM, seconds to let running steps finish before handing them back "
        "to other workers.",
        min=0,
    ),
]


DeployOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--deploy",
        help="Deploy these workflow files (or every *.yaml in a folder) "
        "at start; unchanged files make no new version.",
    ),
]


def _run(parts: Any, *, banner: bool = True, deploy: list[Path] | None = None) -> None:
    from plait.errors import PlaitError
    from plait.server.bootstrap import ensure_first_admin
    from plait.server.compose import build_services
    from plait.server.main import serve
    from plait.settings import Settings

    settings = Settings.from_env()
    try:
        services = build_services(settings)
    except PlaitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if parts.api:
        _first_admin(services, ensure_first_admin(services, dict(os.environ)))
    if deploy:
        deploy_files(services, deploy)
    if banner:
        _banner(parts, settings)
    from plait.runtime.tuning import tune_gc

    tune_gc()  # after start-up: see plait.runtime.tuning
    try:
        asyncio.run(serve(services, parts, install_signals=True))
    finally:
        services.store.close()


def _first_admin(services: Any, message: str | None) -> None:
    """Say how the first admin came to be; ask for one when a person is at the terminal."""
    if message is None:
        return
    if services.accounts.count_users() == 0 and sys.stdin.isatty():
        from plait.server.bootstrap import create_user

        typer.echo("No users yet: create the first admin (there is no default password).")
        name = typer.prompt("admin user name", default="admin")
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        try:
            create_user(services, name, password, admin=True, created_by="plait serve")
        except Exception as exc:  # a weak password or a bad name: say why, carry on
            typer.echo(f"not created: {exc}", err=True)
        else:
            typer.echo(f"created admin {name!r}; log in at the UI or with `plait login`")
        return
    typer.echo(message, err=True)


def deploy_files(services: Any, paths: list[Path], author: str = "plait serve") -> None:
    """Deploy workflow files, reporting each (problems as FILE:LINE:COL: message)."""
    from plait.errors import PlaitError, ValidationError
    from plait.model import load_workflow
    from plait.server.routes.workflows import check_schedules

    files = [f for p in paths for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
    for path in files:
        try:
            loaded = load_workflow(path.read_text(), str(path), services.registry.input_models())
            plan = loaded.plan
            check_schedules(plan)  # the same refusals as POST /workflows
            version, created = services.server_store.deploy(
                plan.namespace,
                plan.name,
                loaded.source,
                loaded.checksum,
                author,
                description=plan.description,
                labels=plan.labels,
                schedules=plan.triggers,
            )
        except ValidationError as exc:
            for problem in exc.problems:
                where = problem if problem.line else f"{path}: {problem.message}"
                typer.echo(str(where), err=True)
            continue
        except (OSError, PlaitError) as exc:
            typer.echo(f"{path}: not deployed: {exc}", err=True)
            continue
        state = "deployed" if created else "unchanged"
        typer.echo(f"{plan.name} v{version.version} {state}", err=True)


def _banner(parts: Any, settings: Any) -> None:
    what = [p for p in ("api", "worker", "scheduler") if getattr(parts, p)]
    where = f" on http://{parts.host}:{parts.port}" if parts.api else ""
    store = settings.database_url.split("@")[-1]
    print(f"plait {'+'.join(what)}{where} (store: {store})", file=sys.stderr, flush=True)


def routing(
    queues: list[str] | None, tags: list[str] | None
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The ``--queue`` and ``--tags`` options, checked (exit 2 with the reason)."""
    from plait.model.spec import DEFAULT_QUEUE, route_name_problem

    names = tuple(dict.fromkeys(q.strip() for q in queues or [DEFAULT_QUEUE]))
    found: dict[str, str] = {}
    problems = [p for q in names if (p := route_name_problem(q, "queue"))]
    for item in (part for given in tags or [] for part in given.split(",")):
        name, sep, value = item.strip().partition("=")
        name = name.strip()
        problem = route_name_problem(name, "tag") if sep else None
        if not sep:
            problems.append(f"--tags {item.strip()!r}: write tags as NAME=VALUE")
        elif problem:
            problems.append(f"--tags: {problem}")
        elif len(value) > 200:
            problems.append(f"--tags {name}: a value has at most 200 characters")
        else:
            found[name] = value.strip()
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(2)
    return names, found


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: HostOpt = "127.0.0.1",
        port: PortOpt = 8080,
        concurrency: ConcurrencyOpt = 16,
        deploy: DeployOpt = None,
        queue: QueueOpt = None,
        tags: TagsOpt = None,
        drain_timeout: DrainOpt = 30.0,
    ) -> None:
        """API, web UI, scheduler and a worker in one process on the embedded store.

        The first admin is created from PLAIT_ADMIN_USER and PLAIT_ADMIN_PASSWORD on
        first start (or beforehand with `plait users create NAME --admin`).
        """
        from plait.server.main import Parts

        queues, found = routing(queue, tags)
        parts = Parts(
            host=host,
            port=port,
            concurrency=concurrency,
            queues=queues,
            tags=found,
            drain_timeout=drain_timeout,
        )
        _run(parts, deploy=deploy)

    @app.command()
    def api(host: HostOpt = "127.0.0.1", port: PortOpt = 8080, deploy: DeployOpt = None) -> None:
        """Only the HTTP API (and UI); start workers and a scheduler separately."""
        from plait.server.main import Parts

        _run(Parts(host=host, port=port, worker=False, scheduler=False), deploy=deploy)

    @app.command()
    def worker(
        concurrency: ConcurrencyOpt = 16,
        queue: QueueOpt = None,
        tags: TagsOpt = None,
        drain_timeout: DrainOpt = 30.0,
    ) -> None:
        """Only a worker: claims and runs the steps of its queues (and tags) of every
        run in the store. SIGTERM stops it gracefully: it takes nothing new, lets running
        steps finish for --drain-timeout seconds, hands back the rest and exits 0."""
        from plait.server.main import Parts

        queues, found = routing(queue, tags)
        parts = Parts(
            api=False,
            scheduler=False,
            concurrency=concurrency,
            queues=queues,
            tags=found,
            drain_timeout=drain_timeout,
        )
        _run(parts)

    @app.command()
    def scheduler() -> None:
        """Only the scheduler: fires schedules and event triggers, consumes broker triggers."""
        from plait.server.main import Parts

        _run(Parts(api=False, worker=False))

    app.add_typer(workers_app, name="workers")


# -- plait workers ----------------------------------------------------------------------------
workers_app = typer.Typer(
    help="The worker registry: which workers run, what they serve, how busy they are.",
    no_args_is_help=True,
)


@workers_app.command("list")
def workers_list(
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="PLAIT_SERVER",
            show_envvar=True,
            help="The Plait server's URL; without one, the local store ($PLAIT_HOME or "
            "PLAIT_DATABASE_URL) is read.",
        ),
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(help="Only workers in this state: running, draining, stopped or lost."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Registered workers — live ones first, then those stopped or lost in the last
    day — with state, heartbeat age, queues, tags and load."""
    import json

    if state is not None and state not in ("running", "draining", "stopped", "lost"):
        typer.echo(f"error: unknown state {state!r} (running, draining, stopped or lost)", err=True)
        raise typer.Exit(2)
    items = _remote_workers(server, state) if server else _local_workers(state)
    if json_out:
        typer.echo(json.dumps(items, indent=2))
        return
    _print_workers(items)


def _remote_workers(server: str, state: str | None) -> list[dict[str, Any]]:
    from plait.cli_remote import connected

    with connected(server) as client:
        found = client.json("GET", "/api/v1/workers", params={"state": state} if state else None)
    return list(found["items"])


def _local_workers(state: str | None) -> list[dict[str, Any]]:
    import time

    from plait.local import open_home_store
    from plait.server.routes.workers import list_of
    from plait.settings import Settings
    from plait.store.server import ServerStore

    store = open_home_store(Settings.from_env())
    try:
        records = ServerStore(store).list_workers()  # type: ignore[arg-type]
    finally:
        store.close()
    return [w.model_dump(mode="json") for w in list_of(records, time.time(), state).items]


def _print_workers(items: list[dict[str, Any]]) -> None:
    if not items:
        typer.echo("no workers registered")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("worker", "state", "heartbeat", "load", "queues", "tags", "version")
    for w in items:
        tags = ",".join(f"{k}={v}" for k, v in sorted(w["tags"].items()))
        load = f"{w['running']}/{w['concurrency']}"
        table.add_row(
            w["id"], w["state"], f"{w['heartbeat_age']:.0f}s ago", load,
            ",".join(w["queues"]), tags, w["version"],
        )  # fmt: skip
    Console().print(table)
