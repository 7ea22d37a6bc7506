"""``plait insights failures|anomalies|suggestions``: patterns in the run history.

On a server with ``--server URL`` / ``PLAIT_SERVER`` (token from ``PLAIT_TOKEN`` or
``plait login``), else on the local store of ``$PLAIT_HOME``, read directly (servers
and workers may keep running on it). ``--json`` prints the API's document, whichever
the source. See docs/ai.md ("Pattern recognition over Plait's own history").

Exit codes: 0 done (also when nothing was found), 1 the store or server failed, 2 bad
input (``--since``, ``--method``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from plait.cli_common import (
    API,
    EXIT_PROBLEM,
    EXIT_USAGE,
    JsonOpt,
    echo_json,
    error_exit,
    local_store,
    remote,
    server_option,
)

if TYPE_CHECKING:
    from plait.model.plan import Plan
    from plait.ops.insights import HistoryFilter, Insights

insights_app = typer.Typer(
    help="Patterns in the run history: failures grouped by cause, runs far slower or "
    "faster than usual, and retry and timeout settings the history suggests. Local "
    "store by default; --server for a server.",
    no_args_is_help=True,
)

ServerOpt = Annotated[
    str | None, server_option("Ask this Plait server instead of reading the local store.")
]
WorkflowOpt = Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", help="Only this namespace.")]
SinceOpt = Annotated[
    str,
    typer.Option(
        "--since", help="Only what happened since a duration ago (24h, 7d) or an ISO 8601 time."
    ),
]


# -- failures ---------------------------------------------------------------------------------
@insights_app.command("failures")
def failures(
    workflow: WorkflowOpt = None,
    namespace: NamespaceOpt = None,
    since: SinceOpt = "7d",
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Clusters at most.")] = 20,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="Local store only: auto (the offline model when the ai extra is "
            "installed), embeddings, or tokens (words only; fast, no model).",
        ),
    ] = "auto",
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Failed step attempts grouped by cause, largest group first.

    Attempts that failed or timed out are compared by their error and the
    last lines of their log, with numbers, ids, paths and times set aside;
    each group shows how many, when first and last seen, and the workflows
    and steps affected."""
    params = _params(workflow, namespace, since) | {"limit": limit}
    if method not in ("auto", "embeddings", "tokens"):
        raise error_exit(f"--method {method!r}: write auto, embeddings or tokens")
    with remote(server) as client:
        if client is not None:
            if method != "auto":
                raise error_exit("--method applies to the local store; a server chooses its own")
            report = client.json("GET", f"{API}/insights/failures", params=params)
        else:
            with _local(method, workflow, namespace) as local:
                start = _since(since, local.now)
                report = _as_json(local.insights.failures(start, local.where, limit))
    if json_out:
        echo_json(report)
        return
    _print_failures(report)


