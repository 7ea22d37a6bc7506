"""``plait backup create | verify | restore | prune | list``.

They work on the store of ``$PLAIT_HOME`` (or ``PLAIT_DATABASE_URL``) and its keys,
while servers and workers keep running (``create``, ``verify``, ``list``, ``prune``);
``restore`` writes the store, so stop Plait first. DEST is a folder or an
``s3://bucket/prefix`` URL. Progress goes to standard error, so ``--json`` output on
standard output stays parseable.

Exit codes: 0 done, 1 the operation failed (the database, ``pg_dump`` or the object
store refused), 2 bad input — a DEST that does not exist, a backup with a missing
manifest or a file that does not match its checksum (``verify`` names it), a restore
that would overwrite data without ``--force``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from plait.ops.backup_target import Target
    from plait.settings import Settings

EXIT_FAILED, EXIT_USAGE = 1, 2

backup_app = typer.Typer(
    help="Backups of the store, its keys and configuration: create, verify, restore, "
    "prune, list. DEST is a folder or s3://bucket/prefix.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output on standard output.")]
ToOpt = Annotated[str, typer.Option("--to", help="Where to write: a folder or s3://bucket/prefix.")]
FromOpt = Annotated[
    str,
    typer.Option(
        "--from",
        help="The backups: a folder or s3://bucket/prefix (or one backup's own folder).",
    ),
]
BackupOpt = Annotated[
    str | None,
    typer.Option(
        "--backup", help="This backup (an id from `plait backup list`); default: the newest."
    ),
]
ConnectionOpt = Annotated[
    str | None,
    typer.Option(
        "--connection",
        help="For s3:// — an s3 connection [NAMESPACE/]NAME (from the store, or a "
        "PLAIT_CONNECTION_<NAME> variable); default: PLAIT_S3_ENDPOINT_URL and boto3's "
        "credentials.",
    ),
]


def _say(message: str) -> None:
    typer.echo(message, err=True)


@contextmanager
def _errors(json_out: bool = False) -> Iterator[None]:
    """Expected failures as one line and an exit code, never a traceback; with
    ``--json`` also as ``{"ok": false, "error": …}`` on standard output."""
    from plait.errors import PlaitError
    from plait.ops.backup_errors import BackupError

    try:
        yield
    except PlaitError as exc:
        code = exc.exit_code if isinstance(exc, BackupError) else EXIT_FAILED
        typer.echo(f"error: {exc}", err=True)
        if json_out:
            typer.echo(json.dumps({"ok": False, "error": str(exc), "exit_code": code}))
        raise typer.Exit(code) from None


def _settings() -> Settings:
    from plait.settings import Settings

    return Settings.from_env()


def _connection(spec: str | None, settings: Settings) -> Any | None:
    """The s3 connection named ``[NAMESPACE/]NAME``: the store's (when the store
    exists), else a ``PLAIT_CONNECTION_<NAME>`` variable."""
    if spec is None:
        return None
    from plait.actions.connections import ChainedConnections, EnvConnections, UnknownConnection
    from plait.ops.backup_errors import BadBackup
    from plait.store import migrate

    namespace, _, name = spec.rpartition("/")
    namespace = namespace or "*"
    if not name:
        raise BadBackup(f"--connection {spec!r}: write [NAMESPACE/]NAME")
    if migrate.current(settings.database_url) is None:
        source: Any = EnvConnections()
        try:
            return source.get(namespace, name)
        except UnknownConnection as exc:
            raise BadBackup(str(exc)) from None
    from plait.security.crypto import Keyring
    from plait.store.server_connections import ConnectionStore, StoreConnections

    store = migrate.open_store(
        settings.database_url, Keyring.load_or_create(settings.home), migrate=False
    )
    try:
        chained = ChainedConnections(StoreConnections(ConnectionStore(store)), EnvConnections())
        return chained.get(namespace, name)
    except UnknownConnection as exc:
        raise BadBackup(str(exc)) from None
    finally:
        store.close()


def _run_on(
    dest: str,
    connection: str | None,
    work: Callable[[Target, Settings], Any],
    *,
    existing: bool = True,
) -> Any:
    """``work`` on the target of ``dest`` (``existing``: the folder that holds the
    backups, found also from one backup's own folder)."""
    from plait.ops.backup import locate
    from plait.ops.backup_target import open_target

    settings = _settings()
    conn = _connection(connection, settings)
    target = locate(dest, conn)[0] if existing else open_target(dest, conn)
    try:
        return work(target, settings)
    finally:
        target.close()


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


# -- create ------------------------------------------------------------------------------
@backup_app.command("create")
def create(
    to: ToOpt,
    full: Annotated[bool, typer.Option("--full", help="A full backup (the default).")] = False,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="Only what changed since the newest backup in DEST (a full one if none).",
        ),
    ] = False,
    method: Annotated[
        str,
        typer.Option(
            help="Full backups: auto (SQLite backup API / pg_dump when usable, else "
            "logical), native, or logical (rows as JSON lines; restores into either database)."
        ),
    ] = "auto",
    no_keys: Annotated[
        bool,
        typer.Option("--no-keys", help="Leave out $PLAIT_HOME/keys (keep the keys elsewhere)."),
    ] = False,
    connection: ConnectionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Take a consistent online backup of the store, its keys and configuration.

    Plait keeps running meanwhile. The backup is a folder DEST/<id>/ with a
    manifest.json (kind, parent, schema revision, row counts, SHA-256 of every file)
    written last. It holds the keys that decrypt its secrets unless --no-keys: keep it
    as safe as the keys."""
    from plait.ops.backup import CreateOptions, create_backup

    if full and incremental:
        typer.echo("error: --full and --incremental exclude each other", err=True)
        raise typer.Exit(EXIT_USAGE)
    if method not in ("auto", "native", "logical"):
        typer.echo(f"error: --method {method!r}: choose auto, native or logical", err=True)
        raise typer.Exit(EXIT_USAGE)
    options = CreateOptions(
        kind="incremental" if incremental else "full",
        method=method,  # type: ignore[arg-type]
        keys=not no_keys,
    )
    with _errors(json_out):
        manifest = _run_on(
            to, connection, lambda t, s: create_backup(s, t, options, say=_say), existing=False
        )
    if json_out:
        typer.echo(json.dumps({"dest": to, **json.loads(manifest.to_json())}, indent=2))
        return
    parent = f" on {manifest.parent}" if manifest.parent else ""
    rows = sum(n for t in manifest.changes.values() for n in t.values())
    what = (
        f"{rows} changed row(s)"
        if manifest.kind == "incremental"
        else (f"{manifest.tables.get('runs', 0)} run(s)")
    )
    typer.echo(
        f"{manifest.kind} backup {manifest.id}{parent}: {len(manifest.files)} files, "
        f"{_size(manifest.size)}, {what}, {manifest.method} → {to}"
    )


# -- verify ------------------------------------------------------------------------------
@backup_app.command("verify")
def verify(
    from_: FromOpt,
    backup: BackupOpt = None,
    scratch_url: Annotated[
        str | None,
        typer.Option(
            "--scratch-url",
            help="A PostgreSQL server to test-restore a pg_dump backup into (a temporary "
            "database is created and dropped); default: PLAIT_DATABASE_URL's server.",
        ),
    ] = None,
    connection: ConnectionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a backup: checksums, a test restore, the audit chain and the keys.

    Checks the newest backup (or --backup) and every backup of the chain it needs:
    each file's size and SHA-256, a test restore into a scratch store that must hold
    the rows the manifest counted, the audit hash chain, and that the backed-up key
    opens the sealed values. Exit 0 when sound, 2 naming each problem."""
    from plait.ops.backup import locate
    from plait.ops.backup import verify as run_verify

    with _errors(json_out):
        settings = _settings()
        target, own = locate(from_, _connection(connection, settings))
        try:
            report = run_verify(
                target, backup or own, settings=settings, scratch_url=scratch_url, say=_say
            )
        finally:
            target.close()
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=2))
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if not report.ok:
        for problem in report.problems:
            typer.echo(f"problem: {problem}", err=True)
        if not json_out:
            typer.echo(f"backup {report.backup} is NOT sound: {len(report.problems)} problem(s)")
        raise typer.Exit(EXIT_USAGE)
    if not json_out:
        chain = " → ".join(report.chain)
        restored = (
            f"test restore into {report.restored_into}: {len(report.tables)} tables match the "
            f"manifest, audit chain intact ({report.audit_entries} entries)"
            if report.restored_into
            else "not test-restored"
        )
        typer.echo(f"ok: {report.backup} ({chain}): {report.files} files match; {restored}")


