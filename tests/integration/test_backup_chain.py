"""Backup chains on real stores: what an incremental backup holds, restoring a backup of
an older schema, moving a store between databases, refusals, damage that verify finds,
and retention that never breaks a chain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from plait.actions.registry import ActionRegistry
from plait.local import LocalSession
from plait.model import load_workflow
from plait.ops.backup import (
    BadBackup,
    CreateOptions,
    create_backup,
    list_backups,
    locate,
    prune,
    restore,
    verify,
)
from plait.ops.backup_create import Kind
from plait.ops.backup_manifest import Manifest, plan_prune
from plait.ops.backup_scan import ChainMismatch
from plait.ops.backup_target import LocalTarget, TargetMissing
from plait.security.audit import AuditEvent
from plait.settings import Settings
from plait.store import migrate
from plait.store.accounts import AccountStore
from plait.store.redact import RedactPolicy, redact
from plait.store.server import ServerStore
from plait.store.sql import SqlStore
from tests.integration.test_backup_drill import assert_same_store, dump_store
from tests.pg import fresh_database

DAY = 86400.0

HELLO = """\
name: {name}
inputs:
  token: {{type: string, secret: true, default: s3cr3t}}
steps:
  - id: say
    run: echo "hello from {name} ${{{{ inputs.token }}}}"
"""


def make_runs(settings: Settings, name: str, count: int, workdir: Path) -> list[str]:
    source = HELLO.format(name=name)
    plan = load_workflow(source, f"{name}.yaml", ActionRegistry().input_models()).plan

    async def go() -> list[str]:
        session = LocalSession(settings)
        try:
            results = [
                await session.run(plan, source, {"token": f"tok-{i}"}, workdir=workdir)
                for i in range(count)
            ]
        finally:
            await session.close()
        return [r.run_id for r in results]

    return asyncio.run(go())


def sqlite_settings(path: Path) -> Settings:
    return Settings(home=path, database_url=f"sqlite:///{path / 'plait.db'}")


@contextmanager
def sealed_store(settings: Settings) -> Iterator[tuple[SqlStore, ServerStore]]:
    """The store of a home, sealing with the home's key."""
    from plait.security.crypto import Keyring

    sql = migrate.open_store(settings.database_url, Keyring.load_or_create(settings.home))
    try:
        yield sql, ServerStore(sql)
    finally:
        sql.close()


def test_an_incremental_holds_only_what_changed(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path / "home")
    dest = LocalTarget(str(tmp_path / "backups"))
    make_runs(settings, "hello", 2, tmp_path)
    with sealed_store(settings) as (_, server):
        server.put_secret("default", "KEEP", "kept", "test")
        server.put_secret("default", "GONE", "going", "test")
    now = time.time()
    # Backups "taken later": the runs finished long before them, so they are settled.
    full = create_backup(settings, dest, CreateOptions("full"), clock=lambda: now + 3600)
    quiet = create_backup(settings, dest, CreateOptions("incremental"), clock=lambda: now + 7200)
    assert quiet.parent == full.id
    assert quiet.changes == {}, "nothing changed, nothing copied"

    make_runs(settings, "other", 1, tmp_path)
    with sealed_store(settings) as (sql, server):
        server.delete_secret("default", "GONE")
        assert redact(sql, RedactPolicy(cutoff=time.time() + 1, workflow="hello")).runs == 2
    inc = create_backup(settings, dest, CreateOptions("incremental"), clock=lambda: now + 9000)

    assert inc.parent == quiet.id
    assert inc.changes["runs"] == {"rows": 3, "deleted": 0}  # two redacted, one new
    assert inc.changes["secrets"] == {"rows": 0, "deleted": 1}
    assert inc.changes["logs"]["rows"] == 1  # the redacted runs' lines are gone
    assert inc.changes["workflow_versions"]["rows"] == 1
    expected = dump_store(settings.database_url)

    restored = sqlite_settings(tmp_path / "restored")
    report = restore(restored, dest)
    assert report.chain == [full.id, quiet.id, inc.id]
    assert_same_store(expected, dump_store(restored.database_url))
    # The restored key opens the secrets the backup holds.
    with sealed_store(restored) as (_, server):
        assert server.secret_values("default", ["KEEP", "GONE"]) == {"KEEP": "kept"}


