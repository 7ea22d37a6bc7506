"""``plait alerts list|rules|set|delete``: alerts and alert rules.

On a server with ``--server URL`` / ``PLAIT_SERVER`` (token from ``PLAIT_TOKEN`` or
``plait login``), else on the local store of ``$PLAIT_HOME``, which the scheduler of
``plait serve`` evaluates. ``set`` takes a rules file in the format of
``$PLAIT_HOME/alerts.yaml`` (a mapping of names to rules) and checks every rule before
writing any.

Exit codes: 0 done, 1 a refused operation (a rule of alerts.yaml, a server error), 2
bad input (an invalid rules file, an unknown rule).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from plait.cli_common import (
    API,
    EXIT_PROBLEM,
    EXIT_USAGE,
    JsonOpt,
    audit,
    cli_actor,
    echo_json,
    error_exit,
    iso,
    local_services,
    remote,
    server_option,
)

if TYPE_CHECKING:
    from plait.client import Client

EXIT_REFUSED = EXIT_PROBLEM  # a rule of alerts.yaml, a server error

alerts_app = typer.Typer(
    help="Alerts (pending, firing, resolved) and the rules that raise them. Local store "
    "by default; --server for a server.",
    no_args_is_help=True,
)

ServerOpt = Annotated[
    str | None, server_option("Use this Plait server's API instead of the local store.")
]


# -- list ---------------------------------------------------------------------------------
@alerts_app.command("list")
def alerts_list(
    state: Annotated[
        str | None, typer.Option("--state", help="pending, firing or resolved.")
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule's alerts.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 100,
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Current alerts and recently resolved ones.

    Pending alerts first, then firing ones, then resolved ones, each with its
    severity, since when, and what was observed."""
    if state is not None and state not in ("pending", "firing", "resolved"):
        raise error_exit(f"--state {state!r}: write pending, firing or resolved")
    with remote(server) as client:
        if client is not None:
            items, more = _remote_alerts(client, state, rule, limit)
        else:
            with local_services() as services:
                page = services.server_store.alert_page(state=state, rule=rule, limit=limit)
            items, more = [_alert_json(a) for a in page.items], page.next_cursor is not None
    if json_out:
        echo_json(items)
        return
    if not items:
        typer.echo("no alerts")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("state", "severity", "rule", "key", "since", "summary")
    for a in items:
        since = str(a["since"])[:19].replace("T", " ")
        table.add_row(a["state"], a["severity"], a["rule"], a["key"], since, a["summary"])
    Console().print(table)
    if more:
        typer.echo(f"the first {limit} alerts; raise --limit for more", err=True)