# -- restore -----------------------------------------------------------------------------
@backup_app.command("restore")
def restore(
    from_: FromOpt,
    backup: BackupOpt = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace a store that already holds data."),
    ] = False,
    connection: ConnectionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore a backup into an empty home or database (stop Plait first).

    Restores the full backup, then each incremental up to the chosen one, into the
    store of $PLAIT_HOME or PLAIT_DATABASE_URL, writes its keys and configuration, and
    migrates it to this Plait's schema. Refuses a store that holds data unless
    --force; a key file that differs is kept as NAME.before-restore-TIME."""
    from plait.ops.backup import locate
    from plait.ops.backup import restore as run_restore

    with _errors(json_out):
        settings = _settings()
        target, own = locate(from_, _connection(connection, settings))
        try:
            report = run_restore(settings, target, backup or own, force=force, say=_say)
        finally:
            target.close()
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    runs = report.tables.get("runs", 0)
    keys = ", ".join(report.keys) or "none"
    typer.echo(
        f"restored {report.backup} ({' → '.join(report.chain)}) into {report.database}: "
        f"{runs} run(s), schema revision {report.schema_revision}; keys: {keys}"
    )


# -- prune -------------------------------------------------------------------------------
@backup_app.command("prune")
def prune(
    from_: FromOpt,
    keep_full_days: Annotated[
        float, typer.Option(help="Keep full backups this many days.", min=0)
    ] = 90,
    keep_incremental_days: Annotated[
        float, typer.Option(help="Keep incremental backups this many days.", min=0)
    ] = 30,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
    connection: ConnectionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove backups past their retention (90 days full, 30 incremental).

    A backup that a kept one builds on is kept whatever its age, and so is the newest
    backup's chain."""
    from plait.ops.backup import prune as run_prune

    with _errors(json_out):
        report = _run_on(
            from_,
            connection,
            lambda t, _s: run_prune(
                t,
                keep_full_days=keep_full_days,
                keep_incremental_days=keep_incremental_days,
                dry_run=dry_run,
                say=_say,
            ),
        )
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {len(report.removed)} backup(s), kept {len(report.kept)}")
    for name in report.removed:
        typer.echo(f"  - {name}")
    for name, why in sorted(report.held.items()):
        typer.echo(f"  kept {name} past its retention: {why}")


