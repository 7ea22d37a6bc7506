"""Canary secrets: values written through every path (API, secret inputs, the CLI, the
environment), echoed by steps, passed through outputs and into a sub-workflow, must
never appear in plain text in the data directory or in any API response."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.server.conftest import LiveServer, start_server

from .conftest import deploy, user_token

STORED = "canary-stored-5b1e7c2d9a"  # PUT /secrets
INPUT = "canary-input-8f3d6a1c4e"  # a secret input through the API
ENV = "canary-env-2c9e4b7f1d"  # PLAIT_SECRET_<NAME> for the server
CLI_INPUT = "canary-cli-input-7a2f9c3e"  # plait run -i
CLI_ENV = "canary-cli-env-4d8b1e6a"  # PLAIT_SECRET_<NAME> for plait run
CANARIES = (STORED, INPUT, ENV, CLI_INPUT, CLI_ENV)

CHILD = """\
name: canary-child
inputs:
  x: {type: string}
steps:
  - id: echo
    run: |
      echo "child got ${{ inputs.x }}"
      echo "again=${{ inputs.x }}" >> "$PLAIT_OUTPUT"
outputs:
  again: "${{ steps.echo.outputs.again }}"
"""

PARENT = """\
name: canary-parent
inputs:
  tok: {type: string, secret: true}
steps:
  - id: a
    run: |
      echo "stored=${{ secrets.CANARY_STORED }} input=${{ inputs.tok }}"
      echo "env=${{ secrets.CANARY_ENV }}"
      v="${{ secrets.CANARY_STORED }}/${{ inputs.tok }}/${{ secrets.CANARY_ENV }}"
      echo "leak=$v" >> "$PLAIT_OUTPUT"
      echo "$PLAIT_SECRET_CANARY_ENV" >&2
  - id: b
    needs: [a]
    run: echo "b saw ${{ steps.a.outputs.leak }}"
outputs:
  leak: "${{ steps.a.outputs.leak }}"
"""

#: The same parent passing the secret-derived output to a child whose input is plain.
SUB = """\
  - id: call
    needs: [b]
    uses: workflow
    with: {workflow: canary-child, inputs: {x: "${{ steps.a.outputs.leak }}"}}
  - id: after
    needs: [call]
    run: echo "child returned ${{ steps.call.outputs.again }}"
"""


def parent_source(sub: bool) -> str:
    if not sub:
        return PARENT
    head, _, tail = PARENT.partition("outputs:\n")
    return f'{head}{SUB}outputs:\n{tail}  child: "${{{{ steps.call.outputs.again }}}}"\n'


LOCAL = """\
name: canary-local
inputs:
  tok: {type: string, secret: true}
steps:
  - id: a
    run: |
      echo "tok=${{ inputs.tok }} env=${{ secrets.CANARY_CLI_ENV }}"
      echo "leak=${{ inputs.tok }}+${{ secrets.CANARY_CLI_ENV }}" >> "$PLAIT_OUTPUT"
  - id: b
    needs: [a]
    run: echo "b saw ${{ steps.a.outputs.leak }}"
outputs:
  leak: "${{ steps.a.outputs.leak }}"