def _remote_alerts(
    client: Client, state: str | None, rule: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` alerts, a page (at most 500) at a time, and whether more follow."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        given = (("state", state), ("rule", rule), ("cursor", cursor))
        params: dict[str, Any] = {"limit": min(500, limit - len(items))}
        params.update({k: v for k, v in given if v})
        page = client.json("GET", f"{API}/alerts", params=params)
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor or len(items) >= limit:
            return items, bool(cursor)


def _alert_json(a: Any) -> dict[str, Any]:
    return {
        "id": a.id,
        "rule": a.rule,
        "key": a.key,
        "state": a.state,
        "severity": a.severity,
        "value": a.value,
        "threshold": a.threshold,
        "summary": a.summary,
        "labels": dict(a.labels),
        "info": dict(a.info),
        "since": iso(a.started_at),
        "resolved_at": iso(a.resolved_at),
        "last_notified_at": iso(a.last_notified_at),
        "notifications": a.notifications,
    }


# -- rules --------------------------------------------------------------------------------
@alerts_app.command("rules")
def alerts_rules(
    name: Annotated[str | None, typer.Argument(help="Show only this rule.")] = None,
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The alert rules, or one rule.

    Rules come from `plait alerts set` or the API (source api) or from
    $PLAIT_HOME/alerts.yaml (source file)."""
    from plait.errors import NotFound

    with remote(server) as client:
        if client is not None:
            if name is not None:
                items = [client.json("GET", f"{API}/alerts/rules/{quote(name, safe='')}")]
            else:
                items = client.json("GET", f"{API}/alerts/rules")["items"]
        else:
            with local_services() as services:
                store = services.server_store
                try:
                    found = [store.get_alert_rule(name)] if name else store.list_alert_rules()
                except NotFound as exc:
                    raise error_exit(str(exc)) from None
            items = [_rule_json(r) for r in found]
    if json_out:
        echo_json(items[0] if name is not None else items)
        return
    if not items:
        typer.echo("no alert rules")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "kind", "severity", "source", "channels", "enabled")
    for r in items:
        spec = r["spec"]
        channels = spec.get("channels") or []
        shown = channels if isinstance(channels, str) else ", ".join(map(str, channels))
        enabled = "yes" if spec.get("enabled") is not False else "no"
        severity = str(spec.get("severity") or "warning")
        table.add_row(r["name"], r["kind"], severity, r["source"], shown, enabled)
    Console().print(table)


def _rule_json(r: Any) -> dict[str, Any]:
    return {
        "name": r.name,
        "kind": r.kind,
        "source": r.source,
        "spec": dict(r.spec),
        "created_at": iso(r.created_at),
        "updated_at": iso(r.updated_at),
        "updated_by": r.updated_by,
    }


# -- set and delete -------------------------------------------------------------------------
@alerts_app.command("set")
def alerts_set(
    file: Annotated[
        str, typer.Argument(help="A rules file (YAML or JSON: names to rules), or - for stdin.")
    ],
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create or replace every rule of a rules file.

    All rules are checked first: if one is invalid (reported as FILE: rule NAME:
    FIELD: message, exit 2), none is written."""
    from plait.ops.alert_rules import RuleError, load_text

    where = "<stdin>" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error_exit(f"{file}: cannot read: {exc}") from None
    try:
        specs = load_text(text, where)
    except RuleError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if not specs:
        raise error_exit(f"{where} holds no rules")
    with remote(server) as client:
        if client is not None:
            results = [_put_remote(client, n, s) for n, s in specs.items()]
        else:
            results = _put_local(specs)
    if json_out:
        echo_json(results)
        return
    for result in results:
        typer.echo(f"{result['name']} {'created' if result['created'] else 'updated'}")


def _put_remote(client: Client, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    response = client.request("PUT", f"{API}/alerts/rules/{quote(name, safe='')}", json=spec)
    return {**response.json(), "created": response.status_code == 201}


def _put_local(specs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    from plait.errors import ConflictError

    results = []
    with local_services() as services:
        for name, spec in specs.items():
            try:
                record, created = services.server_store.put_alert_rule(
                    name, str(spec["kind"]), spec, source="api", actor=cli_actor()
                )
            except ConflictError as exc:
                raise error_exit(str(exc), EXIT_REFUSED) from None
            audit(services, "alerts.rules.set", f"alerts/rules/{name}", {"kind": record.kind})
            results.append({**_rule_json(record), "created": created})
    return results


@alerts_app.command("delete")
def alerts_delete(
    name: Annotated[str, typer.Argument(help="The rule to delete.")],
    server: ServerOpt = None,
) -> None:
    """Delete an alert rule.

    Its open alerts close without notifications. A rule of alerts.yaml is removed
    from that file instead (exit 1)."""
    from plait.errors import ConflictError, NotFound

    with remote(server) as client:
        if client is not None:
            client.request("DELETE", f"{API}/alerts/rules/{quote(name, safe='')}")
        else:
            with local_services() as services:
                try:
                    services.server_store.delete_alert_rule(name, source="api")
                except NotFound as exc:
                    raise error_exit(str(exc)) from None
                except ConflictError as exc:
                    raise error_exit(str(exc), EXIT_REFUSED) from None
                audit(services, "alerts.rules.delete", f"alerts/rules/{name}", {})
    typer.echo(f"{name} deleted")


def register(app: typer.Typer, *_: Any) -> None:
    """Add ``plait alerts`` to the CLI."""
    app.add_typer(alerts_app, name="alerts")
