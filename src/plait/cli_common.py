"""What the commands that work on a server or on the local store share.

A command is remote when ``--server URL`` or ``PLAIT_SERVER`` names a server (token
from ``PLAIT_TOKEN`` or ``plait login``): :func:`remote` then gives a client, whose
errors end the command with the server's message. Otherwise it opens the store of
``$PLAIT_HOME`` (or ``PLAIT_DATABASE_URL``) directly — :func:`local_services` for the
commands that need the services (keys, audit log), :func:`local_store` for those that
only read — while servers and workers keep running on it. What a command changes
locally is recorded in the audit log as done by ``cli:<user>`` (:func:`audit`).

Errors are said as ``error: message`` on standard error; exit codes as everywhere in
the CLI: 1 a refused operation or a failed one, 2 bad input.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from plait.client import Client
    from plait.server.services import Services
    from plait.store.sql import SqlStore

log = logging.getLogger(__name__)

EXIT_PROBLEM, EXIT_USAGE = 1, 2
API = "/api/v1"

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output.")]


def server_option(help: str) -> Any:
    """The ``--server`` option (``PLAIT_SERVER`` too), with the command's ``help``."""
    return typer.Option("--server", envvar="PLAIT_SERVER", show_envvar=True, help=help)


def error_exit(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Say ``error: message`` on standard error; returns the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def iso(value: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC, as the API writes times."""
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC).isoformat()


def check_namespace(namespace: str) -> None:
    """Refuse (exit 2) what is not a namespace name; ``*`` is the global namespace."""
    from plait.server.routes.secrets import NAMESPACE
    from plait.store.server_records import GLOBAL_NAMESPACE

    if namespace != GLOBAL_NAMESPACE and not NAMESPACE.match(namespace):
        raise error_exit(f"{namespace!r} is not a namespace (lower-case letters, digits, - and _)")


@contextmanager
def remote(server: str | None) -> Iterator[Client | None]:
    """A connected client for ``server`` (or ``PLAIT_SERVER``), or None for the local
    store. A client error inside the block ends the command with its message."""
    from plait.client import resolve_server

    if not resolve_server(server):
        yield None
        return
    from plait.cli_remote import connected

    with connected(server) as client:
        yield client


@contextmanager
def local_services() -> Iterator[Services]:
    """The services over the local store, closed after the block; a store that cannot
    be opened ends the command (exit 1)."""
    from plait.errors import PlaitError
    from plait.server.compose import build_services
    from plait.settings import Settings

    try:
        services = build_services(Settings.from_env())
    except PlaitError as exc:
        raise error_exit(str(exc), EXIT_PROBLEM) from None
    try:
        yield services
    finally:
        services.store.close()


@contextmanager
def local_store() -> Iterator[SqlStore]:
    """The local store alone, closed after the block; a store error — opening it or
    inside the block — ends the command with its message (exit 1)."""
    from plait.errors import PlaitError
    from plait.settings import Settings
    from plait.store.migrate import open_store

    settings = Settings.from_env()
    try:
        if settings.database_url.startswith("sqlite"):
            settings.home.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.database_url)
        try:
            yield store
        finally:
            store.close()
    except PlaitError as exc:
        raise error_exit(str(exc), EXIT_PROBLEM) from None


def cli_actor() -> str:
    """Who the audit log says did a local operation: ``cli:<user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def audit(services: Services, action: str, resource: str, details: dict[str, Any]) -> None:
    """An audit entry for an operation done from the command line (best effort: the
    operation already happened, so a failure to record it is logged, not raised)."""
    from plait.errors import PlaitError
    from plait.security.audit import AuditEvent

    event = AuditEvent(
        at=services.clock(),
        actor=cli_actor(),
        action=action,
        resource=resource,
        outcome="success",
        details=details,
    )
    try:
        services.accounts.append_audit(event)
    except PlaitError as exc:
        log.warning("could not record %s in the audit log: %s", action, exc)
