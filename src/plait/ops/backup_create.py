"""Taking a backup while Plait runs: a consistent copy of the store, its keys and its
configuration, described by a manifest written last.

How the store is copied:

* **SQLite, full** (``sqlite-backup``): the online backup API of SQLite
  (``Connection.backup``) copies the database page by page inside one read transaction,
  so writers go on (WAL) and the copy is the database at one instant. The copy is
  gzipped. Its index is read from the copy itself.
* **PostgreSQL, full** (``pg_dump``): ``pg_dump --format=custom`` of the snapshot this
  backup's ``REPEATABLE READ`` transaction exports, so the dump, the row counts and the
  index all describe the same instant. Used when ``pg_dump`` is on PATH and not older
  than the server; otherwise, or with ``--method logical``:
* **logical** (either database, and every incremental backup): the rows themselves as
  gzipped JSON lines (:mod:`plait.ops.backup_rows`), read in one ``REPEATABLE READ``
  (PostgreSQL) or read (SQLite) transaction. It restores into SQLite or PostgreSQL alike.

Keys (``$PLAIT_HOME/keys/*``) and configuration (``channels.yaml``) are copied as they
are, unless ``--no-keys``: **the backup then holds the keys that open its sealed
secrets**, so it must be kept like the keys themselves. Keys given in
``PLAIT_SECRET_KEY`` / ``PLAIT_JWT_SECRET`` are not files and are not in the backup.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import create_engine, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from plait import __version__
from plait.ops import backup_pg
from plait.ops.backup_errors import BackupError, BadBackup
from plait.ops.backup_manifest import (
    FileEntry,
    Manifest,
    chain,
    latest,
    load_catalog,
    new_id,
    sha256_file,
)
from plait.ops.backup_scan import ChainMismatch, Mode, Parent, ScanResult, load_index, scan
from plait.ops.backup_target import Target, fetch
from plait.settings import Settings

logger = logging.getLogger(__name__)

Kind = Literal["full", "incremental"]
Method = Literal["auto", "native", "logical"]
SQLITE_FILE = "store.sqlite.gz"
PG_FILE = "store.pgdump"
#: configuration files of ``$PLAIT_HOME`` (notification channels, alert rules)
CONFIG_FILES = ("channels.yaml", "alerts.yaml")
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class CreateOptions:
    kind: Kind = "full"
    method: Method = "auto"
    keys: bool = True


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid URL>"


def store_revision(url: str) -> str:
    """The store's schema revision; refuses a store without a schema or newer than this
    Plait."""
    from plait.store import migrate

    try:
        revision = migrate.current(url)
    except Exception as exc:  # StoreError, or the driver's refusal to connect
        raise BackupError(f"cannot open the store at {safe_url(url)}: {exc}") from None
    if revision is None:
        raise BadBackup(f"no store at {safe_url(url)}: there is nothing to back up")
    if revision not in known_revisions():
        raise BadBackup(
            f"the store is at schema revision {revision}, which this Plait does not know "
            f"(it knows up to {migrate.HEAD}): back it up with the newer Plait"
        )
    return revision


def known_revisions() -> list[str]:
    """The migrations this Plait ships, oldest first."""
    from importlib import resources

    folder = resources.files("plait.store") / "migrations" / "versions"
    names = [p.name for p in folder.iterdir() if p.name[:4].isdigit() and p.name.endswith(".py")]
    return sorted(n[:4] for n in names)


def create_backup(
    settings: Settings,
    target: Target,
    options: CreateOptions,
    *,
    say: Say = lambda _: None,
    clock: Callable[[], float] = time.time,
) -> Manifest:
    """Back up the store of ``settings`` (and its keys and configuration) to ``target``."""
    url = settings.database_url
    revision = store_revision(url)
    dialect = make_url(url).get_backend_name()
    target.check(create=True)
    catalog = load_catalog(target)
    notes: list[str] = []
    parent = _parent(catalog.manifests, dialect, options, notes)
    kind: Kind = "incremental" if parent is not None else "full"
    now = clock()
    backup_id = new_id(kind, now, set(catalog.manifests))
    say(f"{kind} backup {backup_id} of {safe_url(url)} to {target.url}")
    with target.staging(backup_id) as staged:
        try:
            method, found = _copy_store(url, dialect, staged, options, target, parent, notes, say)
            keys, config = _copy_files(settings, staged, options.keys, notes)
            files = [*found.files, *keys, *config]
            entries = tuple(
                FileEntry(rel, (staged / rel).stat().st_size, sha256_file(staged / rel))
                for rel in files
            )
            manifest = Manifest(
                id=backup_id,
                kind=kind,
                parent=parent.manifest.id if parent is not None else None,
                created_at=now,
                plait_version=__version__,
                schema_revision=revision,
                dialect=dialect,
                method=method,
                source=safe_url(url),
                files=entries,
                tables=found.tables,
                changes=found.changes,
                counters=found.counters,
                keys=tuple(k.removeprefix("keys/") for k in keys),
                config=tuple(c.removeprefix("config/") for c in config),
                audit_head=found.audit_head,
                notes=tuple(notes),
            )
            target.publish(backup_id, staged, files)
            target.write_manifest(backup_id, manifest.to_json())
        except BaseException:
            _discard(target, backup_id)
            raise
    for note in notes:
        say(f"note: {note}")
    return manifest


def _discard(target: Target, backup_id: str) -> None:
    try:
        target.remove(backup_id)
    except Exception as exc:  # the original error matters more
        logger.warning("could not remove the unfinished backup %s: %s", backup_id, exc)


def _parent(
    manifests: dict[str, Manifest | None], dialect: str, options: CreateOptions, notes: list[str]
) -> Parent | None:
    """The backup an incremental builds on (None: take a full one)."""
    if options.kind != "incremental":
        return None
    newest = latest(manifests)
    if newest is None:
        notes.append("no backup in the destination yet: took a full backup")
        return None
    if newest.dialect != dialect:
        notes.append(
            f"the newest backup ({newest.id}) is of a {newest.dialect} store: took a full backup"
        )
        return None
    try:
        chain(manifests, newest.id)
    except BadBackup as exc:
        notes.append(f"the newest backup cannot be built on ({exc}): took a full backup")
        return None
    return Parent(newest, {})


def _copy_store(
    url: str,
    dialect: str,
    staged: Path,
    options: CreateOptions,
    target: Target,
    parent: Parent | None,
    notes: list[str],
    say: Say,
) -> tuple[str, ScanResult]:
    if parent is not None:
        parent.index = _parent_index(target, parent.manifest, staged)
        say(f"incremental on {parent.manifest.id}")
        with snapshot(url) as conn:
            return "logical", _scan(conn, staged, "diff", parent)
    if options.method == "logical":
        with snapshot(url) as conn:
            return "logical", _scan(conn, staged, "all")
    if dialect == "sqlite":
        return "sqlite-backup", _sqlite_copy(url, staged)
    with snapshot(url) as conn:
        why = backup_pg.dump_unusable(conn)
        if why is None:
            exported = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
            say("pg_dump of the snapshot")
            backup_pg.dump(url, str(exported), staged / PG_FILE)
            found = _scan(conn, staged, "index")
            found.files.insert(0, PG_FILE)
            return "pg_dump", found
        if options.method == "native":
            raise BackupError(f"--method native: {why}")
        notes.append(f"{why}: took a logical backup (rows as JSON lines)")
        return "logical", _scan(conn, staged, "all")


def _scan(conn: Connection, staged: Path, mode: Mode, parent: Parent | None = None) -> ScanResult:
    try:
        return scan(conn, staged, mode, parent)
    except SQLAlchemyError as exc:
        raise BackupError(f"reading the store failed: {exc}") from exc


def _parent_index(target: Target, parent: Manifest, staged: Path) -> dict[str, dict[str, str]]:
    """The parent's index files, fetched and checked against its manifest."""
    names = [f.path for f in parent.files if f.path.startswith("index/")]
    work = staged / ".parent"
    try:
        folder = fetch(target, parent.id, names, work)
        for name in names:
            entry = parent.file(name)
            if entry is not None and sha256_file(folder / name) != entry.sha256:
                raise ChainMismatch(
                    f"{parent.id}/{name}: checksum mismatch: the parent backup is damaged; "
                    "take a full backup"
                )
        return load_index(folder, parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def snapshot(url: str) -> Iterator[Connection]:
    """A connection in a read-only transaction that sees the store at one instant."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed.set(query={}), poolclass=NullPool)
    else:
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                raw = conn.connection.dbapi_connection
                assert raw is not None
                raw.isolation_level = None
                conn.exec_driver_sql("PRAGMA busy_timeout=30000")
                conn.exec_driver_sql("BEGIN")  # WAL: the first read fixes the snapshot
            else:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            try:
                yield conn
            finally:
                conn.rollback()
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot read the store at {safe_url(url)}: {exc}") from exc
    finally:
        engine.dispose()


def _sqlite_copy(url: str, staged: Path) -> ScanResult:
    """The SQLite online backup of the store into ``staged``, gzipped, with its index."""
    source = make_url(url).database
    if not source or source == ":memory:":
        raise BadBackup("an in-memory SQLite store cannot be backed up")
    copy = staged / "store.sqlite"
    try:
        src = sqlite3.connect(source, timeout=30)
        try:
            dst = sqlite3.connect(copy)
            try:
                src.backup(dst)  # all pages in one step: one consistent read transaction
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"the SQLite backup of {source} failed: {exc}") from exc
    engine = create_engine(f"sqlite:///{copy}", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found = _scan(conn, staged, "index")
    finally:
        engine.dispose()
    with open(copy, "rb") as raw, gzip.open(staged / SQLITE_FILE, "wb", compresslevel=6) as gz:
        shutil.copyfileobj(raw, gz, 1 << 20)
    copy.unlink()
    found.files.insert(0, SQLITE_FILE)
    return found


def _copy_files(
    settings: Settings, staged: Path, with_keys: bool, notes: list[str]
) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    if os.environ.get("PLAIT_SECRET_KEY", "").strip():
        notes.append("the secret key comes from PLAIT_SECRET_KEY: it is not in the backup")
    if os.environ.get("PLAIT_JWT_SECRET", "").strip():
        notes.append("PLAIT_JWT_SECRET is not in the backup")
    if with_keys:
        sources = _key_files(settings)
        for name, path in sources.items():
            keys.append(_copy_private(path, staged / "keys" / name, f"keys/{name}"))
        if sources:
            notes.append(
                "the backup holds the keys that decrypt its secrets: keep it as safe as the "
                "keys (or back up with --no-keys and keep the keys elsewhere)"
            )
    else:
        notes.append("--no-keys: restore needs the keys from elsewhere to open secrets")
    config = [
        _copy_private(settings.home / name, staged / "config" / name, f"config/{name}")
        for name in CONFIG_FILES
        if (settings.home / name).is_file()
    ]
    return keys, config


def _key_files(settings: Settings) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if settings.keys_dir.is_dir():
        found = {p.name: p for p in sorted(settings.keys_dir.iterdir()) if p.is_file()}
    elsewhere = os.environ.get("PLAIT_SECRET_KEY_FILE")
    if elsewhere and Path(elsewhere).is_file():
        found["secret.key"] = Path(elsewhere)
    return found


def _copy_private(source: Path, dest: Path, rel: str) -> str:
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        shutil.copyfile(source, dest)
    except OSError as exc:
        raise BackupError(f"cannot copy {source}: {exc.strerror}") from None
    os.chmod(dest, 0o600)
    return rel
