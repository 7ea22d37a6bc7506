"""``plait connections …`` and ``plait actions …``.

Connections are managed on the local store of ``$PLAIT_HOME`` (what ``plait run``
uses), or on a server with ``--server URL`` / ``PLAIT_SERVER`` (token from
``PLAIT_TOKEN`` or ``plait login``). Credentials are given with ``--secret FIELD`` and
read from standard input (or a hidden prompt), so they never land in shell history;
they are never printed back. ``plait actions`` lists the actions of the local
installation: built-ins and installed plugin packages.

Exit codes: 0 done, 1 a connection test that failed or a refused operation, 2 bad
input (an unknown type, an invalid config, a missing connection).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from plait.cli_common import (
    API,
    EXIT_PROBLEM,
    JsonOpt,
    audit,
    check_namespace,
    cli_actor,
    error_exit,
    local_services,
    remote,
    server_option,
)

if TYPE_CHECKING:
    from plait.actions.registry import ActionRegistry
    from plait.client import Client
    from plait.store.server_connections import ConnectionRecord

connections_app = typer.Typer(
    help="Connections: named, typed credential sets that steps use by name "
    "(`with: {connection: NAME}`). Local store by default; --server for a server.",
    no_args_is_help=True,
)
actions_app = typer.Typer(
    help="Actions that steps can use (`uses: NAME`): built-ins and installed plugins.",
    no_args_is_help=True,
)

ServerOpt = Annotated[
    str | None,
    server_option("Manage the connections of this Plait server instead of the local store."),
]
NamespaceArg = Annotated[
    str, typer.Argument(help="The namespace, or '*' (quoted) for every namespace.")
]
NameArg = Annotated[str, typer.Argument(help="The connection's name (what steps write).")]


# -- helpers ----------------------------------------------------------------------------
def _check_names(namespace: str, name: str | None = None) -> None:
    from plait.actions.connection_admin import NAME

    check_namespace(namespace)
    if name is not None and not NAME.match(name):
        raise error_exit(
            f"{name!r} is not a connection name (letters, digits, _, - and ., "
            "starting with a letter or digit)"
        )


def _path(namespace: str, name: str, suffix: str = "") -> str:
    from urllib.parse import quote

    return f"{API}/connections/{quote(namespace, safe='*')}/{quote(name)}{suffix}"


def _load_file(path: Path) -> dict[str, Any]:
    """A config file: JSON or YAML, either the fields themselves (``type`` may be one
    of them) or the API's body ``{"type": ..., "config": {...}}``."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise error_exit(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise error_exit(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise error_exit(f"{path} must hold a mapping of config fields")
    if set(data) <= {"type", "config"} and isinstance(data.get("config"), dict):
        return {**data["config"], **({"type": data["type"]} if "type" in data else {})}
    return data


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise error_exit(f"--set {pair!r}: write it as KEY=VALUE")
        given[key.strip()] = value
    return given


def _read_secrets(fields: list[str]) -> dict[str, str]:
    """Each ``--secret`` field's value: a hidden prompt on a terminal; otherwise
    standard input — all of it for one field, one line per field for several."""
    if not fields:
        return {}
    if sys.stdin.isatty():
        return {f: str(typer.prompt(f, hide_input=True)) for f in fields}
    text = sys.stdin.read()
    if len(fields) == 1:
        return {fields[0]: text[:-1] if text.endswith("\n") else text}
    lines = text.splitlines()
    if len(lines) < len(fields):
        raise error_exit(
            f"--secret given {len(fields)} times but standard input has {len(lines)} "
            "line(s): write one value per line, in the order of the --secret options"
        )
    return dict(zip(fields, lines, strict=False))


def _warn_plain_secrets(type_name: str, sets: dict[str, str]) -> None:
    from plait.actions.connection_admin import load_type
    from plait.actions.connections import default_types
    from plait.errors import PlaitError

    try:
        secret = set(load_type(default_types(), type_name).secret_fields())
    except PlaitError:
        return
    for key in sorted(secret & set(sets)):
        typer.echo(
            f"warning: --set {key}=… puts a credential in shell history and `ps`; "
            f"prefer --secret {key} (read from standard input)",
            err=True,
        )


