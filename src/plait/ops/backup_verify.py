"""``plait backup verify``: is this backup whole, and does it restore?

Three checks, each on the whole chain the backup needs (its full backup and every
incremental up to it):

1. **Files**: every file the manifests list is there, with its size and SHA-256.
2. **Test restore**: the chain is restored into a scratch store — a temporary SQLite
   file, or for a ``pg_dump`` archive a temporary PostgreSQL database on
   ``--scratch-url`` (or the server of ``PLAIT_DATABASE_URL``) — and each table must
   hold the rows the manifest counted when the backup was taken.
3. **Open and audit**: the scratch store is opened with :func:`open_store` (which
   migrates it to this Plait's schema), its audit hash chain is verified, and the
   backed-up key is checked to open every sealed value.

Without a PostgreSQL server to restore a ``pg_dump`` archive into, only its table of
contents is read (``pg_restore --list``), and the report says so.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plait.errors import PlaitError
from plait.ops import backup_pg
from plait.ops.backup_create import PG_FILE
from plait.ops.backup_manifest import Manifest
from plait.ops.backup_restore import Fetched, check_chain, materialize, store_rows
from plait.ops.backup_target import Target

Say = Callable[[str], None]


@dataclass
class VerifyReport:
    backup: str
    chain: list[str]
    files: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: where the test restore went: "sqlite", "postgresql", or None (not restored)
    restored_into: str | None = None
    tables: dict[str, int] = field(default_factory=dict)
    audit_entries: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def verify_backup(
    target: Target,
    chain: list[Manifest],
    *,
    scratch_url: str | None,
    say: Say = lambda _: None,
) -> VerifyReport:
    last = chain[-1]
    report = VerifyReport(backup=last.id, chain=[m.id for m in chain])
    report.files = sum(len(m.files) for m in chain)
    with tempfile.TemporaryDirectory(prefix="plait-verify-") as tmp:
        work = Path(tmp)
        fetched, problems = check_chain(target, chain, work, say)
        report.problems.extend(problems)
        if problems:
            return report
        try:
            _test_restore(fetched, work, scratch_url, report, say)
        except PlaitError as exc:
            report.problems.append(f"test restore failed: {exc}")
    return report


def _test_restore(
    fetched: Fetched, work: Path, scratch_url: str | None, report: VerifyReport, say: Say
) -> None:
    full = fetched.chain[0]
    if full.method != "pg_dump":
        report.restored_into = "sqlite"
        _check_restored(fetched, f"sqlite:///{work / 'verify.db'}", report, say)
        return
    entries = backup_pg.list_archive(fetched.folders[full.id] / PG_FILE)
    say(f"{full.id}/{PG_FILE}: {entries} archive entries")
    if scratch_url is None:
        report.warnings.append(
            "the pg_dump archive was read but not test-restored: no PostgreSQL server to "
            "restore it into (give --scratch-url postgresql+psycopg://…)"
        )
        return
    with ExitStack() as stack:
        try:
            url = stack.enter_context(backup_pg.scratch_database(scratch_url))
        except backup_pg.ScratchUnavailable as exc:
            report.warnings.append(f"the pg_dump archive was read but not test-restored: {exc}")
            return
        report.restored_into = "postgresql"
        _check_restored(fetched, url, report, say)


def _check_restored(fetched: Fetched, url: str, report: VerifyReport, say: Say) -> None:
    last = fetched.last
    materialize(fetched, url, say)
    counts = store_rows(url)
    report.tables = counts
    for table, expected in sorted(last.tables.items()):
        got = counts.get(table)
        if got != expected:
            report.problems.append(
                f"table {table}: {got if got is not None else 'no'} rows after the test "
                f"restore, the manifest counted {expected}"
            )
    _open_and_audit(fetched, url, report)


def _open_and_audit(fetched: Fetched, url: str, report: VerifyReport) -> None:
    from plait.security.audit import verify_chain
    from plait.store.accounts import AccountStore
    from plait.store.migrate import open_store

    store = open_store(url)  # migrates a backup of an older schema, as restore would
    try:
        audit = verify_chain(AccountStore(store).export_audit())
        report.audit_entries = audit.checked
        if not audit.ok:
            report.problems.append(
                f"the audit chain is broken at entry {audit.first_bad_seq}: {audit.problem}"
            )
        _check_keys(fetched, store, report)
    finally:
        store.close()


def _check_keys(fetched: Fetched, store: Any, report: VerifyReport) -> None:
    from plait.security.crypto import Keyring
    from plait.store.rekey import key_usage

    last = fetched.last
    if "secret.key" not in last.keys:
        report.warnings.append(
            "the backup holds no secret.key: sealed values need the key kept elsewhere"
        )
        return
    keyring = Keyring.from_file(fetched.folders[last.id] / "keys" / "secret.key")
    unknown = sum(c.get("?", 0) for c in key_usage(store, keyring).values())
    if unknown:
        report.warnings.append(
            f"{unknown} sealed value(s) were sealed with a key the backed-up key file does "
            "not hold (keys from PLAIT_SECRET_KEY are not backed up)"
        )
