"""Backups and disaster recovery of a Plait installation (``plait backup …``).

The operations, each on a destination that is a local folder or an ``s3://`` URL:

* :func:`create_backup` — a full or incremental, consistent online backup of the store
  with its keys and configuration (:mod:`plait.ops.backup_create`);
* :func:`verify` — checksums, a test restore and an audit check
  (:mod:`plait.ops.backup_verify`);
* :func:`restore` — the chain back into an empty home or database, migrated to this
  Plait's schema (:mod:`plait.ops.backup_restore`);
* :func:`prune` — retention that never breaks a chain it keeps;
* :func:`list_backups` — every backup with its chain.

The layout of a backup, its manifest and why incremental backups compare fingerprints
rather than timestamps are described in the modules named above and in
``docs/operations.md``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plait.ops.backup_create import CreateOptions, create_backup, known_revisions, safe_url
from plait.ops.backup_errors import BackupError, BadBackup
from plait.ops.backup_manifest import (
    MANIFEST_NAME,
    Catalog,
    Manifest,
    chain,
    id_time,
    iso,
    latest,
    load_catalog,
    plan_prune,
)
from plait.ops.backup_restore import (
    fetch_chain,
    home_files,
    materialize,
    put_home_files,
    store_rows,
    wipe,
)
from plait.ops.backup_target import LocalTarget, S3Target, Target, open_target
from plait.ops.backup_verify import VerifyReport, verify_backup
from plait.settings import Settings

logger = logging.getLogger(__name__)

Say = Callable[[str], None]
#: files that mark a folder as a backup (when its manifest is missing)
_BACKUP_FILES = ("store.sqlite.gz", "store.pgdump", "index/", "rows/")


def _quiet(_: str) -> None:
    pass


# -- where --------------------------------------------------------------------------------
def locate(dest: str, connection: Any | None = None) -> tuple[Target, str | None]:
    """The target holding the backups named by ``dest``, and the backup ``dest`` is
    itself when it names one backup's folder (the folder of a ``manifest.json``)."""
    if dest.startswith("s3://"):
        return _locate_s3(dest, connection)
    target = open_target(dest)
    assert isinstance(target, LocalTarget)
    root = target.root
    if (root / MANIFEST_NAME).is_file():
        return LocalTarget(str(root.parent)), root.name
    if root.is_dir() and (id_time(root.name) or any((root / f).exists() for f in _BACKUP_FILES)):
        raise BadBackup(f"{dest}: no {MANIFEST_NAME}: an unfinished or damaged backup")
    return target, None


def _locate_s3(dest: str, connection: Any | None) -> tuple[Target, str | None]:
    target = S3Target(dest, connection)
    if not target.prefix:
        return target, None
    if target.read_bytes("", MANIFEST_NAME) is not None:
        parent, _, name = dest.rstrip("/").rpartition("/")
        target.close()
        return S3Target(parent, connection), name
    files = target.files("")
    if any(name.startswith(_BACKUP_FILES) for name in files):
        target.close()
        raise BadBackup(f"{dest}: no {MANIFEST_NAME}: an unfinished or damaged backup")
    return target, None


def _pick(catalog: Catalog, target: Target, backup: str | None) -> list[Manifest]:
    """The chain of the named backup, or of the newest complete one."""
    if backup is None:
        newest = latest(catalog.manifests)
        if newest is None:
            unfinished = len(catalog.manifests)
            extra = f" ({unfinished} folder(s) without a manifest)" if unfinished else ""
            raise BadBackup(f"{target.url}: no complete backup{extra}")
        backup = newest.id
    if backup in catalog.broken:
        raise BadBackup(catalog.broken[backup])
    return chain(catalog.manifests, backup)


# -- verify ---------------------------------------------------------------------------------
def verify(
    target: Target,
    backup: str | None = None,
    *,
    settings: Settings | None = None,
    scratch_url: str | None = None,
    say: Say = _quiet,
) -> VerifyReport:
    """Check a backup's chain: files and checksums, a test restore, the audit chain."""
    target.check(create=False)
    picked = _pick(load_catalog(target), target, backup)
    if scratch_url is None and settings and settings.database_url.startswith("postgresql"):
        scratch_url = settings.database_url
    return verify_backup(target, picked, scratch_url=scratch_url, say=say)