"""


def _found_in(data: bytes) -> list[str]:
    return [c for c in CANARIES if c.encode() in data]


def _scan_tree(root: Path) -> dict[str, list[str]]:
    hits: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            found = _found_in(path.read_bytes())
            if found:
                hits[str(path)] = found
    return hits


@pytest.fixture
def canary_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("PLAIT_SECRET_CANARY_ENV", ENV)
    home = tmp_path / "home"
    live, runner = start_server(home, f"sqlite:///{home / 'plait.db'}")
    try:
        yield live
    finally:
        runner.stop()
        live.services.store.close()


def _wait_ended(c: httpx.Client, run_id: str, timeout: float = 40) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        run: dict[str, Any] = c.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end")


def _responses(c: httpx.Client, run_ids: list[str]) -> dict[str, str]:
    seen: dict[str, str] = {}
    paths = [
        "/api/v1/runs",
        "/api/v1/audit",
        "/api/v1/audit?format=jsonl",
        "/api/v1/secrets",
        "/api/v1/secrets/default/CANARY_STORED",
        "/api/v1/workflows",
        "/api/v1/workflows/canary-parent",
        "/api/v1/workflows/canary-parent/versions/1",
        "/metrics",
    ]
    for run_id in run_ids:
        paths += [
            f"/api/v1/runs/{run_id}",
            f"/api/v1/runs/{run_id}/logs",
            f"/api/v1/runs/{run_id}/logs?follow=true",  # SSE until the (ended) run's end
        ]
    for path in paths:
        seen[path] = c.get(path).text
    return seen


@pytest.mark.parametrize("sub", [False, True], ids=["direct", "through-a-sub-workflow"])
def test_no_canary_in_the_data_directory_or_the_api(canary_server: LiveServer, sub: bool) -> None:
    server = canary_server
    with server.client() as c:
        r = c.put("/api/v1/secrets/default/CANARY_STORED", json={"value": STORED})
        assert r.status_code == 204
        assert deploy(server, CHILD).status_code == 201
        assert deploy(server, parent_source(sub)).status_code == 201
        started = c.post("/api/v1/workflows/canary-parent/runs", json={"inputs": {"tok": INPUT}})
        assert started.status_code == 201, started.text
        assert INPUT not in started.text
        parent = _wait_ended(c, started.json()["id"])
        assert parent["status"] == "succeeded", parent
        children = [r["id"] for r in c.get("/api/v1/runs").json()["items"]]
        assert len(children) == (2 if sub else 1)
        for run_id in children:
            _wait_ended(c, run_id)
        logs = c.get(f"/api/v1/runs/{parent['id']}/logs").json()
        assert any("***" in str(line) for line in logs["items"]), logs  # echoed, masked
        seen = _responses(c, children)
    leaks = {path: _found_in(text.encode()) for path, text in seen.items()}
    leaked = {p: f for p, f in leaks.items() if f}
    assert not leaked, "\n".join(f"{p}: {f} in {seen[p][:300]!r}" for p, f in leaked.items())
    server.services.store.close()  # flush the WAL into the files we scan
    hits = _scan_tree(server.services.settings.home)
    assert not hits, f"canaries in plain text on disk: {hits}"


def test_the_cli_keeps_secret_inputs_and_env_secrets_masked(tmp_path: Path) -> None:
    """``plait run -i`` with a secret input and ``PLAIT_SECRET_<NAME>``: nothing in
    the output, the results or the local data directory."""
    source = tmp_path / "canary.yaml"
    source.write_text(LOCAL)
    home = tmp_path / "home"
    results = tmp_path / "results"
    env = {
        **os.environ,
        "PLAIT_HOME": str(home),
        "PLAIT_SECRET_CANARY_CLI_ENV": CLI_ENV,
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "plait"),
            "run",
            str(source),
            "-i",
            f"tok={CLI_INPUT}",
            "--results-dir",
            str(results),
            "--json",
        ],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"***" in done.stdout + done.stderr
    assert not _found_in(done.stdout), done.stdout[-2000:]
    assert not _found_in(done.stderr), done.stderr[-2000:]
    hits = {**_scan_tree(home), **_scan_tree(results), **_scan_tree(tmp_path)}
    hits.pop(str(source), None)
    assert not hits, f"canaries in plain text on disk: {hits}"


def test_a_namespace_editor_cannot_read_the_servers_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jwt_secret = "jwt-secret-for-the-exfiltration-test-0123456789"
    monkeypatch.setenv("PLAIT_JWT_SECRET", jwt_secret)
    home = tmp_path / "home"
    server, runner = start_server(home, f"sqlite:///{home / 'plait.db'}")
    try:
        token = user_token(server, "eve", "editor", "ops")
        steal = (
            "name: innocent\nnamespace: ops\nsteps:\n"
            '  - id: s\n    run: printf %s "$PLAIT_JWT_SECRET" | base64\n'
        )
        assert deploy(server, steal, token).status_code == 201
        with server.client(token) as c:
            run = c.post("/api/v1/workflows/innocent/runs", json={"inputs": {}}).json()
            _wait_ended(c, run["id"])
            lines = c.get(f"/api/v1/runs/{run['id']}/logs").json()["items"]
        text = "".join(str(line.get("line") or line.get("text") or "") for line in lines)
        stolen = ""
        for word in text.split():
            try:
                stolen = base64.b64decode(word).decode()
            except ValueError:
                continue
        now = int(time.time())
        forged = jwt.encode(
            {
                "sub": "1",
                "iat": now,
                "nbf": now,
                "exp": now + 300,
                "jti": "x",
                "iss": "plait",
                "typ": "access",
            },
            stolen or "nothing-stolen",
        )
        with server.client(forged) as c:
            assert c.get("/api/v1/users").status_code == 401
        assert stolen != jwt_secret
    finally:
        runner.stop()
        server.services.store.close()
