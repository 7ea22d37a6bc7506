"""``plait audit``, ``plait secrets`` and ``plait runs redact`` as subprocesses on a
temporary ``$PLAIT_HOME``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from plait.security.crypto import Keyring
from tests.e2e.conftest import EXAMPLES, ROOT

PLANTED = "Zq7-planted-name"

Done = subprocess.CompletedProcess[str]
Ops = Callable[..., Done]


def _module() -> str:
    """``plait.cli`` once it registers the operations commands; until then the
    ``plait.cli_ops`` entry point, which adds them to the same CLI."""
    from plait import cli

    wired = any(g.name == "audit" for g in cli.app.registered_groups)
    return "plait.cli" if wired else "plait.cli_ops"


@pytest.fixture
def ops(plait_env: dict[str, str]) -> Ops:
    module = _module()

    def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Done:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env={**plait_env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def home(env: dict[str, str]) -> Path:
    return Path(env["PLAIT_HOME"])


def blobs(db: Path) -> list[bytes]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT sealed_value FROM secrets UNION ALL SELECT sealed_inputs FROM runs "
            "UNION ALL SELECT sealed_outputs FROM steps"
        ).fetchall()
    return [bytes(r[0]) for r in rows if r[0]]


def test_secrets_set_list_rotate_retire_delete(ops: Ops, plait_env: dict[str, str]) -> None:
    done = ops("secrets", "set", "ops", "DB_PASSWORD", "--value-stdin", stdin="s3cr3t-xyz\n")
    assert done.returncode == 0, done.stderr
    assert "created secret ops/DB_PASSWORD" in done.stdout
    done = ops("secrets", "set", "*", "SHARED", "--value", "v2")
    assert done.returncode == 0
    assert "shell history" in done.stderr
    listed = json.loads(ops("secrets", "list", "--json").stdout)
    assert [(s["namespace"], s["name"]) for s in listed] == [
        ("*", "SHARED"),
        ("ops", "DB_PASSWORD"),
    ]
    assert "s3cr3t" not in ops("secrets", "list").stdout
    assert ops("secrets", "list", "--namespace", "ops").stdout.count("/") == 1

    done = ops("secrets", "rotate-key", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["key_id"] == "2"
    assert report["resealed"] == 2
    assert report["remaining"] == 0
    keyring = Keyring.from_file(home(plait_env) / "keys" / "secret.key")
    assert keyring.key_ids == ["1", "2"]
    db = home(plait_env) / "plait.db"
    assert {keyring.key_id_of(b) for b in blobs(db)} == {"2"}
    assert b"s3cr3t-xyz" not in db.read_bytes()

    keys = json.loads(ops("secrets", "keys", "--json").stdout)
    assert {k["id"]: k["values"] for k in keys["keys"]} == {"1": 0, "2": 2}

    done = ops("secrets", "rotate-key", "--retire-old")
    assert done.returncode == 0, done.stderr
    assert "retired key(s) 1" in done.stdout
    keyring = Keyring.from_file(home(plait_env) / "keys" / "secret.key")
    assert keyring.key_ids == ["3"]
    assert {keyring.key_id_of(b) for b in blobs(db)} == {"3"}

    assert ops("secrets", "delete", "ops", "DB_PASSWORD").returncode == 0
    done = ops("secrets", "delete", "ops", "DB_PASSWORD")
    assert done.returncode == 2
    assert "not found" in done.stderr
    assert ops("secrets", "set", "ops", "bad-name", "--value-stdin", stdin="x").returncode == 2


def test_rotate_key_with_env_keys_explains_how(ops: Ops) -> None:
    env = {"PLAIT_SECRET_KEY": "A" * 43 + "="}
    done = ops("secrets", "rotate-key", env=env)
    assert done.returncode == 2
    assert "PLAIT_SECRET_KEY" in done.stderr
    assert "FIRST" in done.stderr
    done = ops("secrets", "rotate-key", "--reseal-only", env=env)
    assert done.returncode == 0, done.stderr


def test_rotation_continues_after_an_interruption(ops: Ops, plait_env: dict[str, str]) -> None:
    for i in range(3):
        ops("secrets", "set", "ops", f"S{i}", "--value-stdin", stdin=f"v{i}")
    keys = home(plait_env) / "keys"
    # As if a rotation added key 2 and was killed before it re-sealed anything.
    keyring = Keyring.from_file(keys / "secret.key")
    keyring.rotate()
    (keys / "rotation.pending").write_text("2\n")
    done = ops("secrets", "rotate-key")
    assert done.returncode == 0, done.stderr
    assert "continuing the rotation to key 2" in done.stderr
    assert Keyring.from_file(keys / "secret.key").key_ids == ["1", "2"]  # no third key
    assert {keyring.key_id_of(b) for b in blobs(home(plait_env) / "plait.db")} == {"2"}
    assert not (keys / "rotation.pending").exists()


def test_audit_verify_detects_an_edited_and_a_deleted_entry(
    ops: Ops, plait_env: dict[str, str], tmp_path: Path
) -> None:
    for i in range(4):
        assert ops("secrets", "set", "ops", f"S{i}", "--value-stdin", stdin="x").returncode == 0
    done = ops("audit", "verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 4 entries")

    lines = ops("audit", "export").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4]
    assert json.loads(lines[0])["action"] == "secrets.create"
    assert ops("audit", "export", "--since", "2999-01-01").stdout == ""
    assert len(ops("audit", "export", "--since", "1h").stdout.splitlines()) == 4

    db = home(plait_env) / "plait.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    done = ops("audit", "verify", "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert (result["first_bad_seq"], result["kind"], result["checked"]) == (2, "edited", 1)
    human = ops("audit", "verify")
    assert human.returncode == 1
    assert "broken at entry 2 (edited)" in human.stderr

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_log SET actor = 'cli' WHERE seq = 2")  # not the original
        conn.execute("DELETE FROM audit_log WHERE seq = 3")
    result = json.loads(ops("audit", "verify", "--json").stdout)
    assert result["ok"] is False
    assert result["first_bad_seq"] in (2, 3)


def test_audit_verify_of_an_empty_log(ops: Ops) -> None:
    assert ops("audit", "verify").stdout.startswith("ok: 0 entries")


def test_runs_redact_removes_old_data_and_keeps_recent_runs(
    ops: Ops, plait_env: dict[str, str], tmp_path: Path
) -> None:
    old = subprocess.run(
        [sys.executable, "-m", "plait.cli", "run", str(EXAMPLES / "hello.yaml"), "-q",
         "-i", f"name={PLANTED}", "--results-dir", str(tmp_path / "results")],
        cwd=tmp_path, env=plait_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert old.returncode == 0, old.stderr
    with sqlite3.connect(home(plait_env) / "plait.db") as conn:  # age it by 100 days
        conn.execute("UPDATE runs SET finished_at = finished_at - 8640000")
    recent = subprocess.run(
        [sys.executable, "-m", "plait.cli", "run", str(EXAMPLES / "hello.yaml"), "-q",
         "-i", "name=Recent-keep", "--results-dir", str(tmp_path / "results")],
        cwd=tmp_path, env=plait_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert recent.returncode == 0, recent.stderr

    dry = json.loads(ops("runs", "redact", "--older-than", "90d", "--dry-run", "--json").stdout)
    assert dry["dry_run"] is True
    assert dry["runs"] == 1
    assert dry["log_lines"] >= 1
    done = ops("runs", "redact", "--older-than", "90d")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("redacted 1 run(s)")

    data = b"".join(p.read_bytes() for p in home(plait_env).glob("plait.db*"))
    assert PLANTED.encode() not in data
    assert b"Recent-keep" in data
    listed = ops("runs", "list", "--json")
    statuses = [r["status"] for r in json.loads(listed.stdout)]
    assert statuses == ["succeeded", "succeeded"]  # history and statuses remain
    assert ops("audit", "verify").stdout.startswith("ok: 1 entries")
    assert ops("runs", "redact", "--older-than", "soon").returncode == 2
