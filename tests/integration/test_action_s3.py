"""The s3 action against a real S3-compatible HTTP server (moto's) on 127.0.0.1: called
directly, through the runtime, and through the `plait run` command."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.actions import s3 as s3mod
from plait.actions.base import ActionContext, ActionFailed, ActionResult
from plait.actions.connections import Connection
from plait.actions.s3 import S3Action, S3Config, S3Connection, S3Input
from plait.errors import PlaitError
from plait.local import LocalSession
from plait.model import load_workflow
from plait.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"access_key_id": "AKIAPLAITTEST", "secret_access_key": "plait-secret-key-42"}


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
    config = S3Config(endpoint_url=url, region="us-east-1", addressing_style="path", **KEYS)  # type: ignore[arg-type]
    client = s3mod._make_client(config, 5, 10)
    for name in ("plait-data", "plait-other"):
        client.create_bucket(Bucket=name)
    client.close()
    yield url
    server.stop()


@pytest.fixture
def conn_config(endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "region": "us-east-1", "addressing_style": "path", **KEYS}


@pytest.fixture
async def action() -> AsyncIterator[S3Action]:
    action = S3Action()
    yield action
    await action.aclose()


def make_ctx(workdir: Path, connections: dict[str, Connection] | None = None) -> ActionContext:
    known = connections or {}

    def resolve(name: str) -> Connection:
        if name not in known:
            raise PlaitError(f"no connection named {name!r}")
        return known[name]

    return ActionContext(
        run_id="r1",
        workflow="wf",
        step="s",
        attempt=1,
        workdir=workdir,
        env={},
        log=lambda stream, line: None,
        mask=lambda text: text,
        connections=resolve,
    )


@pytest.fixture
def ctx(tmp_path: Path, conn_config: dict[str, Any]) -> ActionContext:
    store = Connection("store", "s3", {**conn_config, "bucket": "plait-data"})
    nobucket = Connection("nobucket", "s3", conn_config)
    smtp = Connection("mail", "smtp", {"host": "x"})
    return make_ctx(tmp_path, {"store": store, "nobucket": nobucket, "mail": smtp})


async def call(action: S3Action, ctx: ActionContext, **kw: Any) -> dict[str, Any]:
    kw.setdefault("connection", "store")
    result: ActionResult = await action.execute(ctx, S3Input.model_validate(kw))
    return result.outputs


async def test_put_get_head_list_delete_text(action: S3Action, ctx: ActionContext) -> None:
    text = "héllo, S3\n"
    digest = hashlib.sha256(text.encode()).hexdigest()
    put = await call(action, ctx, op="put", key="docs/a.txt", content=text, metadata={"by": "t"})
    assert put["bucket"] == "plait-data"
    assert put["key"] == "docs/a.txt"
    assert put["size"] == len(text.encode())
    assert put["sha256"] == digest
    assert put["etag"] == hashlib.md5(text.encode()).hexdigest()  # no quotes

    got = await call(action, ctx, op="get", key="docs/a.txt")
    assert got["content"] == text
    assert (got["sha256"], got["size"], got["etag"]) == (digest, put["size"], put["etag"])
    assert got["content_type"] == "text/plain"
    assert got["metadata"] == {"by": "t"}
    assert got["last_modified"].startswith("20")

    head = await call(action, ctx, op="head", key="docs/a.txt")
    assert head["exists"] is True
    assert head["size"] == put["size"]

    listed = await call(action, ctx, op="list", prefix="docs/")
    assert [k["key"] for k in listed["keys"]] == ["docs/a.txt"]
    assert listed["keys"][0]["size"] == put["size"]
    assert listed["keys"][0]["etag"] == put["etag"]
    assert listed["truncated"] is False
    assert listed["continuation_token"] is None

    await call(action, ctx, op="delete", key="docs/a.txt")
    assert (await call(action, ctx, op="head", key="docs/a.txt"))["exists"] is False
    with pytest.raises(ActionFailed, match="no such key") as e:
        await call(action, ctx, op="get", key="docs/a.txt")
    assert e.value.retryable is False


async def test_file_upload_and_download_to_a_directory(
    action: S3Action, ctx: ActionContext, tmp_path: Path
) -> None:
    data = os.urandom(300_000) + b"\x00\xff"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "blob.bin").write_bytes(data)
    put = await call(action, ctx, op="put", key="bin/blob.bin", file="in/blob.bin")
    assert put["sha256"] == hashlib.sha256(data).hexdigest()
    assert put["size"] == len(data)

    got = await call(action, ctx, op="get", key="bin/blob.bin", dest="out/")
    assert got["path"] == "out/blob.bin"
    assert (tmp_path / "out" / "blob.bin").read_bytes() == data
    assert got["sha256"] == put["sha256"]
    assert got["size"] == len(data)
    assert got["content_type"] == "application/octet-stream"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blob.bin"]  # no temp

    got = await call(action, ctx, op="get", key="bin/blob.bin", dest="copy.bin")
    assert got["path"] == "copy.bin"
    assert (tmp_path / "copy.bin").read_bytes() == data
    with pytest.raises(ActionFailed, match="not UTF-8 text; give dest") as e:
        await call(action, ctx, op="get", key="bin/blob.bin")
    assert e.value.retryable is False


async def test_large_files_go_in_parts(
    action: S3Action, ctx: ActionContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3mod, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)  # S3's smallest part
    data = os.urandom(6 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(data)
    put = await call(action, ctx, op="put", key="big.bin", file="big.bin")
    assert put["etag"].endswith("-2")  # two parts
    assert put["sha256"] == hashlib.sha256(data).hexdigest()
    got = await call(action, ctx, op="get", key="big.bin", dest="back.bin")
    assert got["sha256"] == put["sha256"]
    monkeypatch.setattr(s3mod, "MAX_CONTENT_BYTES", 1024)
    with pytest.raises(ActionFailed, match="more than the 1024 a step output holds; give dest"):
        await call(action, ctx, op="get", key="big.bin")


async def test_list_pages_with_a_maximum_and_groups(action: S3Action, ctx: ActionContext) -> None:
    for i in range(7):
        await call(action, ctx, op="put", bucket="plait-other", key=f"p/{i:02}.txt", content="x")
    await call(action, ctx, op="put", bucket="plait-other", key="p/sub/z.txt", content="z")
    first = await call(action, ctx, op="list", bucket="plait-other", prefix="p/", max_keys=3)
    assert [k["key"] for k in first["keys"]] == ["p/00.txt", "p/01.txt", "p/02.txt"]
    assert first["truncated"] is True
    assert first["continuation_token"]
    rest = await call(
        action, ctx, op="list", bucket="plait-other", prefix="p/",
        continuation_token=first["continuation_token"],
    )  # fmt: skip
    assert [k["key"] for k in rest["keys"]] == [
        "p/03.txt", "p/04.txt", "p/05.txt", "p/06.txt", "p/sub/z.txt",
    ]  # fmt: skip
    assert rest["truncated"] is False
    assert rest["count"] == 5
    grouped = await call(action, ctx, op="list", bucket="plait-other", prefix="p/", delimiter="/")
    assert grouped["prefixes"] == ["p/sub/"]
    assert grouped["count"] == 7


async def test_copy(action: S3Action, ctx: ActionContext) -> None:
    await call(action, ctx, op="put", key="orig.txt", content="copy me")
    out = await call(
        action, ctx, op="copy", bucket="plait-other", key="dup.txt",
        source_bucket="plait-data", source_key="orig.txt",
    )  # fmt: skip
    assert out["etag"] == hashlib.md5(b"copy me").hexdigest()
    got = await call(action, ctx, op="get", bucket="plait-other", key="dup.txt")
    assert got["content"] == "copy me"


async def test_default_credential_chain_without_connection(
    action: S3Action, tmp_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    ctx = make_ctx(tmp_path)
    out = await call(
        action, ctx, connection=None, endpoint_url=endpoint, bucket="plait-data",
        op="put", key="env.txt", content="chain",
    )  # fmt: skip
    assert out["size"] == 5


async def test_paths_must_stay_in_the_work_directory(
    action: S3Action, ctx: ActionContext, tmp_path: Path
) -> None:
    outside = tmp_path.parent / f"outside-{tmp_path.name}.txt"
    outside.write_text("secret")
    (tmp_path / "link").symlink_to(outside)
    for kw, pattern in [
        ({"op": "put", "file": "../x.txt"}, "leads out of the run's work directory"),
        ({"op": "put", "file": str(outside)}, "is absolute"),
        ({"op": "put", "file": "link"}, "symlink"),
        ({"op": "get", "dest": "../../evil.txt"}, "leads out"),
        ({"op": "put", "file": "missing.txt"}, "does not exist"),
    ]:
        with pytest.raises(ActionFailed, match=pattern) as e:
            await call(action, ctx, key="k.txt", **kw)
        assert e.value.retryable is False
    outside.unlink()


async def test_bad_input_fails_clearly(action: S3Action, ctx: ActionContext) -> None:
    from pydantic import ValidationError

    cases = [
        ({"op": "move", "key": "k"}, "Input should be 'put', 'get', 'list'"),
        ({"op": "get"}, "op get needs key"),
        ({"op": "put", "key": "k"}, "op put needs file or content"),
        ({"op": "put", "key": "k", "file": "a", "content": "b"}, "file or content"),
        ({"op": "list", "key": "k"}, "op list does not take key"),
        ({"op": "copy", "key": "k"}, "op copy needs source_key"),
    ]
    for kw, message in cases:
        with pytest.raises(ValidationError, match=message):
            S3Input.model_validate(kw)

    failures = [
        ({"connection": "nobucket", "op": "list"}, "no bucket: give bucket:", False),
        (
            {"bucket": "no-such-bucket", "op": "list"},
            "bucket 'no-such-bucket' does not exist",
            False,
        ),
        ({"bucket": "no-such-bucket", "op": "head", "key": "k"}, "does not exist", False),
        ({"connection": "mail", "op": "list"}, "is of type 'smtp'; s3 needs an s3", False),
        ({"connection": "nope", "op": "list"}, "no connection named 'nope'", False),
        (
            {"op": "list", "endpoint_url": "minio:9000"},
            "must start with http:// or https://",
            False,
        ),
    ]
    for kw, message, retryable in failures:
        with pytest.raises(ActionFailed, match=message) as e:
            await call(action, ctx, **kw)
        assert e.value.retryable is retryable, message


async def test_unreachable_store_is_retryable_and_deadline_is_honoured(
    action: S3Action, ctx: ActionContext, conn_config: dict[str, Any]
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(ActionFailed, match="Could not connect to the endpoint URL") as e:
        await call(action, ctx, op="list", endpoint_url=dead)
    assert e.value.retryable is True
    assert time.monotonic() - started < 30

    ctx.deadline = time.time() - 1
    with pytest.raises(ActionFailed, match="deadline has passed"):
        await call(action, ctx, op="list")


async def test_connection_test(endpoint: str, conn_config: dict[str, Any]) -> None:
    listed = await S3Connection().test(S3Config.model_validate(conn_config))
    assert listed.startswith(f"{endpoint}: ")
    assert "plait-data" in listed
    found = await S3Connection().test(
        S3Config.model_validate({**conn_config, "bucket": "plait-data"})
    )
    assert found == f"bucket 'plait-data' found at {endpoint}"
    with pytest.raises(PlaitError, match="bucket 'gone-bucket' does not exist"):
        await S3Connection().test(S3Config.model_validate({**conn_config, "bucket": "gone-bucket"}))
    assert S3Connection.secret_fields() == ["secret_access_key", "session_token"]
    with pytest.raises(ValueError, match="together"):
        S3Config.model_validate({"access_key_id": "x"})


WORKFLOW = """
name: s3-roundtrip
steps:
  - id: write
    run: printf 'report body' > report.txt
  - id: upload
    uses: s3
    with: {connection: store, op: put, key: "runs/report.txt", file: report.txt}
  - id: fetch
    uses: s3
    with: {connection: store, op: get, key: "${{ steps.upload.outputs.key }}"}
  - id: missing
    uses: s3
    with: {connection: store, op: get, key: nothing-here}
    on_error: continue
