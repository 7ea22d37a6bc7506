"""Putting a chain of backups back into a database: the full one, then each incremental.

Used by ``plait backup restore`` on the real store and by ``plait backup verify`` on a
scratch one. Every file is checked against its manifest's SHA-256 before anything is
written. The full backup goes in by its own method (the SQLite file put in place,
``pg_restore``, or the rows inserted into a database first migrated to the backup's
schema revision); each incremental is applied in one transaction: deleted rows go,
touched runs lose their child rows, then every copied row is inserted or updated in
place. Id counters are carried over so ids are never handed out twice.
"""

from __future__ import annotations

import gzip
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, inspect, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from plait.errors import StoreError
from plait.ops import backup_pg
from plait.ops.backup_create import PG_FILE, SQLITE_FILE, safe_url
from plait.ops.backup_errors import BackupError, BadBackup
from plait.ops.backup_manifest import Manifest, sha256_file
from plait.ops.backup_rows import (
    BATCH,
    TableSpec,
    apply_counters,
    count_rows,
    delete_keys,
    read_rows,
    table_specs,
    write_rows,
)
from plait.ops.backup_scan import CHILDREN, ROOT, deleted_rel, rows_rel
from plait.ops.backup_target import Target, fetch
from plait.store.tables import metadata as plait_metadata

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Fetched:
    """A chain of backups whose files are local and match their checksums."""

    chain: list[Manifest]
    folders: dict[str, Path]

    @property
    def last(self) -> Manifest:
        return self.chain[-1]


def file_problems(target: Target, manifest: Manifest) -> list[str]:
    """Files of a backup that are missing or of the wrong size (from a listing)."""
    present = target.files(manifest.id)
    problems = []
    for entry in manifest.files:
        size = present.get(entry.path)
        if size is None:
            problems.append(f"{manifest.id}/{entry.path}: missing")
        elif size != entry.size:
            problems.append(
                f"{manifest.id}/{entry.path}: {size} bytes, the manifest says {entry.size}"
            )
    return problems


def check_chain(
    target: Target, chain: list[Manifest], work: Path, say: Say
) -> tuple[Fetched, list[str]]:
    """Every file of the chain made local and checked against its manifest: the
    fetched chain, and each file that is missing, of the wrong size or does not match
    its checksum (named ``BACKUP/PATH``)."""
    problems: list[str] = []
    folders: dict[str, Path] = {}
    for manifest in chain:
        missing = file_problems(target, manifest)
        problems.extend(missing)
        if missing:
            continue
        say(f"checking {manifest.id} ({len(manifest.files)} files)")
        folder = fetch(target, manifest.id, [f.path for f in manifest.files], work)
        for entry in manifest.files:
            if sha256_file(folder / entry.path) != entry.sha256:
                problems.append(f"{manifest.id}/{entry.path}: checksum mismatch")
        folders[manifest.id] = folder
    return Fetched(chain, folders), problems


def fetch_chain(target: Target, chain: list[Manifest], work: Path, say: Say) -> Fetched:
    """:func:`check_chain`, raising :class:`BadBackup` with every problem found."""
    fetched, problems = check_chain(target, chain, work, say)
    if problems:
        raise BadBackup("the backup is damaged: " + "; ".join(problems))
    return fetched


# -- the target database -----------------------------------------------------------------
def _engine(url: str) -> Any:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        parsed = parsed.set(query={})
    return create_engine(parsed, poolclass=NullPool)


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BadBackup("cannot restore into an in-memory SQLite store")
    return Path(parsed.database).expanduser()


def store_rows(url: str) -> dict[str, int]:
    """Rows in each of Plait's tables of the store at ``url`` ({} if it has none)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return {}
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return {s.name: count_rows(conn, s) for s in table_specs(conn)}
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot open the store at {safe_url(url)}: {exc}") from None
    finally:
        engine.dispose()


def wipe(url: str) -> None:
    """Remove Plait's tables (PostgreSQL) or the database file (SQLite)."""
    path = sqlite_path(url)
    if path is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            present = set(inspect(conn).get_table_names())
            names = [t.name for t in plait_metadata.sorted_tables if t.name in present]
            names += ["alembic_version"] if "alembic_version" in present else []
            found = MetaData()
            found.reflect(bind=conn, only=names)
            found.drop_all(bind=conn)
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot clear the store at {safe_url(url)}: {exc}") from None
    finally:
        engine.dispose()