# -- restore --------------------------------------------------------------------------------
@dataclass
class RestoreReport:
    backup: str
    chain: list[str]
    database: str
    schema_revision: str | None
    tables: dict[str, int] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    config: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def restore(
    settings: Settings,
    target: Target,
    backup: str | None = None,
    *,
    force: bool = False,
    say: Say = _quiet,
    clock: Callable[[], float] = time.time,
) -> RestoreReport:
    """Restore a backup's chain into the store and home of ``settings``, which must be
    empty unless ``force``; then migrate it to this Plait's schema."""
    from plait.store import migrate

    target.check(create=False)
    picked = _pick(load_catalog(target), target, backup)
    newest_known = known_revisions()[-1]
    revision = picked[-1].schema_revision
    if revision is not None and revision not in known_revisions():
        raise BadBackup(
            f"the backup is at schema revision {revision}, newer than this Plait knows "
            f"({newest_known}): restore it with a Plait at least as new as "
            f"{picked[-1].plait_version}"
        )
    url = settings.database_url
    held = {t: n for t, n in store_rows(url).items() if n}
    if held and not force:
        shown = ", ".join(f"{t}: {n}" for t, n in sorted(held.items())[:6])
        raise BadBackup(
            f"the store at {safe_url(url)} already holds data ({shown}): restore into "
            "an empty home or database, or pass --force to replace it"
        )
    with tempfile.TemporaryDirectory(prefix="plait-restore-") as tmp:
        fetched = fetch_chain(target, picked, Path(tmp), say)
        # Key and configuration files of the home that differ are kept aside, never
        # lost: the store is empty (or --force), so nothing in it needs them.
        last = fetched.last
        pairs = home_files(last, fetched.folders[last.id], settings.home)
        wipe(url)
        materialize(fetched, url, say)
        if migrate.current(url) != migrate.HEAD:
            say(f"migrating from revision {migrate.current(url)} to {migrate.HEAD}")
            migrate.upgrade(url)
        stamp = dt.datetime.fromtimestamp(clock(), dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        notes = put_home_files(pairs, stamp)
    report = RestoreReport(
        backup=last.id,
        chain=[m.id for m in picked],
        database=safe_url(url),
        schema_revision=migrate.current(url),
        tables=store_rows(url),
        keys=list(last.keys),
        config=list(last.config),
        notes=notes,
    )
    report.notes.extend(_key_notes(last))
    _record_restore(url, report, clock)
    return report


def _key_notes(last: Manifest) -> list[str]:
    """What the person restoring must know about where the keys now come from."""
    if not last.keys:
        return ["the backup holds no keys: sealed secrets need the original key"]
    notes = []
    if os.environ.get("PLAIT_SECRET_KEY", "").strip():
        notes.append("PLAIT_SECRET_KEY is set: Plait uses it, not the restored keys/secret.key")
    elif os.environ.get("PLAIT_SECRET_KEY_FILE") and "secret.key" in last.keys:
        notes.append(
            "PLAIT_SECRET_KEY_FILE is set: the restored key is in keys/secret.key of the "
            "home; point the variable there or copy it"
        )
    return notes


def _record_restore(url: str, report: RestoreReport, clock: Callable[[], float]) -> None:
    """An audit entry for the restore, chained after the restored entries."""
    from plait.errors import PlaitError
    from plait.security.audit import AuditEvent
    from plait.store.accounts import AccountStore
    from plait.store.migrate import open_store

    try:
        actor = f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        actor = "cli"
    event = AuditEvent(
        at=clock(),
        actor=actor,
        action="backup.restore",
        resource=f"backups/{report.backup}",
        outcome="success",
        details={"chain": report.chain},
    )
    try:
        store = open_store(url)
        try:
            AccountStore(store).append_audit(event)
        finally:
            store.close()
    except PlaitError as exc:
        logger.warning("could not record the restore in the audit log: %s", exc)


# -- prune and list -------------------------------------------------------------------------
@dataclass
class PruneReport:
    removed: list[str]
    kept: list[str]
    held: dict[str, str]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def prune(
    target: Target,
    *,
    keep_full_days: float = 90,
    keep_incremental_days: float = 30,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
    say: Say = _quiet,
) -> PruneReport:
    """Remove backups past their retention, never one that a kept backup builds on."""
    if keep_full_days < 0 or keep_incremental_days < 0:
        raise BadBackup("retention days cannot be negative")
    target.check(create=False)
    catalog = load_catalog(target)
    plan = plan_prune(
        catalog.manifests,
        clock(),
        keep_full_days,
        keep_incremental_days,
        frozenset(catalog.broken),
    )
    for name in plan.remove:
        if not dry_run:
            say(f"removing {name}")
            try:
                target.remove(name)
            except OSError as exc:
                raise BackupError(f"cannot remove {name}: {exc}") from None
    return PruneReport(list(plan.remove), list(plan.keep), dict(plan.held), dry_run)


def list_backups(target: Target) -> list[dict[str, Any]]:
    """Every backup folder, oldest first, with what it builds on and whether its chain
    is whole."""
    target.check(create=False)
    catalog = load_catalog(target)
    rows: list[dict[str, Any]] = []
    for name, m in catalog.manifests.items():
        if m is None:
            rows.append(
                {"id": name, "complete": False, "problem": catalog.broken.get(name, "no manifest")}
            )
            continue
        try:
            chain(catalog.manifests, m.id)
            problem = None
        except BadBackup as exc:
            problem = str(exc)
        rows.append(
            {
                "id": m.id,
                "complete": True,
                "kind": m.kind,
                "parent": m.parent,
                "created_at": m.created_at,
                "created": iso(m.created_at),
                "size": m.size,
                "files": len(m.files),
                "dialect": m.dialect,
                "method": m.method,
                "schema_revision": m.schema_revision,
                "plait_version": m.plait_version,
                "keys": bool(m.keys),
                "runs": m.tables.get("runs"),
                "problem": problem,
            }
        )
    rows.sort(key=lambda r: (r.get("created_at") or id_time(r["id"]) or 0.0, r["id"]))
    return rows


__all__ = [
    "BackupError",
    "BadBackup",
    "CreateOptions",
    "PruneReport",
    "RestoreReport",
    "VerifyReport",
    "create_backup",
    "list_backups",
    "locate",
    "prune",
    "restore",
    "verify",
]
