"""The restore drill, on SQLite and on PostgreSQL: a real server does real work; a full
backup is taken while it runs, more work happens (new versions, runs, a redaction, a
deleted secret and user), an incremental backup follows while it runs and another once
it stopped; then the store and home are wiped, the chain is restored into a fresh home
and database, and every row of every table — each workflow version, run, step,
attempt, log line, event and audit entry — must be as it was. `plait audit verify`
passes on the restored store, and a server started on it runs a new workflow."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from plait.ops.backup import CreateOptions, create_backup, restore, verify
from plait.ops.backup_target import LocalTarget
from plait.server.compose import build_services
from plait.server.main import Parts
from plait.settings import Settings
from plait.store.redact import RedactPolicy, redact
from plait.store.tables import metadata
from tests.pg import fresh_database
from tests.server.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    LiveServer,
    _Thread,
    free_port,
    start_server,
)

ROOT = Path(__file__).resolve().parents[2]

DRILL = """\
name: drill
description: version {n}
inputs:
  token: {{type: string, secret: true, default: none}}
  who: {{type: string, default: world}}
steps:
  - id: greet
    run: |
      echo "hello ${{{{ inputs.who }}}} v{n} with ${{{{ inputs.token }}}}"
      echo "said=hello ${{{{ inputs.who }}}}" >> "$PLAIT_OUTPUT"
  - id: fan
    for_each: "${{{{ [1, 2] }}}}"
    run: echo "item ${{{{ item }}}}"
outputs:
  said: "${{{{ steps.greet.outputs.said }}}}"
"""

SLOW = """\
name: slow
steps:
  - id: first
    run: echo "started"
  - id: wait
    run: sleep 2; echo "done waiting"
"""

FLAKY = """\
name: flaky
steps:
  - id: try
    run: echo "trying"; exit 3
    retries: {max: 1, backoff: constant, initial: 0.05s}
