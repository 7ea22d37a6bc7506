"""Every operation in the OpenAPI document is checked: 401 without credentials, 403 for
a viewer on anything that changes state, never a 5xx.

The lists below are the contract. A new route that is public, or that a viewer may
call on itself, must be added here on purpose; a new route without a check fails.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.server.conftest import LiveServer

from .conftest import deploy, start, user_token, wait_status, workflow

#: Operations anyone may call without a token (health, login, webhooks signed by HMAC).
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),  # ends the session of the refresh token sent
    ("POST", "/api/v1/hooks/{workflow}"),  # signed body instead of a token
}

#: State-changing operations a viewer may do on itself (with the bodies sent below).
SELF_SERVICE = {
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/tokens"),  # own token, never above the owner's roles
    ("POST", "/api/v1/auth/mfa/enroll"),  # own second factor
    ("POST", "/api/v1/auth/mfa/confirm"),
    ("POST", "/api/v1/auth/mfa/disable"),  # needs the password and a code
    ("DELETE", "/api/v1/auth/sessions/{session_id}"),  # own sessions only
    ("POST", "/api/v1/hooks/{workflow}"),  # no token involved: 401/404 unsigned
}

#: Known gaps, each with its own failing-until-fixed test in test_attacks.py.
KNOWN_GAPS: set[tuple[str, str, str]] = set()  # none: every gap found has been fixed

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}

#: Bodies valid enough that only the permission check can refuse them.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/auth/token"): {"data": {"username": "nobody", "password": "x" * 12}},
    ("POST", "/api/v1/auth/refresh"): {"json": {"refresh_token": "not-a-real-refresh-token"}},
    ("POST", "/api/v1/auth/logout"): {"json": {"refresh_token": "not-a-real-refresh-token"}},
    ("POST", "/api/v1/auth/mfa/confirm"): {"json": {"code": "000000"}},
    ("POST", "/api/v1/auth/mfa/disable"): {"json": {"password": "x" * 12, "code": "000000"}},
    ("POST", "/api/v1/auth/mfa/reset"): {"json": {"user": "admin"}},
    ("POST", "/api/v1/users"): {
        "json": {"name": "mallory", "password": "a-long-and-unusual-passphrase"}
    },
    ("PATCH", "/api/v1/users/{name}"): {"json": {"disabled": True}},
    ("POST", "/api/v1/tokens"): {"json": {"name": "mine", "scopes": ["runs:read"]}},
    ("POST", "/api/v1/roles"): {"json": {"subject": "user:vera", "role": "admin"}},
    ("POST", "/api/v1/workflows"): {"json": {"source": workflow("sweep-two")}},
    ("POST", "/api/v1/workflows/{name}/rollback"): {"json": {"version": 1}},
    ("POST", "/api/v1/workflows/{name}/runs"): {"json": {"inputs": {}}},
    ("POST", "/api/v1/runs/{run_id}/retry"): {"json": {}},
    ("POST", "/api/v1/runs/{run_id}/steps/{step}/approve"): {"json": {"comment": "ok"}},
    ("POST", "/api/v1/runs/{run_id}/steps/{step}/reject"): {"json": {"comment": "no"}},
    ("POST", "/api/v1/events"): {"json": {"type": "deploy.finished", "data": {}}},
    ("PUT", "/api/v1/secrets/{namespace}/{name}"): {"json": {"value": "s3cret-value"}},
    ("POST", "/api/v1/hooks/{workflow}"): {"content": b'{"ref": "main"}'},
}


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) of every operation; logout last, since it ends the caller's session."""
    found = []
    for path, item in spec["paths"].items():
        for method in item:
            if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                found.append((method.upper(), path))
    return sorted(found, key=lambda op: (op[1] == "/api/v1/auth/logout", op))


