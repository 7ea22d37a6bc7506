"""CLI commands for accounts on the local store: ``plait users …`` and ``plait tokens …``.

They open the store of ``$PLAIT_HOME`` (or ``PLAIT_DATABASE_URL``) directly, as an
operator on the server's machine does to create the first admin; no server needs to
run. Passwords are read from standard input (``--password-stdin``) or prompted for
twice, never taken as an argument: arguments end up in shell history and ``ps``.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from plait.cli_common import error_exit
from plait.errors import ConflictError

if TYPE_CHECKING:
    from plait.server.services import Services

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}

users_app = typer.Typer(help="User accounts in the local store.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens in the local store.", no_args_is_help=True)


def _services() -> Services:
    from plait.server.compose import build_services
    from plait.settings import Settings

    return build_services(Settings.from_env())


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise error_exit("no terminal to prompt on: pass the password with --password-stdin")
    first = typer.prompt("Password", hide_input=True)
    if typer.prompt("Repeat the password", hide_input=True) != first:
        raise error_exit("the passwords differ")
    return str(first)


@users_app.command("create")
def users_create(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="Global admin role.")] = False,
    role: Annotated[str | None, typer.Option(help="viewer, operator, editor or admin.")] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Where the role holds (default: everywhere).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user. Exit 2 on a weak password, a bad name or role, or a taken name."""
    from plait.server.bootstrap import AccountError, create_user

    if admin and role not in (None, "admin"):
        raise error_exit("--admin and --role exclude each other")
    password = _read_password(password_stdin)
    services = _services()
    try:
        create_user(
            services,
            name,
            password,
            role=role,
            admin=admin,
            namespace=namespace,
            created_by="cli",
        )
    except AccountError as exc:
        raise error_exit(str(exc)) from None
    except ConflictError:
        raise error_exit(f"user {name!r} already exists") from None
    finally:
        services.store.close()
    given = "admin" if admin else role
    where = f" in namespace {namespace!r}" if namespace else ""
    typer.echo(f"created user {name!r}" + (f" with role {given!r}{where}" if given else ""))


@users_app.command("list")
def users_list(
    json_out: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Every user with their roles."""
    services = _services()
    try:
        rows = list(_user_rows(services))
    finally:
        services.store.close()
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = " (disabled)" if row["disabled"] else ""
        typer.echo(f"{row['name']:<30} {', '.join(row['roles']) or '-'}{state}")


def _user_rows(services: Services) -> Any:
    accounts = services.accounts
    cursor = None
    while True:
        page = accounts.list_users(cursor, 500)
        for user in page.items:
            roles = [
                b.role if b.namespace is None else f"{b.role}@{b.namespace}"
                for b in accounts.bindings_for("user", user.id)
            ]
            yield {"name": user.name, "disabled": user.disabled, "roles": roles}
        cursor = page.next_cursor
        if cursor is None:
            return


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``90m``, ``1y`` or plain seconds, as seconds."""
    found = re.fullmatch(r"\s*(\d+)\s*([smhdwy]?)\s*", text)
    if not found or int(found.group(1)) == 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m)")
    return int(found.group(1)) * _UNITS[found.group(2) or "s"]


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Option("--user", help="The owner.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="Repeat for several (default: workflows:read, runs:read)."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 30d (default: none).")
    ] = None,
) -> None:
    """Create an API token and print it once: it is stored hashed and cannot be shown
    again."""
    from plait.security.tokens import new_api_token, validate_scopes

    scopes = scope or ["workflows:read", "runs:read"]
    problems = validate_scopes(scopes)
    try:
        lifetime = None if expires is None else parse_duration(expires)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise error_exit("; ".join(problems))
    services = _services()
    try:
        owner = services.accounts.find_user(user)
        if owner is None:
            raise error_exit(f"user {user!r} not found")
        token, token_hash, prefix = new_api_token()
        now = services.clock()
        expires_at = None if lifetime is None else now + lifetime
        services.accounts.create_api_token(
            owner.id, name, token_hash, prefix, scopes, expires_at, now=now
        )
    finally:
        services.store.close()
    typer.echo(token)
    typer.echo(
        f"API token {name!r} for {user!r} ({', '.join(sorted(scopes))}); it is shown only now",
        err=True,
    )


def register(app: typer.Typer, *_: Any) -> None:
    """Add ``plait users`` and ``plait tokens`` to the CLI."""
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
