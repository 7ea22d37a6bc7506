"""Attack tests on a live server: reuse the server fixtures of ``tests/server``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from plait.server.bootstrap import create_user
from tests.server.conftest import *  # noqa: F403
from tests.server.conftest import LiveServer

PASSWORD = "a-long-and-unusual-passphrase"

#: A harmless workflow in a namespace; ``{ns}``/``{name}`` filled in by :func:`workflow`.
WORKFLOW = """\
name: {name}
namespace: {ns}
inputs:
  who: {{type: string, default: world}}
steps:
  - id: hello
    run: echo hello ${{{{ inputs.who }}}}
  - id: gate
    needs: [hello]
    uses: approval
    with: {{message: go?, timeout: 1h}}
"""


def workflow(name: str, ns: str = "default") -> str:
    return WORKFLOW.format(name=name, ns=ns)


def user_token(
    server: LiveServer, name: str, role: str | None, namespace: str | None = None
) -> str:
    """A fresh user with one role binding, logged in: their access token."""
    create_user(server.services, name, PASSWORD, role=role, namespace=namespace)
    return server.login(name, PASSWORD)


def deploy(server: LiveServer, source: str, token: str | None = None) -> httpx.Response:
    with server.client(token) as c:
        return c.post("/api/v1/workflows", json={"source": source})


def start(server: LiveServer, name: str, inputs: dict[str, Any] | None = None) -> str:
    with server.client() as c:
        r = c.post(f"/api/v1/workflows/{name}/runs", json={"inputs": inputs or {}})
    assert r.status_code in (200, 201, 202), r.text
    return str(r.json()["id"])


def wait_status(
    server: LiveServer, run_id: str, wanted: tuple[str, ...], timeout: float = 20
) -> dict[str, Any]:
    deadline = time.time() + timeout
    with server.client() as c:
        while time.time() < deadline:
            run: dict[str, Any] = c.get(f"/api/v1/runs/{run_id}").json()
            if run.get("status") in wanted:
                return run
            time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {wanted}: {run}")


def assert_error_shape(r: httpx.Response) -> None:
    """A 4xx in Plait's JSON error shape, with no traceback anywhere in it."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "details"} <= set(body["error"]), body
    assert "Traceback" not in r.text, r.text
    assert 'File "' not in r.text, r.text


@pytest.fixture
def admin(sqlite_server: LiveServer) -> Iterator[httpx.Client]:
    with sqlite_server.client() as c:
        yield c