def _record_json(record: ConnectionRecord) -> dict[str, Any]:
    """A stored connection in the API's shape."""
    from plait.actions.connection_admin import secret_status
    from plait.actions.connections import default_types

    return {
        "namespace": record.namespace,
        "name": record.name,
        "type": record.type,
        "config": dict(record.config),
        "secrets": secret_status(default_types(), record.type, record.secret_fields),
        "created_at": dt.datetime.fromtimestamp(record.created_at, dt.UTC).isoformat(),
        "updated_at": dt.datetime.fromtimestamp(record.updated_at, dt.UTC).isoformat(),
        "created_by": record.created_by,
        "updated_by": record.updated_by,
    }


def _print_connection(c: dict[str, Any]) -> None:
    typer.echo(f"{c['namespace']}/{c['name']} ({c['type']})")
    for key, value in c["config"].items():
        shown = value if isinstance(value, str) else json.dumps(value)
        typer.echo(f"  {key}: {shown}")
    for key, is_set in c["secrets"].items():
        typer.echo(f"  {key}: {'(set)' if is_set else '(not set)'}")
    typer.echo(f"  updated {str(c['updated_at'])[:19]} by {c['updated_by'] or '-'}")


# -- connections ------------------------------------------------------------------------
@connections_app.command("set")
def connections_set(
    namespace: NamespaceArg,
    name: NameArg,
    type_name: Annotated[
        str | None,
        typer.Option("--type", "-t", help="The connection type (see `plait connections types`)."),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="A config field as KEY=VALUE (repeatable)."),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", help="Config fields from a JSON or YAML file."),
    ] = None,
    secrets: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help="A credential field whose value is read from standard input (one line "
            "per field when repeated) or a hidden prompt.",
        ),
    ] = None,
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create or replace a connection.

    The config is validated by its type; credentials are stored encrypted. A credential
    not given keeps its stored value.

    Example: echo "$PGPASSWORD" | plait connections set ops warehouse --type postgres
    --set host=db.internal --set user=app --set database=sales --secret password"""
    _check_names(namespace, name)
    config: dict[str, Any] = _load_file(from_file) if from_file else {}
    type_name = type_name or config.pop("type", None)
    config.pop("type", None)
    if not isinstance(type_name, str) or not type_name:
        raise error_exit("give the connection type with --type (or a `type` key in --from-file)")
    given = _parse_sets(sets or [])
    _warn_plain_secrets(type_name, given)
    config.update(given)
    config.update(_read_secrets(secrets or []))
    with remote(server) as client:
        if client is not None:
            saved = _put_remote(client, namespace, name, type_name, config)
        else:
            saved = _put_local(namespace, name, type_name, config)
    if json_out:
        typer.echo(json.dumps(saved, indent=2, default=str))
        return
    verb = "created" if saved.pop("_created", False) else "updated"
    typer.echo(f"{verb} connection {namespace}/{name} ({type_name})")


def _put_remote(
    client: Client, namespace: str, name: str, type_name: str, config: dict[str, Any]
) -> dict[str, Any]:
    response = client.request(
        "PUT", _path(namespace, name), json={"type": type_name, "config": config}
    )
    saved: dict[str, Any] = response.json()
    saved["_created"] = response.status_code == 201
    return saved


def _put_local(namespace: str, name: str, type_name: str, config: dict[str, Any]) -> dict[str, Any]:
    from plait.actions.connection_admin import prepare
    from plait.actions.connections import default_types
    from plait.errors import NotFound, PlaitError

    with local_services() as services:
        store = services.server_store
        try:
            stored = store.unsealed_connection(namespace, name)
        except NotFound:
            stored = None
        try:
            public, secret = prepare(
                default_types(),
                type_name,
                config,
                stored.record.type if stored else None,
                stored.secrets if stored else None,
            )
        except PlaitError as exc:
            raise error_exit(str(exc)) from None
        created = store.put_connection(namespace, name, type_name, public, secret, cli_actor())
        action = "connections.create" if created else "connections.update"
        audit(services, action, f"connections/{namespace}/{name}", {"type": type_name})
        saved = _record_json(store.get_connection(namespace, name))
    saved["_created"] = created
    return saved


@connections_app.command("list")
def connections_list(
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Connections with their type and which credentials are set (never a value)."""
    if namespace is not None:
        _check_names(namespace)
    rows = list(_rows(server, namespace))
    if json_out:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for c in rows:
        set_ = ", ".join(k for k, v in c["secrets"].items() if v) or "no credentials"
        where = f"{c['namespace']}/{c['name']}"
        typer.echo(f"{where:<40} {c['type']:<10} {set_}")