outputs:
  content: "${{ steps.fetch.outputs.content }}"
  sha: "${{ steps.upload.outputs.sha256 }}"
"""


async def test_through_the_runtime(
    tmp_path: Path, conn_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PLAIT_CONNECTION_STORE", json.dumps({"type": "s3", "bucket": "plait-data", **conn_config})
    )
    home = tmp_path / "home"
    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    plan = load_workflow(WORKFLOW, "wf.yaml", session.registry.input_models()).plan
    try:
        result = await session.run(plan, WORKFLOW, {}, workdir=tmp_path)
    finally:
        await session.close()
    assert result.success, result
    assert result.outputs == {
        "content": "report body",
        "sha": hashlib.sha256(b"report body").hexdigest(),
    }
    missing = result.step("missing")
    assert missing.status == "failed"
    assert missing.attempts == 1
    assert "s3 get s3://plait-data/nothing-here: no such key" in (missing.error or "")
    # the secret key never reaches the store
    raw = b"".join(f.read_bytes() for f in home.glob("plait.db*"))
    assert KEYS["secret_access_key"].encode() not in raw


def test_unknown_op_is_an_invalid_workflow() -> None:
    from plait.actions.registry import ActionRegistry
    from plait.errors import PlaitError as Error

    source = "name: bad\nsteps:\n  - id: x\n    uses: s3\n    with: {op: explode, key: k}\n"
    with pytest.raises(Error, match="op") as e:
        load_workflow(source, "bad.yaml", ActionRegistry().input_models())
    assert "explode" in str(e.value) or "put" in str(e.value)


def test_through_the_cli(tmp_path: Path, conn_config: dict[str, Any]) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLAIT_", "AWS_"))}
    env["PLAIT_HOME"] = str(tmp_path / "home")
    env["PLAIT_CONNECTION_STORE"] = json.dumps(
        {"type": "s3", "bucket": "plait-data", **conn_config}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "plait.cli", "run", "wf.yaml", "--json", "--quiet",
         "--results-dir", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["outputs"]["content"] == "report body"
    assert KEYS["secret_access_key"] not in proc.stdout + proc.stderr