"""


# -- helpers shared by the backup tests ---------------------------------------------------
def dump_store(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every Plait table, in key order (values as the database returns them)."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            for table in metadata.sorted_tables:
                if table.name in present:
                    query = sa.select(table).order_by(*table.primary_key.columns)
                    out[table.name] = [tuple(r) for r in conn.execute(query)]
    finally:
        engine.dispose()
    return out


def assert_same_store(before: dict[str, Any], after: dict[str, Any]) -> None:
    """The restored store holds exactly the rows of the backed-up one, plus the audit
    entry that records the restore itself."""
    assert set(after) == set(before)
    for table, rows in before.items():
        got = after[table]
        if table == "audit_log":
            assert got[: len(rows)] == rows, "audit entries differ"
            assert [r[3] for r in got[len(rows) :]] == ["backup.restore"]
            continue
        assert got == rows, f"table {table} differs after the restore"


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    full_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "src"), full_env.get("PYTHONPATH")])
    )
    return subprocess.run(
        [sys.executable, "-m", "plait.cli", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@contextmanager
def database(kind: str, path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{path / 'plait.db'}"
    else:
        with fresh_database("plait_backup") as url:
            yield url


# -- talking to the server ------------------------------------------------------------------
def deploy(server: LiveServer, source: str) -> dict[str, Any]:
    with server.client() as c:
        r = c.post("/api/v1/workflows", content=source.encode(),
                   headers={"Content-Type": "application/yaml"})  # fmt: skip
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def start_run(server: LiveServer, name: str, inputs: dict[str, Any] | None = None) -> str:
    with server.client() as c:
        r = c.post(f"/api/v1/workflows/{name}/runs", json={"inputs": inputs or {}})
    assert r.status_code in (200, 201, 202), r.text
    return str(r.json()["id"])


def run_to_end(server: LiveServer, name: str, inputs: dict[str, Any] | None = None) -> str:
    return wait_end(server, start_run(server, name, inputs))


def wait_end(server: LiveServer, run_id: str) -> str:
    with server.client() as c:
        deadline = time.monotonic() + 60
        while True:
            status = c.get(f"/api/v1/runs/{run_id}").json()["status"]
            if status in ("succeeded", "failed", "cancelled", "timed_out"):
                return run_id
            assert time.monotonic() < deadline, f"run {run_id} still {status}"
            time.sleep(0.05)


def first_activity(server: LiveServer) -> str:
    for n in (1, 2, 3):
        deploy(server, DRILL.format(n=n))
    with server.client() as c:
        assert c.post("/api/v1/workflows/drill/rollback", json={"version": 2}).status_code == 200
        r = c.put("/api/v1/secrets/default/API_TOKEN", json={"value": "tok-123"})
        assert r.status_code == 204, r.text
        r = c.post(
            "/api/v1/users", json={"name": "bob", "password": "tangerine-lighthouse-orbit-42"}
        )
        assert r.status_code == 201, r.text
    deploy(server, FLAKY)
    deploy(server, SLOW)
    run_to_end(server, "drill", {"token": "s3cr3t-value", "who": "ops"})
    run_to_end(server, "flaky")
    slow = start_run(server, "slow")  # still running when the full backup is taken
    with server.client() as c:
        deadline = time.monotonic() + 30
        while c.get(f"/api/v1/runs/{slow}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    return slow


def second_activity(server: LiveServer, slow: str) -> None:
    wait_end(server, slow)
    deploy(server, DRILL.format(n=4))
    run_to_end(server, "drill", {"token": "another-secret"})
    run_to_end(server, "flaky")
    with server.client() as c:
        assert c.delete("/api/v1/secrets/default/API_TOKEN").status_code == 204
        assert c.delete("/api/v1/users/bob").status_code == 204
        r = c.post(
            "/api/v1/users", json={"name": "carol", "password": "quiet-harbor-violin-sunrise-77"}
        )
        assert r.status_code == 201, r.text
    # Rewrites finished runs in place: only fingerprints, not times, can see that.
    report = redact(server.services.store, RedactPolicy(cutoff=time.time() + 1, workflow="flaky"))
    assert report.runs == 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_restore_drill(kind: str, tmp_path: Path) -> None:
    dest = LocalTarget(str(tmp_path / "backups"))
    home = tmp_path / "home"
    with database(kind, home) as url:
        settings = Settings(home=home, database_url=url)
        server, runner = start_server(home, url)
        try:
            slow = first_activity(server)
            full = create_backup(settings, dest, CreateOptions("full"))  # while it runs
            second_activity(server, slow)
            inc1 = create_backup(settings, dest, CreateOptions("incremental"))
        finally:
            runner.stop()
            server.services.store.close()
        inc2 = create_backup(settings, dest, CreateOptions("incremental"))
        expected = dump_store(url)
        keys = {p.name: p.read_bytes() for p in (home / "keys").iterdir()}

    assert full.kind == "full"
    assert full.method == ("sqlite-backup" if kind == "sqlite" else "pg_dump")
    assert (inc1.parent, inc2.parent) == (full.id, inc1.id)
    assert inc1.changes["runs"]["rows"] >= 3  # new and redacted runs
    assert inc1.changes["secrets"]["deleted"] == 1
    assert inc1.changes["users"]["deleted"] == 1
    assert inc2.tables["runs"] == len(expected["runs"]) == 5
    for table in ("workflow_versions", "steps", "attempts", "logs", "events", "audit_log"):
        assert expected[table], f"the drill wrote no {table}"
    report = verify(dest)
    assert report.ok, report.problems
    assert report.chain == [full.id, inc1.id, inc2.id]

    # Disaster: the home and the database are gone; restore into fresh ones.
    home2 = tmp_path / "restored"
    with database(kind, home2) as url2:
        settings2 = Settings(home=home2, database_url=url2)
        restored = restore(settings2, dest)
        assert restored.chain == [full.id, inc1.id, inc2.id]
        assert_same_store(expected, dump_store(url2))
        assert {p.name: p.read_bytes() for p in (home2 / "keys").iterdir()} == keys
        assert oct((home2 / "keys" / "secret.key").stat().st_mode & 0o777) == "0o600"

        env = {"PLAIT_HOME": str(home2), "PLAIT_DATABASE_URL": url2}
        audit = run_cli("audit", "verify", "--json", env=env, cwd=tmp_path)
        assert audit.returncode == 0, audit.stderr
        assert '"ok": true' in audit.stdout

        _restored_server_works(settings2, expected)


def _restored_server_works(settings: Settings, expected: dict[str, Any]) -> None:
    """A server on the restored store logs the old admin in, shows the old runs with
    their secrets masked, and runs the current version of a workflow (ids continue)."""
    services = build_services(settings)
    port = free_port()
    runner = _Thread(services, Parts(host="127.0.0.1", port=port, poll_interval=0.05))
    runner.start()
    try:
        live = LiveServer(f"http://127.0.0.1:{port}", services, "")
        live.token = live.login(ADMIN_USER, ADMIN_PASSWORD)
        with live.client() as c:
            workflow = c.get("/api/v1/workflows/drill").json()
            assert workflow["version"] == 4
            assert "v4" in workflow["source"]
            runs = c.get("/api/v1/runs", params={"limit": 100}).json()["items"]
            assert len(runs) == len(expected["runs"])
        new_run = run_to_end(live, "drill", {"token": "after-restore"})
        with live.client() as c:
            detail = c.get(f"/api/v1/runs/{new_run}").json()
            assert detail["status"] == "succeeded", detail
            logs = c.get(f"/api/v1/runs/{new_run}/logs").json()
            assert any("v4" in str(item) for item in logs["items"]), logs
    finally:
        runner.stop()
        services.store.close()