def _rows(server: str | None, namespace: str | None) -> Iterator[dict[str, Any]]:
    with remote(server) as client:
        if client is not None:
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 500}
                params.update(
                    {k: v for k, v in (("namespace", namespace), ("cursor", cursor)) if v}
                )
                page = client.json("GET", f"{API}/connections", params=params)
                yield from page["items"]
                cursor = page.get("next_cursor")
                if not cursor:
                    return
    with local_services() as services:
        cursor = None
        while True:
            found = services.server_store.list_connections(namespace, cursor=cursor, limit=500)
            yield from (_record_json(r) for r in found.items)
            cursor = found.next_cursor
            if cursor is None:
                return


@connections_app.command("show")
def connections_show(
    namespace: NamespaceArg, name: NameArg, server: ServerOpt = None, json_out: JsonOpt = False
) -> None:
    """One connection: its type, public config and which credentials are set."""
    from plait.errors import NotFound

    _check_names(namespace, name)
    with remote(server) as client:
        if client is not None:
            found = client.json("GET", _path(namespace, name))
        else:
            with local_services() as services:
                try:
                    found = _record_json(services.server_store.get_connection(namespace, name))
                except NotFound as exc:
                    raise error_exit(str(exc)) from None
    if json_out:
        typer.echo(json.dumps(found, indent=2, default=str))
    else:
        _print_connection(found)


@connections_app.command("delete")
def connections_delete(namespace: NamespaceArg, name: NameArg, server: ServerOpt = None) -> None:
    """Delete a connection and its credentials. Exit 2 if there is none."""
    from plait.errors import NotFound

    _check_names(namespace, name)
    with remote(server) as client:
        if client is not None:
            client.request("DELETE", _path(namespace, name))
        else:
            with local_services() as services:
                try:
                    services.server_store.delete_connection(namespace, name)
                except NotFound as exc:
                    raise error_exit(str(exc)) from None
                audit(services, "connections.delete", f"connections/{namespace}/{name}", {})
    typer.echo(f"deleted connection {namespace}/{name}")


@connections_app.command("test")
def connections_test(
    namespace: NamespaceArg,
    name: NameArg,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for an answer (local store).")
    ] = 10.0,
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Test a connection: reach the other side and say what answered.

    Exit 0 when it works, 1 when it does not (the reason is printed, credentials
    masked)."""
    _check_names(namespace, name)
    with remote(server) as client:
        if client is not None:
            result = client.json("POST", _path(namespace, name, "/test"))
        else:
            result = _test_local(namespace, name, timeout)
    if json_out:
        typer.echo(json.dumps(result))
    elif result["ok"]:
        typer.echo(f"ok: {result['message']}")
    else:
        typer.echo(f"failed: {result['message']}", err=True)
    if not result["ok"]:
        raise typer.Exit(EXIT_PROBLEM)


def _test_local(namespace: str, name: str, timeout: float) -> dict[str, Any]:
    from plait.actions.connection_admin import check_connection
    from plait.actions.connections import default_types
    from plait.errors import NotFound

    with local_services() as services:
        try:
            stored = services.server_store.unsealed_connection(namespace, name)
        except NotFound as exc:
            raise error_exit(str(exc)) from None
        record = stored.record
        result = asyncio.run(
            check_connection(
                default_types(), record.type, record.config, stored.secrets, within=timeout
            )
        )
        details = {"type": record.type, "ok": result.ok}
        audit(services, "connections.test", f"connections/{namespace}/{name}", details)
    return {"ok": result.ok, "message": result.message}


@connections_app.command("types")
def connections_types(server: ServerOpt = None, json_out: JsonOpt = False) -> None:
    """The connection types and their fields.

    Which fields are credentials; with --json, each type's JSON Schema."""
    with remote(server) as client:
        if client is not None:
            listed = client.json("GET", f"{API}/connection-types")
            items, broken = listed["items"], listed.get("unavailable", {})
        else:
            from plait.actions.connection_admin import describe_types
            from plait.actions.connections import default_types

            items, broken = describe_types(default_types())
    if json_out:
        typer.echo(json.dumps({"items": items, "unavailable": broken}, indent=2))
        return
    for t in items:
        secret = ", ".join(t["secret_fields"]) or "-"
        fields = ", ".join(t["schema"].get("properties", {}))
        typer.echo(f"{t['name']:<10} {t['description']}")
        typer.echo(f"{'':<10} fields: {fields or '-'}; credentials: {secret}")
    for name, why in broken.items():
        typer.echo(f"unavailable: {name}: {why}", err=True)