def fill(path: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if path.startswith("/api/v1/users/") and name == "name":
            name = "user"
        assert name in values, f"no sample value for path parameter {{{name}}} of {path}"
        return values[name]

    return re.sub(r"\{([^}]+)\}", one, path)


def call(c: httpx.Client, method: str, path: str, values: dict[str, str]) -> httpx.Response:
    extra = BODIES.get((method, path), {})
    if method in STATE_CHANGING and (method, path) not in BODIES and method != "DELETE":
        extra = {"json": {}}
    return c.request(method, fill(path, values), **extra)


@pytest.fixture
def sweep(sqlite_server: LiveServer) -> tuple[LiveServer, dict[str, str], list[tuple[str, str]]]:
    """A server with one deployed workflow, a run waiting for approval, a secret, a
    token and a binding — so that every path parameter names something that exists."""
    server = sqlite_server
    assert deploy(server, workflow("sweep")).status_code == 201
    run_id = start(server, "sweep")
    wait_status(server, run_id, ("waiting",))
    with server.client() as c:
        assert c.put("/api/v1/secrets/default/SWEEP", json={"value": "v" * 12}).status_code == 204
        token = c.post("/api/v1/tokens", json={"name": "t", "scopes": ["runs:read"]}).json()
        roles = c.get("/api/v1/roles").json()
        spec = c.get("/api/v1/openapi.json").json()
    values = {
        "name": "sweep",
        "user": "admin",
        "workflow": "sweep",
        "number": "1",
        "run_id": run_id,
        "step": "gate",
        "namespace": "default",
        "token_id": str(token["id"]),
        "binding_id": str(roles[0]["id"]),
        "session_id": "no-such-session",
    }
    return server, values, operations(spec)


def test_the_document_lists_the_known_routes(
    sweep: tuple[LiveServer, dict[str, str], list[tuple[str, str]]],
) -> None:
    _, _, ops = sweep
    assert len(ops) >= 40
    for public in PUBLIC:
        assert public in ops, f"{public} is listed as public but is not in the document"


def test_without_credentials_every_route_but_the_public_ones_is_401(
    sweep: tuple[LiveServer, dict[str, str], list[tuple[str, str]]],
) -> None:
    server, values, ops = sweep
    wrong: list[str] = []
    with server.anonymous() as c:
        for method, path in ops:
            r = call(c, method, path, values)
            assert r.status_code < 500, (method, path, r.status_code, r.text)
            if (method, path) in PUBLIC:
                if path.startswith("/api/v1/hooks/"):  # unsigned body: refused
                    assert r.status_code in (401, 404), (path, r.text)
                continue
            if r.status_code != 401:
                wrong.append(f"{method} {path} -> {r.status_code}")
            else:
                assert r.headers.get("www-authenticate", "").startswith("Bearer"), path
                assert r.json()["error"]["code"] == "unauthorized"
    assert not wrong, "routes answering without credentials:\n" + "\n".join(wrong)


def test_with_a_bad_token_every_protected_route_is_401(
    sweep: tuple[LiveServer, dict[str, str], list[tuple[str, str]]],
) -> None:
    server, values, ops = sweep
    for bad in ("garbage", "plt_" + "0" * 40, server.token[:-4] + "AAAA"):
        with server.client(bad) as c:
            for method, path in ops:
                if (method, path) in PUBLIC:
                    continue
                r = call(c, method, path, values)
                assert r.status_code == 401, (bad[:8], method, path, r.status_code, r.text)


@pytest.mark.parametrize("who", ["viewer", "read-only-token"])
def test_a_reader_is_refused_every_state_change(
    sweep: tuple[LiveServer, dict[str, str], list[tuple[str, str]]], who: str
) -> None:
    """A global viewer — and an admin's token scoped to reads — gets 403 on every
    state-changing operation except the self-service ones; reads never 5xx."""
    server, values, ops = sweep
    if who == "viewer":
        token = user_token(server, "vera", "viewer")
    else:
        with server.client() as c:
            made = c.post(
                "/api/v1/tokens", json={"name": "ro", "scopes": ["workflows:read", "runs:read"]}
            )
        token = made.json()["token"]
    wrong: list[str] = []
    with server.client(token) as c:
        for method, path in ops:
            r = call(c, method, path, values)
            assert r.status_code < 500, (method, path, r.status_code, r.text)
            if method not in STATE_CHANGING or (method, path) in SELF_SERVICE:
                continue
            if (who, method, path) in KNOWN_GAPS:
                continue
            if r.status_code != 403:
                wrong.append(f"{method} {path} -> {r.status_code} {r.text[:200]}")
            else:
                assert r.json()["error"]["code"] == "forbidden"
    assert not wrong, f"state changes a {who} was not refused:\n" + "\n".join(wrong)
    with server.client() as c:  # nothing happened behind the 403s
        run = c.get(f"/api/v1/runs/{values['run_id']}").json()
        assert run["status"] == "waiting"
        assert c.get("/api/v1/secrets/default/SWEEP").status_code == 200
        assert c.get("/api/v1/users/admin").json()["disabled"] is False
        assert c.get("/api/v1/workflows/sweep").status_code == 200


def test_a_viewer_may_do_the_self_service_operations(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    token = user_token(server, "vera", "viewer")
    with server.client(token) as c:
        made = c.post("/api/v1/tokens", json={"name": "mine", "scopes": ["runs:read"]})
        assert made.status_code == 201, made.text
        assert c.delete(f"/api/v1/tokens/{made.json()['id']}").status_code == 204
        r = c.patch(
            "/api/v1/users/vera",
            json={"password": "another-long-passphrase", "current_password": "x" * 12},
        )
        assert r.status_code == 403  # the current password is needed
        assert c.post("/api/v1/auth/logout").status_code == 204
        assert c.get("/api/v1/auth/me").status_code == 401  # the session ended
