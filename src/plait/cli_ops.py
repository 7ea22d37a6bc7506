"""Operations on the local store: ``plait audit …``, ``plait secrets …``,
``plait runs redact`` and ``plait doctor``.

Like ``plait users``, they open the store of ``$PLAIT_HOME`` (or
``PLAIT_DATABASE_URL``) directly, with the keys of that home, while servers and workers
keep running on it. Exit codes: 0 done, 1 the operation found a problem (a broken audit
chain, values left to re-seal, a key still in use), 2 bad input.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from plait.cli_accounts import parse_duration
from plait.cli_common import (
    EXIT_PROBLEM,
    JsonOpt,
    audit,
    check_namespace,
    cli_actor,
    error_exit,
    local_services,
)

if TYPE_CHECKING:
    from plait.security.audit import AuditEntry, VerifyReport
    from plait.server.services import Services
    from plait.store.rekey import ResealReport

PENDING_FILE = "rotation.pending"

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
secrets_app = typer.Typer(help="Encrypted secrets and their keys.", no_args_is_help=True)


# -- audit ------------------------------------------------------------------------------
_KINDS = (
    ("changed after it was written", "edited"),
    ("missing", "deleted"),
    ("out of order or repeated", "reordered"),
    ("does not link", "forged or reordered"),
    ("differs from the known head", "forged"),
)


def problem_kind(problem: str) -> str:
    """A one-word reason for a :class:`VerifyReport` problem."""
    return next((kind for text, kind in _KINDS if text in problem), "invalid")


def _parse_head(head: str | None) -> tuple[int, str] | None:
    if head is None:
        return None
    seq, sep, digest = head.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise error_exit(f"--head {head!r}: write it as SEQ:HASH (as `verify --json` prints)")
    return int(seq), digest


def _verify_json(report: VerifyReport) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ok": report.ok,
        "checked": report.checked,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
    }
    if not report.ok:
        out.update(
            first_bad_seq=report.first_bad_seq,
            kind=problem_kind(report.problem or ""),
            problem=report.problem,
        )
    return out


@audit_app.command("verify")
def audit_verify(
    json_out: JsonOpt = False,
    head: Annotated[
        str | None,
        typer.Option(help="The last SEQ:HASH known from outside (detects a cut-off tail)."),
    ] = None,
) -> None:
    """Verify the whole hash chain of the audit log, streaming it.

    Exit 0 with `ok: N entries`, or 1 naming the first bad entry and why (edited,
    deleted, reordered, forged)."""
    from plait.security.audit import verify_chain

    known = _parse_head(head)
    with local_services() as services:
        accounts = services.accounts
        report = verify_chain(accounts.export_audit(), accounts.audit_key, head=known)
    if json_out:
        typer.echo(json.dumps(_verify_json(report)))
    elif report.ok:
        tail = f" (head {report.head_seq}:{report.head_hash})" if report.head_seq else ""
        typer.echo(f"ok: {report.checked} entries{tail}")
    else:
        kind = problem_kind(report.problem or "")
        typer.echo(
            f"broken at entry {report.first_bad_seq} ({kind}): {report.problem}; "
            f"{report.checked} entries before it are intact",
            err=True,
        )
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEM)


def parse_time(text: str, now: float) -> float:
    """An ISO 8601 date or time (UTC unless it says otherwise), epoch seconds, or a
    duration ago (``7d``)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use 2024-05-01, 2024-05-01T12:00Z or 7d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """One exported line: the stored fields (enough to re-verify) and a readable time."""
    out = entry.fields()
    out["time"] = dt.datetime.fromtimestamp(entry.at, dt.UTC).isoformat()
    out["prev_hash"] = entry.prev_hash
    out["hash"] = entry.hash
    return out


@audit_app.command("export")
def audit_export(
    since: Annotated[
        str | None, typer.Option(help="From this time (ISO 8601, epoch or e.g. 7d ago).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (exclusive).")] = None,
) -> None:
    """Write audit entries in chain order as JSON lines to standard output."""
    import time

    now = time.time()
    try:
        start = None if since is None else parse_time(since, now)
        end = None if until is None else parse_time(until, now)
    except ValueError as exc:
        raise error_exit(str(exc)) from None
    count = 0
    with local_services() as services:
        for entry in services.accounts.export_audit():
            if (start is not None and entry.at < start) or (end is not None and entry.at >= end):
                continue
            sys.stdout.write(json.dumps(entry_json(entry), ensure_ascii=False) + "\n")
            count += 1
    sys.stdout.flush()
    typer.echo(f"exported {count} entries", err=True)