def materialize(fetched: Fetched, url: str, say: Say) -> None:
    """Restore the chain into the (empty) database at ``url``, at the schema revision of
    its last backup."""
    full = fetched.chain[0]
    folder = fetched.folders[full.id]
    backend = make_url(url).get_backend_name()
    say(f"restoring {full.id} ({full.method}) into {safe_url(url)}")
    if full.method == "sqlite-backup":
        if backend != "sqlite":
            raise BadBackup(
                f"{full.id} is a copy of a SQLite file: it restores only into SQLite (take a "
                "backup with --method logical to move a store to PostgreSQL)"
            )
        _put_sqlite(folder / SQLITE_FILE, url)
    elif full.method == "pg_dump":
        if backend != "postgresql":
            raise BadBackup(
                f"{full.id} is a pg_dump archive: it restores only into PostgreSQL (take a "
                "backup with --method logical to move a store to SQLite)"
            )
        backup_pg.restore(folder / PG_FILE, url)
    else:
        _migrate(url, full.schema_revision)
        _in_transaction(url, _apply_full, full, folder)
    for inc in fetched.chain[1:]:
        say(f"applying {inc.id}")
        _migrate(url, inc.schema_revision)
        _in_transaction(url, apply_incremental, inc, fetched.folders[inc.id])


def _migrate(url: str, revision: str | None) -> None:
    from plait.store import migrate

    if revision is not None and migrate.current(url) != revision:
        try:
            migrate.upgrade(url, revision)
        except StoreError as exc:
            raise BackupError(f"migrating to revision {revision} failed: {exc}") from None


def _in_transaction(
    url: str,
    work: Callable[[Connection, list[TableSpec], Manifest, Path], None],
    manifest: Manifest,
    folder: Path,
) -> None:
    from plait.store.dialects import hooks_for

    hooks = hooks_for(url)
    try:
        with hooks.write() as conn:
            work(conn, table_specs(conn), manifest, folder)
    except StoreError as exc:
        raise BackupError(f"restoring rows failed: {exc}") from None
    finally:
        hooks.close()


def _put_sqlite(archive: Path, url: str) -> None:
    path = sqlite_path(url)
    assert path is not None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.restore-{secrets.token_hex(4)}")
    try:
        with gzip.open(archive, "rb") as gz, open(tmp, "xb") as out:
            shutil.copyfileobj(gz, out, 1 << 20)
        os.chmod(tmp, 0o600)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, path)
    except (OSError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise BadBackup(f"{archive.name}: cannot be unpacked: {exc}") from None


def _apply_full(conn: Connection, specs: list[TableSpec], full: Manifest, folder: Path) -> None:
    dialect = conn.dialect.name
    for spec in specs:
        if full.file(rows_rel(spec.name)) is not None:
            write_rows(conn, spec, folder / rows_rel(spec.name), dialect)
    apply_counters(conn, specs, full.counters)


def apply_incremental(
    conn: Connection, specs: list[TableSpec], inc: Manifest, folder: Path
) -> None:
    """Deleted rows go, touched runs lose their child rows, then every row is upserted."""
    by_name = {s.name: s for s in specs}
    for spec in reversed(specs):
        rel = deleted_rel(spec.name)
        if inc.file(rel) is None:
            continue
        _, keys = read_rows(folder / rel)
        if spec.name == ROOT:
            ids = [k[0] for k in keys]
            _delete_children(conn, by_name, ids)
            delete_keys(conn, spec, ([i] for i in ids))
        else:
            delete_keys(conn, spec, keys)
    if inc.file(rows_rel(ROOT)) is not None:
        header, rows = read_rows(folder / rows_rel(ROOT))
        at = list(header["columns"]).index("id")
        _delete_children(conn, by_name, [r[at] for r in rows])
    dialect = conn.dialect.name
    for spec in specs:
        if inc.file(rows_rel(spec.name)) is not None:
            write_rows(conn, spec, folder / rows_rel(spec.name), dialect, upsert=True)
    apply_counters(conn, specs, inc.counters)


def _delete_children(conn: Connection, specs: dict[str, TableSpec], run_ids: list[str]) -> None:
    for name in reversed(CHILDREN):
        spec = specs.get(name)
        if spec is None:
            continue
        for start in range(0, len(run_ids), BATCH):
            batch = run_ids[start : start + BATCH]
            conn.execute(spec.table.delete().where(spec.table.c.run_id.in_(batch)))


# -- keys and configuration --------------------------------------------------------------
def home_files(manifest: Manifest, folder: Path, home: Path) -> list[tuple[Path, Path]]:
    """(file in the backup, where it goes in the home) for its keys and configuration."""
    pairs = [(folder / "keys" / n, home / "keys" / n) for n in manifest.keys]
    pairs += [(folder / "config" / n, home / n) for n in manifest.config]
    return pairs


def put_home_files(pairs: list[tuple[Path, Path]], stamp: str) -> list[str]:
    """Write the files (0600; ``keys/`` 0700); a different file already there is kept
    as ``NAME.before-restore-STAMP``, never deleted: it may be the only copy of a key."""
    notes = []
    for source, dest in pairs:
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if dest.parent.name == "keys":
            os.chmod(dest.parent, 0o700)
        if dest.exists():
            if dest.read_bytes() == source.read_bytes():
                continue
            aside = dest.with_name(f"{dest.name}.before-restore-{stamp}")
            os.replace(dest, aside)
            notes.append(f"kept the previous {dest.name} as {aside}")
        tmp = dest.with_name(f".{dest.name}.restore")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(source.read_bytes())
        os.replace(tmp, dest)
    return notes
