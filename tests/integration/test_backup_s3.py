"""Backups in an S3-compatible bucket (moto's server on 127.0.0.1): the drill through the
`plait backup` commands — full and incremental to s3://, list, verify, restore into a
fresh home — with credentials from the environment or from an s3 connection; and the
answers to a bucket that does not exist or a damaged object."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.actions import s3 as s3mod
from plait.actions.s3 import S3Config
from tests.integration.test_backup_chain import make_runs, sqlite_settings
from tests.integration.test_backup_drill import assert_same_store, dump_store, run_cli

BUCKET = "plait-backups"
pytestmark = pytest.mark.slow

KEYS = {"AWS_ACCESS_KEY_ID": "AKIAPLAITBACKUP", "AWS_SECRET_ACCESS_KEY": "backup-secret-key-42"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    config = S3Config(
        endpoint_url=url,
        region="us-east-1",
        addressing_style="path",
        access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
        secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    client = s3mod._make_client(config, 5, 10)
    client.create_bucket(Bucket=BUCKET)
    client.close()
    yield url
    server.stop()


def s3_env(endpoint: str, home: Path) -> dict[str, str]:
    return {
        "PLAIT_HOME": str(home),
        "PLAIT_DATABASE_URL": f"sqlite:///{home / 'plait.db'}",
        "PLAIT_S3_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        **KEYS,
    }


def cli_json(*args: str, env: dict[str, str], cwd: Path) -> Any:
    out = run_cli(*args, "--json", env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_backup_to_s3_and_restore_from_it(endpoint: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = sqlite_settings(home)
    env = s3_env(endpoint, home)
    dest = f"s3://{BUCKET}/drill/prod"
    make_runs(settings, "hello", 2, tmp_path)
    full = cli_json("backup", "create", "--to", dest, env=env, cwd=tmp_path)
    make_runs(settings, "hello", 1, tmp_path)
    inc = cli_json("backup", "create", "--incremental", "--to", dest, env=env, cwd=tmp_path)
    assert inc["parent"] == full["id"]
    expected = dump_store(settings.database_url)

    listed = cli_json("backup", "list", "--from", dest, env=env, cwd=tmp_path)
    assert [(r["id"], r["kind"], r["parent"]) for r in listed] == [
        (full["id"], "full", None),
        (inc["id"], "incremental", full["id"]),
    ]
    report = cli_json("backup", "verify", "--from", dest, env=env, cwd=tmp_path)
    assert report["ok"] is True
    assert report["chain"] == [full["id"], inc["id"]]
    assert report["restored_into"] == "sqlite"

    # Restore on another machine: credentials from an s3 connection in a variable,
    # naming the backup by its own prefix.
    home2 = tmp_path / "restored"
    env2 = {
        "PLAIT_HOME": str(home2),
        "PLAIT_DATABASE_URL": f"sqlite:///{home2 / 'plait.db'}",
        "PLAIT_CONNECTION_BACKUPS": json.dumps(
            {
                "type": "s3",
                "endpoint_url": endpoint,
                "region": "us-east-1",
                "addressing_style": "path",
                "access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
                "secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"],
            }
        ),
    }
    restored = cli_json(
        "backup", "restore", "--from", f"{dest}/{inc['id']}", "--connection", "backups",
        env=env2, cwd=tmp_path,
    )  # fmt: skip
    assert restored["chain"] == [full["id"], inc["id"]]
    assert_same_store(expected, dump_store(f"sqlite:///{home2 / 'plait.db'}"))
    assert (home2 / "keys" / "secret.key").read_bytes() == (
        home / "keys" / "secret.key"
    ).read_bytes()

    pruned = cli_json("backup", "prune", "--from", dest, "--dry-run", env=env, cwd=tmp_path)
    assert pruned["removed"] == []


def test_s3_bad_input_exits_2(endpoint: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = s3_env(endpoint, home)
    make_runs(sqlite_settings(home), "hello", 1, tmp_path)
    missing = run_cli("backup", "list", "--from", "s3://no-such-bucket/x", env=env, cwd=tmp_path)
    assert missing.returncode == 2
    assert "no-such-bucket" in missing.stderr
    assert "does not exist" in missing.stderr

    dest = f"s3://{BUCKET}/damaged"
    made = cli_json("backup", "create", "--to", dest, env=env, cwd=tmp_path)
    client = s3mod._make_client(
        S3Config(
            endpoint_url=endpoint,
            region="us-east-1",
            addressing_style="path",
            access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
        ),
        5,
        10,
    )
    key = f"damaged/{made['id']}/store.sqlite.gz"
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=body[:-1] + bytes([body[-1] ^ 1]))
    client.close()
    time.sleep(0.1)
    bad = run_cli("backup", "verify", "--from", dest, env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert f"{made['id']}/store.sqlite.gz: checksum mismatch" in bad.stderr
