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


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: HostOpt = "127.0.0.1",
        port: PortOpt = 8080,
        concurrency: ConcurrencyOpt = 16,
        deploy: DeployOpt = None,
    ) -> None:
        """API, web UI, scheduler and a worker in one process on the embedded store.

        The first admin is created from PLAIT_ADMIN_USER and PLAIT_ADMIN_PASSWORD on
        first start (or beforehand with `plait users create NAME --admin`).
        """
        from plait.server.main import Parts

        _run(Parts(host=host, port=port, concurrency=concurrency), deploy=deploy)

    @app.command()
    def api(host: HostOpt = "127.0.0.1", port: PortOpt = 8080, deploy: DeployOpt = None) -> None:
        """Only the HTTP API (and UI); start workers and a scheduler separately."""
        from plait.server.main import Parts

        _run(Parts(host=host, port=port, worker=False, scheduler=False), deploy=deploy)

    @app.command()
    def worker(concurrency: ConcurrencyOpt = 16) -> None:
        """Only a worker: claims and runs steps of every run in the store."""
        from plait.server.main import Parts

        _run(Parts(api=False, scheduler=False, concurrency=concurrency))

    @app.command()
    def scheduler() -> None:
        """Only the scheduler: fires schedules and event triggers, consumes broker triggers."""
        from plait.server.main import Parts

        _run(Parts(api=False, worker=False))