def _print_failures(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    clusters = report["clusters"]
    total = sum(c["count"] for c in clusters)
    typer.echo(f"{len(clusters)} cluster(s) of {total} failed attempt(s) ({report['method']})")
    if not clusters:
        return
    table = Table("count", "first seen", "last seen", "where", "error", show_lines=False)
    for c in clusters:
        where = ", ".join(f"{s['workflow']}/{s['step']}" for s in c["steps"][:3])
        if len(c["steps"]) > 3:
            where += f" (+{len(c['steps']) - 3})"
        table.add_row(
            str(c["count"]), _short(c["first_seen"]), _short(c["last_seen"]), where, c["label"]
        )
    Console(soft_wrap=False).print(table)


# -- anomalies --------------------------------------------------------------------------------
@insights_app.command("anomalies")
def anomalies(
    workflow: WorkflowOpt = None,
    namespace: NamespaceOpt = None,
    since: SinceOpt = "7d",
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Anomalies at most.")] = 50,
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Runs and steps far slower or faster than their history, newest first.

    A run (or step) that succeeded is compared with the last 50 successful
    runs of its workflow (or step) before it: robust z-score of 3.5 or more
    (median and MAD), with at least 10 runs of history and a difference of
    at least 1 s and 20 % of the median."""
    params = _params(workflow, namespace, since) | {"limit": limit}
    with remote(server) as client:
        if client is not None:
            found = client.json("GET", f"{API}/insights/anomalies", params=params)
        else:
            with _local("tokens", workflow, namespace) as local:
                start = _since(since, local.now)
                found = {"anomalies": _as_json(local.insights.anomalies(start, local.where, limit))}
    if json_out:
        echo_json(found)
        return
    _print_anomalies(found["anomalies"])


def _print_anomalies(items: list[dict[str, Any]]) -> None:
    if not items:
        typer.echo("no anomalies")
        return
    from rich.console import Console
    from rich.table import Table

    from plait.model.durations import format_duration

    table = Table("ended", "run", "workflow", "step", "took", "median", "z", "")
    for a in items:
        table.add_row(
            _short(a["at"]),
            a["run_id"],
            a["workflow"],
            a["step"] or "(run)",
            format_duration(a["duration"]),
            format_duration(a["median"]),
            f"{a['score']:+.1f}",
            a["direction"],
        )
    Console(soft_wrap=False).print(table)


# -- suggestions ------------------------------------------------------------------------------
@insights_app.command("suggestions")
def suggestions(
    workflow: WorkflowOpt = None,
    namespace: NamespaceOpt = None,
    server: ServerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Retry policies and timeouts the history suggests, with reason and YAML.

    From the last 200 runs of each workflow that ran in the last 30 days,
    under the settings its steps have now: retries for steps that fail
    transiently or run out of retries, none for steps whose retries never
    help; a timeout of twice the 99th percentile of successful attempts for
    steps without one, with one far above it, or hitting theirs often."""
    params = _params(workflow, namespace, None)
    with remote(server) as client:
        if client is not None:
            found = client.json("GET", f"{API}/insights/suggestions", params=params)
        else:
            with _local("tokens", workflow, namespace) as local:
                made = local.insights.suggestions(local.where, local.plan_of, local.now)
                found = {"suggestions": _as_json(made)}
    if json_out:
        echo_json(found)
        return
    _print_suggestions(found["suggestions"])


def _print_suggestions(items: list[dict[str, Any]]) -> None:
    if not items:
        typer.echo("no suggestions")
        return
    import yaml

    for s in items:
        typer.echo(f"{s['workflow']} / {s['step']}: {s['kind']}")
        typer.echo(f"  {s['reason']}")
        text = yaml.safe_dump(s["suggested"], default_flow_style=False, sort_keys=False)
        typer.echo("  suggested:")
        for line in text.rstrip().splitlines():
            typer.echo(f"    {line}")
        typer.echo("")


# -- shared -----------------------------------------------------------------------------------
def _params(workflow: str | None, namespace: str | None, since: str | None) -> dict[str, Any]:
    given = {"workflow": workflow, "namespace": namespace, "since": since}
    return {k: v for k, v in given.items() if v is not None}


def _since(text: str, now: float) -> float:
    from plait.ops.logsearch import QueryError, parse_since

    try:
        return parse_since(text, now)
    except QueryError as exc:
        raise error_exit(f"--since: {exc}", EXIT_USAGE) from None


@dataclass(frozen=True)
class _Local:
    """What a command reads the local store with."""

    insights: Insights
    where: HistoryFilter
    now: float
    plan_of: Callable[[int], Plan]


@contextmanager
def _local(method: str, workflow: str | None, namespace: str | None) -> Iterator[_Local]:
    """Insights over the local store, with the filter of the command's options; plans
    of the store's workflow versions compiled on demand."""
    from plait.actions.registry import ActionRegistry
    from plait.errors import PlaitError
    from plait.model import load_workflow
    from plait.ops.insights import HistoryFilter, InsightError, Insights, Method
    from plait.store.server import ServerStore

    registry = ActionRegistry()
    plans: dict[int, Plan] = {}
    with local_store() as store:

        def plan_of(version_id: int) -> Plan:
            if version_id not in plans:
                version = store.get_version(version_id)
                name = f"{version.workflow}@v{version.version}"
                plans[version_id] = load_workflow(
                    version.source, name, registry.input_models()
                ).plan
            return plans[version_id]

        insights = Insights(ServerStore(store), method=cast(Method, method))
        where = HistoryFilter(workflow=workflow, namespace=namespace)
        try:
            yield _Local(insights, where, time.time(), plan_of)
        except InsightError as exc:
            raise error_exit(str(exc), EXIT_USAGE) from None
        except PlaitError as exc:
            raise error_exit(str(exc), EXIT_PROBLEM) from None


def _as_json(value: Any) -> Any:
    from plait.ops.insights_records import as_json

    return as_json(value)


def _short(iso_time: str) -> str:
    return str(iso_time)[:16].replace("T", " ")


def register(app: typer.Typer, *_: Any) -> None:
    """Add ``plait insights`` to the CLI."""
    app.add_typer(insights_app, name="insights")