# -- list --------------------------------------------------------------------------------
@backup_app.command("list")
def list_(from_: FromOpt, connection: ConnectionOpt = None, json_out: JsonOpt = False) -> None:
    """Every backup, oldest first, with what it builds on.

    Shows kind, time, size, runs, method, the backup each incremental builds on, and
    BROKEN when its chain is not whole."""
    from plait.ops.backup import list_backups

    with _errors(json_out):
        rows = _run_on(from_, connection, lambda t, _s: list_backups(t))
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no backups in {from_}")
    for r in rows:
        if not r["complete"]:
            typer.echo(f"{r['id']:<32} unfinished: {r['problem']}")
            continue
        when = r["created"].replace("T", " ").replace("+00:00", " UTC")
        runs = f"{r['runs']} runs" if r["runs"] is not None else ""
        line = (
            f"{r['id']:<32} {r['kind']:<11} {when}  {_size(r['size']):>9}  {runs:>9}  "
            f"{r['method']:<13}"
        )
        if r["parent"]:
            line += f" on {r['parent']}"
        if r["problem"]:
            line += f"  BROKEN: {r['problem']}"
        typer.echo(line.rstrip())


def register(app: typer.Typer) -> None:
    """Add ``plait backup`` to the CLI."""
    app.add_typer(backup_app, name="backup")
