"""``plait serve``, ``plait api``, ``plait worker``, ``plait scheduler``.

``serve`` runs the API (and UI), a worker and the scheduler in one process on the
embedded store; the other three run one part each, on the same store
(``PLAIT_DATABASE_URL``), so they can be spread over processes and machines.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer

HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", "-c", help="Steps this worker runs at once.", min=1)
]


def _run(parts: Any, *, banner: bool = True) -> None:
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
        message = ensure_first_admin(services, dict(__import__("os").environ))
        if message:
            typer.echo(message, err=True)
    if banner:
        _banner(parts, settings)
    try:
        asyncio.run(serve(services, parts, install_signals=True))
    finally:
        services.store.close()


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
    ) -> None:
        """API, web UI, scheduler and a worker in one process on the embedded store.

        The first admin is created from PLAIT_ADMIN_USER and PLAIT_ADMIN_PASSWORD on
        first start (or beforehand with `plait users create NAME --admin`).
        """
        from plait.server.main import Parts

        _run(Parts(host=host, port=port, concurrency=concurrency))

    @app.command()
    def api(host: HostOpt = "127.0.0.1", port: PortOpt = 8080) -> None:
        """Only the HTTP API (and UI); start workers and a scheduler separately."""
        from plait.server.main import Parts

        _run(Parts(host=host, port=port, worker=False, scheduler=False))

    @app.command()
    def worker(concurrency: ConcurrencyOpt = 16) -> None:
        """Only a worker: claims and runs steps of every run in the store."""
        from plait.server.main import Parts

        _run(Parts(api=False, scheduler=False, concurrency=concurrency))

    @app.command()
    def scheduler() -> None:
        """Only the scheduler: fires schedules and event triggers."""
        from plait.server.main import Parts

        _run(Parts(api=False, worker=False))