# -- secrets ----------------------------------------------------------------------------
def _check_names(namespace: str, name: str | None = None) -> None:
    from plait.server.routes.secrets import NAME

    check_namespace(namespace)
    if name is not None and not NAME.match(name):
        raise error_exit(
            f"{name!r} is not a secret name (letters, digits and _, not first a digit)"
        )


def _read_value(value: str | None, from_stdin: bool) -> str:
    if value is not None and from_stdin:
        raise error_exit("--value and --value-stdin exclude each other")
    if value is not None:
        typer.echo(
            "warning: a value given with --value lands in shell history and is visible to "
            "`ps`; prefer --value-stdin or the prompt",
            err=True,
        )
        return value
    if from_stdin:
        text = sys.stdin.read()
        return text[:-1] if text.endswith("\n") else text
    if not sys.stdin.isatty():
        raise error_exit("no terminal to prompt on: pass the value with --value-stdin")
    return str(typer.prompt("Value", hide_input=True, confirmation_prompt=True))


@secrets_app.command("set")
def secrets_set(
    namespace: Annotated[str, typer.Argument(help="The namespace, or * for every namespace.")],
    name: Annotated[str, typer.Argument(help="The name workflows use: secrets.NAME.")],
    value_stdin: Annotated[
        bool, typer.Option("--value-stdin", help="Read the value from standard input.")
    ] = False,
    value: Annotated[
        str | None, typer.Option("--value", help="The value (lands in shell history).")
    ] = None,
) -> None:
    """Create or replace a secret; the value is encrypted before it is stored. Without
    --value-stdin or --value, prompts for it (hidden)."""
    from plait.server.routes.secrets import MAX_VALUE

    _check_names(namespace, name)
    secret = _read_value(value, value_stdin)
    if not secret:
        raise error_exit("the value is empty")
    if len(secret.encode()) > MAX_VALUE:
        raise error_exit(f"the value is larger than {MAX_VALUE} bytes")
    with local_services() as services:
        created = services.server_store.put_secret(namespace, name, secret, cli_actor())
        action = "secrets.create" if created else "secrets.update"
        audit(services, action, f"secrets/{namespace}/{name}", {})
    typer.echo(f"{'created' if created else 'updated'} secret {namespace}/{name}")


