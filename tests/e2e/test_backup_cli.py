"""``plait backup …`` as a user runs it: the real command in a subprocess on a temporary
``$PLAIT_HOME`` — create, list, verify, restore and prune, their ``--json`` output, the
exit codes of bad input, and the scheduled backup workflow that docs/operations.md
shows, run with ``plait run``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.slow

Plait = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def plait(plait_env: dict[str, str], tmp_path: Path) -> Plait:
    """`plait ARGS…` on the test's home (``env``: other variables for this call)."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        if args[:1] == ("run",):
            args = (*args, "-q", "--results-dir", str(tmp_path / "results"))
        return subprocess.run(
            [sys.executable, "-m", "plait.cli", *args],
            cwd=ROOT,
            env=env or plait_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def busy_home(plait: Plait) -> None:
    """A home with two finished runs."""
    for name in ("Ada", "Bo"):
        out = plait("run", str(EXAMPLES / "hello.yaml"), "-i", f"name={name}")
        assert out.returncode == 0, out.stderr


@pytest.mark.usefixtures("busy_home")
def test_create_list_verify_restore(
    plait: Plait, plait_env: dict[str, str], tmp_path: Path
) -> None:
    dest = str(tmp_path / "backups")
    full = plait("backup", "create", "--to", dest, "--json")
    assert full.returncode == 0, full.stderr
    made = json.loads(full.stdout)
    assert made["kind"] == "full"
    assert made["method"] == "sqlite-backup"
    assert made["tables"]["runs"] == 2
    assert {f["path"] for f in made["files"]} >= {"store.sqlite.gz", "keys/secret.key"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in made["files"])
    assert "holds the keys" in full.stderr
    folder = tmp_path / "backups" / made["id"]
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct((folder / "keys" / "secret.key").stat().st_mode & 0o777) == "0o600"

    plait("run", str(EXAMPLES / "hello.yaml"))
    inc = plait("backup", "create", "--incremental", "--to", dest)
    assert inc.returncode == 0, inc.stderr
    assert re.match(rf"incremental backup \S+ on {made['id']}: ", inc.stdout)

    listed = plait("backup", "list", "--from", dest)
    assert listed.returncode == 0, listed.stderr
    assert made["id"] in listed.stdout
    assert "incremental" in listed.stdout

    ok = plait("backup", "verify", "--from", dest, timeout=180)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: ")
    assert "tables match the manifest" in ok.stdout

    fresh = {**plait_env, "PLAIT_HOME": str(tmp_path / "restored")}
    back = plait("backup", "restore", "--from", dest, "--json", env=fresh, timeout=180)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["tables"]["runs"] == 3
    shown = plait("runs", "list", "--json", env=fresh)
    assert len(json.loads(shown.stdout)) == 3
    audit = plait("audit", "verify", env=fresh)
    assert audit.returncode == 0, audit.stderr

    again = plait("backup", "restore", "--from", dest, env=fresh)
    assert again.returncode == 2
    assert "already holds data" in again.stderr
    assert "--force" in again.stderr
    assert "Traceback" not in again.stderr

    pruned = plait("backup", "prune", "--from", dest, "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["removed"] == []


@pytest.mark.usefixtures("busy_home")
def test_bad_input_exits_2_and_names_what(
    plait: Plait, plait_env: dict[str, str], tmp_path: Path
) -> None:
    nowhere = str(tmp_path / "nowhere")
    for command in ("verify", "restore", "list", "prune"):
        out = plait("backup", command, "--from", nowhere)
        assert out.returncode == 2, (command, out.stderr)
        assert f"{nowhere}: no such folder" in out.stderr
        assert "Traceback" not in out.stderr

    as_json = plait("backup", "verify", "--from", nowhere, "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout) == {
        "ok": False, "error": f"{nowhere}: no such folder", "exit_code": 2}  # fmt: skip

    both = plait("backup", "create", "--full", "--incremental", "--to", str(tmp_path / "b"))
    assert both.returncode == 2
    assert "exclude each other" in both.stderr
    method = plait("backup", "create", "--method", "magic", "--to", str(tmp_path / "b"))
    assert method.returncode == 2

    dest = tmp_path / "backups"
    made = json.loads(plait("backup", "create", "--to", str(dest), "--json").stdout)
    damaged = dest / made["id"] / "store.sqlite.gz"
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0x01
    damaged.write_bytes(bytes(data))
    bad = plait("backup", "verify", "--from", str(dest))
    assert bad.returncode == 2
    assert f"{made['id']}/store.sqlite.gz: checksum mismatch" in bad.stderr
    assert "NOT sound" in bad.stdout
    damaged_json = plait("backup", "verify", "--from", str(dest), "--json")
    assert damaged_json.returncode == 2
    assert json.loads(damaged_json.stdout)["ok"] is False

    (dest / made["id"] / "manifest.json").unlink()
    gone = plait("backup", "verify", "--from", str(dest / made["id"]))
    assert gone.returncode == 2
    assert "no manifest.json" in gone.stderr
    empty = plait("backup", "verify", "--from", str(dest))
    assert empty.returncode == 2
    assert "no complete backup" in empty.stderr

    no_store = plait("backup", "create", "--to", str(dest),
                     env={**plait_env, "PLAIT_HOME": str(tmp_path / "empty-home")})  # fmt: skip
    assert no_store.returncode == 2
    assert "nothing to back up" in no_store.stderr


def test_every_backup_command_has_help(plait: Plait) -> None:
    for command in ("create", "verify", "restore", "prune", "list"):
        out = plait("backup", command, "--help")
        assert out.returncode == 0, out.stderr
        assert "--json" in out.stdout


def _scheduled_backup_workflow() -> str:
    """The workflow docs/operations.md shows for scheduling backups."""
    text = (ROOT / "docs" / "operations.md").read_text()
    found = re.search(r"```yaml\n(# plait-backup\.yaml\n.*?)```", text, re.S)
    assert found, "docs/operations.md lost its backup workflow"
    return found.group(1)


@pytest.mark.usefixtures("busy_home")
def test_the_documented_backup_workflow_runs(
    plait: Plait, plait_env: dict[str, str], tmp_path: Path
) -> None:
    workflow = tmp_path / "plait-backup.yaml"
    workflow.write_text(_scheduled_backup_workflow())
    env = {**plait_env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    dest = tmp_path / "backups"
    for kind in ("full", "incremental"):
        out = plait("run", str(workflow), "-i", f"kind={kind}", "-i", f"dest={dest}",
                    "--workdir", str(tmp_path), env=env, timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
    listed = json.loads(plait("backup", "list", "--from", str(dest), "--json").stdout)
    assert [r["kind"] for r in listed] == ["full", "incremental"]
    # The backup was taken while the run that took it was running: it holds that run.
    assert listed[0]["runs"] == 3
    assert (tmp_path / "backup.json").is_file()
