"""``plait logs search QUERY``: find log lines across runs, in the local store or on a
server (``--server`` / ``PLAIT_SERVER``, then ``GET /api/v1/logs``).

The query language is the server's (see :mod:`plait.ops.logsearch`): words, ``"a
phrase"``, ``prefix*``, ``a OR b``, ``-excluded``. Exit codes: 0 (also when nothing
matched), 1 the search failed, 2 a bad query or option.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Annotated, Any

import typer

from plait.cli_common import error_exit, local_store, remote
from plait.cli_remote import ServerOpt

logs_app = typer.Typer(help="Log lines across runs.", no_args_is_help=True)


@logs_app.command("search")
def search(
    query: Annotated[
        str,
        typer.Argument(
            help='Words (all must appear), "a phrase", prefix*, a OR b, -excluded.',
            show_default=False,
        ),
    ],
    run: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    step: Annotated[str | None, typer.Option(help="Only this step.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only lines since a duration ago (2h, 7d) or a time.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Lines per page.")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="Continue after a page (its next_cursor).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the page as JSON.")] = False,
    server: ServerOpt = None,
) -> None:
    """Search the log lines of every run, newest first.

    Reads the local store, or a server with --server. Secrets are masked before lines
    are stored, so they are neither found nor shown."""
    with remote(server) as client:
        if client is not None:
            given = {"q": query, "run": run, "workflow": workflow, "step": step, "since": since}
            params = {k: v for k, v in {**given, "cursor": cursor}.items() if v is not None}
            page = client.json("GET", "/api/v1/logs", params={**params, "limit": limit})
        else:
            page = _local(query, run, workflow, step, since, cursor, limit)
    if json_out:
        typer.echo(json.dumps(page, indent=2, default=str))
        return
    _print(page)


def _local(
    text: str,
    run: str | None,
    workflow: str | None,
    step: str | None,
    since: str | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    """The same page as the API's, from the store of ``$PLAIT_HOME``."""
    from plait.ops import logsearch
    from plait.store.server_logs import LogFilter, LogSearchStore

    try:
        for what, value in (("--run", run), ("--workflow", workflow), ("--step", step)):
            logsearch.check_text(what, value)
        query = logsearch.parse(text)
        where = LogFilter(
            run_id=run,
            workflow=workflow,
            step=step,
            since=logsearch.parse_since(since, time.time()) if since else None,
            before=logsearch.parse_cursor(cursor),
        )
    except logsearch.QueryError as exc:
        raise error_exit(str(exc)) from None
    with local_store() as store:
        hits = LogSearchStore(store).search_logs(query, where, limit)
    items = [
        {
            "id": h.id,
            "run_id": h.run_id,
            "workflow": h.workflow,
            "namespace": h.namespace,
            "step": h.step,
            "attempt": h.attempt,
            "stream": h.stream,
            "at": dt.datetime.fromtimestamp(h.at, dt.UTC).isoformat(),
            "line": h.line,
            "highlight": [list(r) for r in h.highlight],
        }
        for h in hits
    ]
    return {"items": items, "next_cursor": str(hits[-1].id) if len(hits) == limit else None}


def _print(page: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.text import Text

    out = Console(highlight=False, soft_wrap=True)
    for item in page["items"]:
        when = str(item["at"])[:19].replace("T", " ")
        where = f"{item['workflow']}/{item['step'] or '-'}#{item['attempt']}"
        line = Text(item["line"])
        for start, end in item.get("highlight") or []:
            line.stylize("bold yellow", start, end)
        out.print(Text(f"{when}  {item['run_id']}  {where}  ", style="dim") + line)
    if not page["items"]:
        typer.echo("no matching lines", err=True)
    elif page.get("next_cursor"):
        typer.echo(f"more: --cursor {page['next_cursor']}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(logs_app, name="logs")