@secrets_app.command("list")
def secrets_list(
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Secret names and metadata (never values)."""
    with local_services() as services:
        rows = list(_secret_rows(services, namespace))
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        when = dt.datetime.fromtimestamp(row["updated_at"], dt.UTC).strftime("%Y-%m-%d %H:%M")
        by = row["updated_by"] or "-"
        typer.echo(f"{row['namespace']}/{row['name']:<40} updated {when} UTC by {by}")


def _secret_rows(services: Services, namespace: str | None) -> Iterator[dict[str, Any]]:
    cursor = None
    while True:
        page = services.server_store.list_secrets(namespace, cursor=cursor, limit=500)
        for s in page.items:
            yield {
                "namespace": s.namespace,
                "name": s.name,
                "created_at": s.created_at,
                "updated_at": s.updated_at,
                "created_by": s.created_by,
                "updated_by": s.updated_by,
            }
        cursor = page.next_cursor
        if cursor is None:
            return


@secrets_app.command("delete")
def secrets_delete(namespace: str, name: str) -> None:
    """Delete a secret. Exit 2 if there is none."""
    from plait.errors import NotFound

    with local_services() as services:
        try:
            services.server_store.delete_secret(namespace, name)
        except NotFound as exc:
            raise error_exit(str(exc)) from None
        audit(services, "secrets.delete", f"secrets/{namespace}/{name}", {})
    typer.echo(f"deleted secret {namespace}/{name}")


@secrets_app.command("keys")
def secrets_keys(json_out: JsonOpt = False) -> None:
    """The key ids of the keyring, which one seals, and how many values each seals."""
    from plait.store.rekey import key_usage

    with local_services() as services:
        keyring = services.keyring
        usage = key_usage(services.store, keyring)
    totals: dict[str, int] = {}
    for counts in usage.values():
        for key_id, n in counts.items():
            totals[key_id] = totals.get(key_id, 0) + n
    rows = [
        {"id": k, "current": k == keyring.current_key_id, "values": totals.get(k, 0)}
        for k in keyring.key_ids
    ]
    if json_out:
        typer.echo(json.dumps({"keys": rows, "unknown": totals.get("?", 0), "columns": usage}))
        return
    source = "PLAIT_SECRET_KEY" if keyring.from_env else str(keyring.path)
    typer.echo(f"keys from {source}")
    for row in rows:
        mark = " (seals)" if row["current"] else ""
        typer.echo(f"  key {row['id']}{mark}: {row['values']} value(s)")
    if totals.get("?"):
        typer.echo(f"  unknown keys: {totals['?']} value(s) cannot be opened", err=True)


ENV_ROTATION_HELP = (
    "the keys come from PLAIT_SECRET_KEY, which this command cannot change. Rotate in "
    "three steps: (1) make a key with `openssl rand -base64 32` and add it as the FIRST "
    "item, e.g. PLAIT_SECRET_KEY=2:<new>,1:<old>, then restart every process (all can "
    "open key 2; key 1 still seals); (2) move it to the end, 1:<old>,2:<new>, and "
    "restart again (key 2 seals); (3) run `plait secrets rotate-key --reseal-only`, "
    "then drop 1:<old> once `plait secrets keys` shows key 1 seals nothing"
)


def _start_rotation(services: Services, reseal_only: bool) -> str:
    """Add the new key (or continue a pending rotation); returns what happened."""
    from plait.errors import PlaitError

    keyring = services.keyring
    pending = services.settings.keys_dir / PENDING_FILE
    if reseal_only:
        return f"re-sealing under the current key {keyring.current_key_id}"
    if pending.exists() and pending.read_text().strip() == keyring.current_key_id:
        return f"continuing the rotation to key {keyring.current_key_id}"
    if keyring.from_env:
        raise error_exit(ENV_ROTATION_HELP)
    try:
        new_id = keyring.rotate()
    except PlaitError as exc:
        raise error_exit(str(exc), EXIT_PROBLEM) from None
    pending.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pending.write_text(new_id + "\n")
    return f"added key {new_id} to {keyring.path}; it seals from now on"


def _reseal_json(report: ResealReport, retired: list[str]) -> dict[str, Any]:
    return {
        "key_id": report.key_id,
        "resealed": report.resealed,
        "remaining": report.remaining,
        "failed": report.failed,
        "retired": retired,
        "columns": {
            name: {"resealed": c.resealed, "remaining": c.remaining, "failed": len(c.failed)}
            for name, c in report.columns.items()
        },
    }


def _print_reseal(report: ResealReport) -> None:
    parts = ", ".join(f"{n}: {c.resealed}" for n, c in report.columns.items())
    typer.echo(f"re-sealed {report.resealed} value(s) under key {report.key_id} ({parts})")
    for failure in report.failed:
        typer.echo(f"cannot re-seal {failure}", err=True)
    if report.remaining:
        typer.echo(
            f"{report.remaining} value(s) are still under older keys (written meanwhile by "
            "processes that seal with an old key): run the command again to continue",
            err=True,
        )


@secrets_app.command("rotate-key")
def secrets_rotate_key(
    reseal_only: Annotated[
        bool,
        typer.Option("--reseal-only", help="Add no key: re-seal under the current one."),
    ] = False,
    retire_old: Annotated[
        bool,
        typer.Option("--retire-old", help="Then drop the old keys, if no value uses them."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a new key version and re-encrypt every sealed value of the store under it.

    Servers and workers keep running: every key of the ring still opens old values.
    Re-running continues an interrupted rotation. Exit 1 if values are left."""
    from plait.store.rekey import RekeyError, reseal, retire_old_keys

    with local_services() as services:
        started = _start_rotation(services, reseal_only)
        typer.echo(started, err=True)
        report = reseal(services.store, services.keyring)
        done = report.remaining == 0 and not report.failed
        if done:
            (services.settings.keys_dir / PENDING_FILE).unlink(missing_ok=True)
        retired: list[str] = []
        if retire_old and done:
            try:
                retired = retire_old_keys(services.store, services.keyring)
            except RekeyError as exc:
                raise error_exit(str(exc), EXIT_PROBLEM) from None
        details = {"key_id": report.key_id, "resealed": report.resealed, "retired": retired}
        audit(services, "secrets.rotate-key", "keys", details)
    if json_out:
        typer.echo(json.dumps(_reseal_json(report, retired)))
    else:
        _print_reseal(report)
        if retired:
            typer.echo(f"retired key(s) {', '.join(retired)} (kept in secret.key.retired-*)")
    if not done:
        raise typer.Exit(EXIT_PROBLEM)


# -- runs redact ------------------------------------------------------------------------
def runs_redact(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Runs finished longer ago than this (e.g. 90d).")
    ],
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Anonymise old finished runs: inputs, outputs, secrets, errors and logs are
    replaced or deleted; statuses, timings and the steps remain for history and metrics.
    Unfinished runs are never touched."""
    from plait.store.redact import RedactPolicy, count_eligible, redact

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise error_exit(str(exc)) from None
    with local_services() as services:
        policy = RedactPolicy(cutoff=services.clock() - age, workflow=workflow)
        if dry_run:
            counts = count_eligible(services.store, policy).as_dict()
        else:
            counts = redact(services.store, policy).as_dict()
            details: dict[str, Any] = {"older_than": older_than, "workflow": workflow, **counts}
            audit(services, "runs.redact", "runs", details)
    if json_out:
        typer.echo(json.dumps({"dry_run": dry_run, **counts}))
        return
    verb = "would redact" if dry_run else "redacted"
    typer.echo(
        f"{verb} {counts['runs']} run(s): {counts['steps']} step(s), {counts['attempts']} "
        f"attempt(s), {counts['events']} event(s); "
        f"{'would delete' if dry_run else 'deleted'} {counts['log_lines']} log line(s)"
    )


# -- doctor -----------------------------------------------------------------------------
_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "fail"}


def doctor(
    json_out: JsonOpt = False,
    min_free: Annotated[
        str, typer.Option("--min-free", help="Fail below this much free disk in $PLAIT_HOME.")
    ] = "1GiB",
    schedule_grace: Annotated[
        str,
        typer.Option(help="How late a schedule's fire may be before it counts as missed."),
    ] = "5m",
) -> None:
    """Check this installation and say what to fix: the store answers and its schema
    is current, the secret key is present, private and opens the store's secrets, an
    admin exists, workers are alive, schedules fire, the disk has room, channels parse.

    Only looks: creates, migrates and changes nothing. Exit 0 when nothing fails
    (warnings included), 1 when a check fails, 2 for bad options."""
    from plait.ops.doctor import Options, diagnose, parse_size
    from plait.settings import Settings

    try:
        options = Options(
            min_free_bytes=parse_size(min_free), schedule_grace=parse_duration(schedule_grace)
        )
    except ValueError as exc:
        raise error_exit(str(exc)) from None
    findings = diagnose(Settings.from_env(), options=options)
    failed = any(f.status == "fail" for f in findings)
    if json_out:
        typer.echo(json.dumps({"ok": not failed, "checks": [f.as_dict() for f in findings]}))
    else:
        for f in findings:
            typer.echo(f"{_MARKS[f.status]}  {f.check:<11} {f.message}")
            if f.fix and f.status != "ok":
                typer.echo(f"{'':17}→ {f.fix}")
        counts = {s: sum(f.status == s for f in findings) for s in ("ok", "warn", "fail")}
        typer.echo(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failed")
    if failed:
        raise typer.Exit(EXIT_PROBLEM)


def _group(app: typer.Typer, name: str) -> typer.Typer:
    for group in app.registered_groups:
        if group.name == name and group.typer_instance is not None:
            return group.typer_instance
    raise LookupError(f"the CLI has no `{name}` group")


def register(app: typer.Typer, runs_app: typer.Typer | None = None) -> None:
    """Add ``plait audit``, ``plait secrets``, ``plait runs redact`` and ``plait doctor``
    to the CLI."""
    app.add_typer(audit_app, name="audit")
    app.add_typer(secrets_app, name="secrets")
    app.command("doctor")(doctor)
    runs = runs_app if runs_app is not None else _group(app, "runs")
    runs.command("redact")(runs_redact)


def main() -> None:
    """``python -m plait.cli_ops``: the ``plait`` CLI with these commands, whether or not
    :mod:`plait.cli` registers them yet."""
    from plait import cli

    if not any(g.name == "audit" for g in cli.app.registered_groups):
        register(cli.app, cli.runs_app)
    cli.main()


if __name__ == "__main__":
    main()