# -- actions ----------------------------------------------------------------------------
@actions_app.command("list")
def actions_list(json_out: JsonOpt = False) -> None:
    """Every action of this installation: name, version, where it comes from."""
    from plait.actions.registry import ActionRegistry

    registry = ActionRegistry()
    items = _describe(registry)
    if json_out:
        typer.echo(json.dumps({"items": items}, indent=2))
    else:
        for a in items:
            first = (a["description"] or "").splitlines()[0] if a["description"] else ""
            typer.echo(f"{a['name']:<22} {a['version']:<6} {a['source']:<22} {first}")
    for name, why in registry.broken.items():
        typer.echo(f"warning: action {name!r} failed to load: {why}", err=True)


@actions_app.command("show")
def actions_show(
    name: Annotated[str, typer.Argument(help="The action's name, as in `uses: NAME`.")],
    json_out: JsonOpt = False,
) -> None:
    """One action: description, its `with:` fields and outputs. Exit 2 if unknown."""
    from plait.actions.registry import ActionRegistry
    from plait.errors import UnknownAction

    registry = ActionRegistry()
    try:
        registry.get_class(name)
    except UnknownAction as exc:
        raise error_exit(str(exc)) from None
    found = next((a for a in _describe(registry) if a["name"] == name), None)
    if found is None:  # pragma: no cover - get_class succeeded, so describe lists it
        raise error_exit(f"unknown action {name!r}")
    if json_out:
        typer.echo(json.dumps(found, indent=2))
        return
    typer.echo(f"{found['name']} {found['version']} ({found['source']})")
    if found["description"]:
        typer.echo(f"  {found['description']}")
    _print_fields("with", found["input_schema"])
    if found["output_schema"]:
        _print_fields("outputs", found["output_schema"])


def _describe(registry: ActionRegistry) -> list[dict[str, Any]]:
    """Every action described; a built-in that cannot be imported is reported, not
    shown as a traceback."""
    try:
        return registry.describe()
    except Exception as exc:
        raise error_exit(f"cannot describe the actions: {type(exc).__name__}: {exc}", 1) from None


def _print_fields(title: str, schema: dict[str, Any]) -> None:
    required = set(schema.get("required", []))
    properties: dict[str, Any] = schema.get("properties", {})
    typer.echo(f"{title}:" if properties else f"{title}: (none)")
    for key, prop in properties.items():
        kind = prop.get("type") or " | ".join(
            str(p.get("type", "?")) for p in prop.get("anyOf", []) if isinstance(p, dict)
        )
        if "enum" in prop:
            kind = "one of " + ", ".join(json.dumps(v) for v in prop["enum"])
        mark = " (required)" if key in required else ""
        if "default" in prop and prop["default"] is not None:
            mark += f" (default {json.dumps(prop['default'])})"
        text = f" — {prop['description']}" if prop.get("description") else ""
        typer.echo(f"  {key}: {kind or 'any'}{mark}{text}")


def register(app: typer.Typer, *_: Any) -> None:
    """Add ``plait connections`` and ``plait actions`` to the CLI."""
    app.add_typer(connections_app, name="connections")
    app.add_typer(actions_app, name="actions")