def test_an_incremental_of_another_store_is_refused(tmp_path: Path) -> None:
    dest = LocalTarget(str(tmp_path / "backups"))
    for name in ("a", "b"):
        settings = sqlite_settings(tmp_path / name)
        store = migrate.open_store(settings.database_url)
        event = AuditEvent(at=time.time(), actor=name, action="x", resource="y", outcome="success")
        AccountStore(store).append_audit(event)
        store.close()
    create_backup(sqlite_settings(tmp_path / "a"), dest, CreateOptions("full"))
    with pytest.raises(ChainMismatch, match=r"another\s+store"):
        create_backup(sqlite_settings(tmp_path / "b"), dest, CreateOptions("incremental"))


def test_an_incremental_without_a_full_backup_is_a_full_one(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path / "home")
    make_runs(settings, "hello", 1, tmp_path)
    said: list[str] = []
    made = create_backup(
        settings, LocalTarget(str(tmp_path / "b")), CreateOptions("incremental"), say=said.append
    )
    assert made.kind == "full"
    assert made.parent is None
    assert any("no backup in the destination yet" in s for s in said)


@pytest.mark.parametrize("method", ["auto", "logical"])
def test_a_backup_of_an_older_schema_is_migrated_on_restore(tmp_path: Path, method: str) -> None:
    settings = sqlite_settings(tmp_path / "home")
    migrate.upgrade(settings.database_url, "0006")
    engine = sa.create_engine(settings.database_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        tables = sa.MetaData()
        tables.reflect(bind=conn, only=["workflows", "workflow_versions", "users"])
        conn.execute(
            tables.tables["workflows"].insert(),
            {"id": 1, "namespace": "default", "name": "old", "current_version_id": 1,
             "created_at": 1.5, "updated_at": 2.5},
        )  # fmt: skip
        conn.execute(
            tables.tables["workflow_versions"].insert(),
            {"id": 1, "workflow_id": 1, "version": 1, "source": "name: old\nsteps: []\n",
             "checksum": "c" * 64, "author": "me", "created_at": 1.5},
        )  # fmt: skip
        conn.execute(
            tables.tables["users"].insert(),
            {"name": "ada", "password_hash": "x", "disabled": False, "created_at": 1.0,
             "failed_logins": 0},
        )  # fmt: skip
    engine.dispose()
    dest = LocalTarget(str(tmp_path / "backups"))
    made = create_backup(settings, dest, CreateOptions("full", method=method))  # type: ignore[arg-type]
    assert made.schema_revision == "0006"
    assert verify(dest).ok

    restored = sqlite_settings(tmp_path / "restored")
    report = restore(restored, dest)
    assert report.schema_revision == migrate.HEAD
    rows = dump_store(restored.database_url)
    assert [r[2] for r in rows["workflows"]] == ["old"]
    assert [r[1] for r in rows["users"]] == ["ada"]


@pytest.mark.postgres
def test_a_logical_backup_moves_a_store_from_postgresql_to_sqlite(tmp_path: Path) -> None:
    with fresh_database("plait_backup") as url:
        settings = Settings(home=tmp_path / "home", database_url=url)
        make_runs(settings, "hello", 2, tmp_path)
        dest = LocalTarget(str(tmp_path / "backups"))
        create_backup(settings, dest, CreateOptions("full", method="logical"))
        make_runs(settings, "hello", 1, tmp_path)
        create_backup(settings, dest, CreateOptions("incremental"))
        expected = dump_store(url)
    moved = sqlite_settings(tmp_path / "sqlite-home")
    restore(moved, dest)
    got = dump_store(moved.database_url)
    for table, rows in expected.items():
        mine = [r for r in got[table] if table != "audit_log" or r[3] != "backup.restore"]
        assert sorted(map(repr, mine)) == sorted(map(repr, rows)), table
    assert len(got["runs"]) == 3
    # and the moved store runs workflows with its ids continuing
    make_runs(moved, "hello", 1, tmp_path)
    assert len(dump_store(moved.database_url)["runs"]) == 4


def test_restore_refuses_a_store_with_data_unless_forced(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path / "home")
    make_runs(settings, "hello", 1, tmp_path)
    dest = LocalTarget(str(tmp_path / "backups"))
    create_backup(settings, dest, CreateOptions("full"))
    target = sqlite_settings(tmp_path / "busy")
    make_runs(target, "busy", 1, tmp_path)
    own_key = (target.keys_dir / "secret.key").read_bytes()
    with pytest.raises(BadBackup, match=r"already holds data .*runs: 1.*--force"):
        restore(target, dest)
    report = restore(target, dest, force=True)
    assert any("before-restore" in n for n in report.notes)
    kept = list(target.keys_dir.glob("secret.key.before-restore-*"))
    assert [p.read_bytes() for p in kept] == [own_key], "the replaced key is kept aside"
    assert (target.keys_dir / "secret.key").read_bytes() == (
        settings.keys_dir / "secret.key"
    ).read_bytes()
    assert [r[1] for r in dump_store(target.database_url)["runs"]] == ["hello"]


def test_verify_names_damaged_and_missing_files(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path / "home")
    make_runs(settings, "hello", 1, tmp_path)
    dest = LocalTarget(str(tmp_path / "backups"))
    full = create_backup(settings, dest, CreateOptions("full"))
    make_runs(settings, "hello", 1, tmp_path)
    inc = create_backup(settings, dest, CreateOptions("incremental"))
    assert verify(dest).ok

    data = tmp_path / "backups" / full.id / "store.sqlite.gz"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    (tmp_path / "backups" / inc.id / "rows" / "runs.jsonl.gz").unlink()
    report = verify(dest)
    assert not report.ok
    assert f"{full.id}/store.sqlite.gz: checksum mismatch" in report.problems
    assert f"{inc.id}/rows/runs.jsonl.gz: missing" in report.problems
    with pytest.raises(BadBackup, match="checksum mismatch"):
        restore(sqlite_settings(tmp_path / "r"), dest)

    (tmp_path / "backups" / inc.id / "manifest.json").unlink()
    with pytest.raises(BadBackup, match=r"no manifest\.json"):
        locate(str(tmp_path / "backups" / inc.id))
    with pytest.raises(TargetMissing, match="no such folder"):
        locate(str(tmp_path / "nowhere"))[0].check(create=False)


def test_prune_keeps_what_kept_backups_build_on(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path / "home")
    make_runs(settings, "hello", 1, tmp_path)
    dest = LocalTarget(str(tmp_path / "backups"))
    now = time.time()
    plan: list[tuple[Kind, float]] = [
        ("full", 100), ("incremental", 95), ("full", 40), ("incremental", 35), ("incremental", 1)
    ]  # fmt: skip
    made = [
        create_backup(settings, dest, CreateOptions(kind), clock=lambda d=days: now - d * DAY)  # type: ignore[misc]
        for kind, days in plan
    ]
    old_full, old_inc, full, inc35, inc1 = made
    assert inc35.parent == full.id
    assert inc1.parent == inc35.id
    (tmp_path / "backups" / "20000101T000000Z-full").mkdir()  # an unfinished one, long ago

    planned = prune(dest, dry_run=True, clock=lambda: now)
    assert planned.removed == sorted([old_full.id, old_inc.id, "20000101T000000Z-full"])
    assert (tmp_path / "backups" / old_full.id).exists()
    report = prune(dest, clock=lambda: now)
    assert report.removed == planned.removed
    assert report.held == {inc35.id: f"{inc1.id} builds on it"}
    listed = list_backups(dest)
    assert [r["id"] for r in listed] == [full.id, inc35.id, inc1.id]
    assert all(r["problem"] is None for r in listed)
    assert verify(dest).ok


def _manifest(name: str, kind: str, parent: str | None, age_days: float, now: float) -> Manifest:
    return Manifest(
        id=name, kind=kind, parent=parent, created_at=now - age_days * DAY,
        plait_version="0", schema_revision="0009", dialect="sqlite", method="logical",
        source="sqlite://",
    )  # fmt: skip


def test_retention_always_keeps_the_newest_chain() -> None:
    now = 1_800_000_000.0
    manifests: dict[str, Manifest | None] = {
        "f": _manifest("f", "full", None, 200, now),
        "i": _manifest("i", "incremental", "f", 150, now),
        "20300101T000000Z-full": None,  # unfinished, in the future: maybe still writing
    }
    plan = plan_prune(manifests, now, 90, 30)
    assert plan.remove == ()
    assert plan.held == {"i": "the newest backup", "f": "i builds on it"}
    broken = plan_prune(
        {"19990101T000000Z-full": None}, now, 90, 30, frozenset({"19990101T000000Z-full"})
    )
    assert broken.remove == ()  # an unreadable manifest is left for a person


def test_a_manifest_that_lies_about_its_kind_is_refused(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path / "home")
    make_runs(settings, "hello", 1, tmp_path)
    dest = LocalTarget(str(tmp_path / "backups"))
    full = create_backup(settings, dest, CreateOptions("full"))
    path = tmp_path / "backups" / full.id / "manifest.json"
    data = json.loads(path.read_text())
    data["kind"] = "incremental"
    path.write_text(json.dumps(data))
    listed = list_backups(dest)
    assert listed[0]["complete"] is False
    assert "names its parent" in listed[0]["problem"]
    with pytest.raises(BadBackup, match="names its parent"):
        verify(dest, full.id)


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("sqlite", "auto"),
        ("sqlite", "logical"),
        pytest.param("postgres", "auto", marks=pytest.mark.postgres),
        pytest.param("postgres", "logical", marks=pytest.mark.postgres),
    ],
)
def test_backups_are_consistent_while_plait_writes(kind: str, method: str, tmp_path: Path) -> None:
    """A writer appends audit entries and workflow versions all along; every backup's
    rows and counts still describe one instant (verify's test restore checks both)."""
    import threading

    home = tmp_path / "home"
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{home / 'plait.db'}"
        else:
            url = stack.enter_context(fresh_database("plait_backup"))
        settings = Settings(home=home, database_url=url)
        store = migrate.open_store(url)
        stack.callback(store.close)
        accounts = AccountStore(store)
        stop = threading.Event()
        written = [0]

        def write() -> None:
            while not stop.is_set():
                n = written[0]
                accounts.append_audit(
                    AuditEvent(at=time.time(), actor="w", action="a", resource=str(n),
                               outcome="success")
                )  # fmt: skip
                store.save_version("default", f"wf{n % 3}", f"name: wf{n}\n", f"{n:064d}", "w")
                written[0] += 1

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        try:
            while written[0] < 20:
                time.sleep(0.01)
            dest = LocalTarget(str(tmp_path / "backups"))
            full = create_backup(settings, dest, CreateOptions("full", method=method))  # type: ignore[arg-type]
            inc = create_backup(settings, dest, CreateOptions("incremental"))
        finally:
            stop.set()
            thread.join(30)
        assert full.tables["audit_log"] < inc.tables["audit_log"] <= written[0]
        for backup in (full.id, inc.id):
            report = verify(dest, backup, settings=settings)
            assert report.ok, report.problems
            assert report.audit_entries == (full if backup == full.id else inc).tables["audit_log"]
