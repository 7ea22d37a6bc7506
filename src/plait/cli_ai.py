"""``plait draft``: a workflow drafted from a sentence by an LLM connection.

Without ``--server`` the connection comes from the local store of ``$PLAIT_HOME`` (the
namespace's, then the global ones) or ``PLAIT_CONNECTION_<NAME>``, like ``plait run``;
with ``--server URL`` (or ``PLAIT_SERVER``) the server drafts with its own connection
(``POST /api/v1/drafts``). Nothing is deployed.

Exit codes: 0 a valid draft, 1 a draft that still has errors (each printed as
``draft.yaml:LINE:COL: message``) or a provider that failed, 2 bad input (an empty or
too long prompt, an unknown connection or one that is not an ``llm`` one).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from plait.actions.connections import Connection

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
#: seconds the server is given to draft (two model calls, each with its retries)
SERVER_TIMEOUT = 600.0

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="PLAIT_SERVER",
        show_envvar=True,
        help="Draft on this Plait server, with its connection (default: locally).",
    ),
]


def register(app: typer.Typer, *_: Any) -> None:
    """Add ``plait draft`` to the CLI."""
    app.command("draft")(draft)


def draft(
    prompt: Annotated[str, typer.Argument(help="What the workflow should do (quote it).")],
    connection: Annotated[
        str,
        typer.Option(
            "--connection",
            "-c",
            envvar="PLAIT_DRAFT_CONNECTION",
            show_envvar=True,
            help="The llm connection to draft with.",
        ),
    ] = "llm",
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="A model instead of the connection's.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the YAML to this file instead of stdout."),
    ] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="Where the connection is looked up.")
    ] = "default",
    server: ServerOpt = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print the API's answer: source, valid, errors, usage."),
    ] = False,
) -> None:
    """Draft a workflow from a sentence with an LLM, and validate it. Nothing is deployed.

    The model gets the workflow schema, this installation's actions and two examples;
    an invalid answer goes back to it once with the errors. The YAML goes to stdout (or
    -o FILE), the errors and the tokens used to stderr.

    Example: plait draft "every night back up the database and tell #ops if it fails"
    -c openai -o backup.yaml

    Exit 0: a valid draft; 1: a draft with errors (or the provider failed); 2: bad
    input (an empty prompt, an unknown or non-llm connection)."""
    from plait.ai.draft import DraftInputError, check_prompt
    from plait.client import resolve_server

    try:
        text = check_prompt(prompt)
    except DraftInputError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    if resolve_server(server):
        result = _remote(server, text, connection, namespace, model)
    else:
        result = _local(text, connection, namespace, model)
    _show(result, output, json_out)
    raise typer.Exit(EXIT_OK if result["valid"] else EXIT_INVALID)


def _remote(
    server: str | None, prompt: str, connection: str, namespace: str, model: str | None
) -> dict[str, Any]:
    from plait.cli_remote import connected

    body = {"prompt": prompt, "connection": connection, "namespace": namespace, "model": model}
    with connected(server) as client:
        found: dict[str, Any] = client.json(
            "POST", "/api/v1/drafts", json=body, timeout=SERVER_TIMEOUT
        )
    return found


def _local(prompt: str, connection: str, namespace: str, model: str | None) -> dict[str, Any]:
    from plait.actions.registry import ActionRegistry
    from plait.ai.draft import draft_workflow
    from plait.ai.llm import LlmError, config_of
    from plait.security.masking import Masker

    conn = _connection(namespace, connection)
    try:
        config = config_of(conn)
    except LlmError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    if not (model or config.model):
        raise _fail(f"connection {connection!r} has no default model: give --model", EXIT_USAGE)
    try:
        made = asyncio.run(draft_workflow(conn, prompt, actions=ActionRegistry(), model=model))
    except LlmError as exc:
        message = Masker(conn.secrets).mask(str(exc))
        raise _fail(f"the model's provider failed: {message}", EXIT_INVALID) from None
    return made.as_output()


def _connection(namespace: str, name: str) -> Connection:
    """``name`` from the home store (``namespace``, then ``*``) or the environment."""
    from plait.errors import PlaitError
    from plait.local import home_connections, open_home_store
    from plait.settings import Settings

    try:
        store = open_home_store(Settings.from_env())
    except PlaitError as exc:
        raise _fail(str(exc), EXIT_INVALID) from None
    try:
        return home_connections(store).get(namespace, name)
    except PlaitError as exc:  # unknown, or a PLAIT_CONNECTION_ variable that is not valid
        raise _fail(str(exc), EXIT_USAGE) from None
    finally:
        store.close()


def _show(result: dict[str, Any], output: Path | None, json_out: bool) -> None:
    source = str(result["source"])
    if output is not None:
        try:
            output.write_text(source, encoding="utf-8")
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc.strerror}", EXIT_USAGE) from None
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    elif output is None:
        typer.echo(source, nl=False)
    where = str(output) if output is not None else "draft.yaml"
    for e in result["errors"]:
        place = f"{where}:{e['line']}:{e['column'] or 0}" if e.get("line") else where
        typer.echo(f"{place}: {e['message']}", err=True)
    usage = result["usage"]
    cost = "" if usage.get("cost") is None else f", ${usage['cost']:.6f}"
    state = "valid" if result["valid"] else f"{len(result['errors'])} error(s) left"
    written = f"; written to {output}" if output is not None else ""
    typer.echo(
        f"draft by {result['model']}: {state}; {usage['prompt_tokens']} prompt + "
        f"{usage['completion_tokens']} completion tokens{cost}{written}",
        err=True,
    )


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
