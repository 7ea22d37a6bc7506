"""The audit trail over real HTTP: what is recorded, the filters and export, the hash
chain verifying after a series of requests and failing after an edit; and the account
commands of the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from plait.security.audit import verify_chain
from plait.server import app as app_module
from plait.server import audit

from .conftest import ADMIN_USER, LiveServer

PASSWORD = "a-long-and-unusual-passphrase"


@pytest.fixture(autouse=True)
def _audited_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure the middleware is on the app (``install`` is idempotent, so this is a
    no-op once ``create_app`` installs it itself)."""
    original = app_module.create_app

    def create_app(services: object) -> FastAPI:
        built = original(services)  # type: ignore[arg-type]
        audit.install(built)
        return built

    monkeypatch.setattr(app_module, "create_app", create_app)


def entries(server: LiveServer, **params: str) -> list[dict[str, object]]:
    with server.client() as c:
        r = c.get("/api/v1/audit", params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


def test_state_changing_requests_are_recorded(server: LiveServer) -> None:
    with server.client() as c:
        created = c.post("/api/v1/users", json={"name": "vera", "password": PASSWORD})
        assert created.status_code == 201
        c.post("/api/v1/users", json={"name": "vera", "password": PASSWORD})  # 409
        c.get("/api/v1/users")  # a read: not recorded
        c.delete("/api/v1/users/vera", headers={"X-Request-Id": "req-42"})
    with server.anonymous() as c:
        c.post("/api/v1/users", json={"name": "x", "password": PASSWORD})  # 401
    found = entries(server, action="POST /api/v1/users")
    assert [(e["actor"], e["outcome"]) for e in found] == [
        ("anonymous", "denied"),
        (ADMIN_USER, "failed"),
        (ADMIN_USER, "success"),
    ]
    deleted = entries(server, action="DELETE /api/v1/users/{name}")
    assert len(deleted) == 1
    assert deleted[0]["resource"] == "/api/v1/users/vera"
    assert deleted[0]["request_id"] == "req-42"
    assert deleted[0]["source_ip"] == "127.0.0.1"
    assert deleted[0]["details"] == {"status": 204}
    assert not entries(server, action="GET")


def test_token_requests_name_the_token(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        token = c.post("/api/v1/tokens", json={"name": "ci", "scopes": ["admin"]}).json()
    with sqlite_server.client(token["token"]) as c:
        c.post("/api/v1/users", json={"name": "vera", "password": PASSWORD})
    (entry,) = entries(sqlite_server, actor=f"{ADMIN_USER}/token:{token['id']}")
    assert entry["action"] == "POST /api/v1/users"


def test_filters_paging_and_export(server: LiveServer) -> None:
    with server.anonymous() as c:
        for _ in range(3):
            c.post("/api/v1/auth/token", data={"username": "nobody", "password": "x" * 12})
    denied = entries(server, outcome="denied", limit="2")
    assert len(denied) == 2
    with server.client() as c:
        page = c.get("/api/v1/audit", params={"outcome": "denied", "limit": 2}).json()
        rest = c.get(
            "/api/v1/audit", params={"outcome": "denied", "cursor": page["next_cursor"]}
        ).json()
        assert len(rest["items"]) == 1
        assert rest["next_cursor"] is None
        assert c.get("/api/v1/audit", params={"since": "2999-01-01T00:00:00"}).json()["items"] == []
        assert c.get("/api/v1/audit", params={"since": "yesterday"}).status_code == 422
        export = c.get("/api/v1/audit", params={"format": "jsonl", "actor": "nobody"})
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)
    assert len(lines) == 3
    assert {e["actor"] for e in lines} == {"nobody"}


def test_the_chain_verifies_and_detects_an_edit(server: LiveServer) -> None:
    with server.client() as c:
        for name in ("ann", "ben", "cyd"):
            c.post("/api/v1/users", json={"name": name, "password": PASSWORD})
            c.patch(f"/api/v1/users/{name}", json={"disabled": True})
        report = c.get("/api/v1/audit/verify").json()
    assert report["ok"] is True
    assert report["checked"] >= 7
    chain = list(server.services.accounts.export_audit())
    assert verify_chain(chain).ok
    victim = chain[3].seq
    with server.services.store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_log SET outcome = 'success' WHERE seq = :s"), {"s": victim}
        )
        conn.execute(
            sa.text("UPDATE audit_log SET actor = 'someone' WHERE seq = :s"), {"s": victim}
        )
    with server.client() as c:
        broken = c.get("/api/v1/audit/verify").json()
    assert broken["ok"] is False
    assert broken["first_bad_seq"] == victim
    assert "changed" in broken["problem"]


def test_deleting_an_entry_is_detected(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        for name in ("ann", "ben"):
            c.post("/api/v1/users", json={"name": name, "password": PASSWORD})
    with sqlite_server.services.store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 2"))
    report = verify_chain(sqlite_server.services.accounts.export_audit())
    assert not report.ok
    assert report.first_bad_seq == 3


# -- the CLI ---------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PLAIT_HOME": str(tmp_path / "home")}
    env.pop("PLAIT_DATABASE_URL", None)
    return env


def plait(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plait.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_creates_users_and_tokens(home: dict[str, str]) -> None:
    made = plait(home, "users", "create", "root", "--admin", "--password-stdin", stdin=PASSWORD)
    assert made.returncode == 0, made.stderr
    assert "created user 'root' with role 'admin'" in made.stdout
    weak = plait(home, "users", "create", "bob", "--password-stdin", stdin="password123\n")
    assert weak.returncode == 2
    assert "too common" in weak.stderr
    taken = plait(home, "users", "create", "root", "--password-stdin", stdin=PASSWORD)
    assert taken.returncode == 2
    assert "already exists" in taken.stderr
    role = plait(
        home,
        "users",
        "create",
        "olga",
        "--role",
        "operator",
        "--namespace",
        "ops",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert role.returncode == 0, role.stderr
    listed = plait(home, "users", "list", "--json")
    assert json.loads(listed.stdout) == [
        {"name": "root", "disabled": False, "roles": ["admin"]},
        {"name": "olga", "disabled": False, "roles": ["operator@ops"]},
    ]
    token = plait(home, "tokens", "create", "--user", "olga", "--name", "ci", "--expires", "30d")
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip().startswith("plt_")
    no_user = plait(home, "tokens", "create", "--user", "ghost", "--name", "ci")
    assert no_user.returncode == 2


def test_cli_users_need_a_password_source(home: dict[str, str]) -> None:
    r = plait(home, "users", "create", "root", "--admin")
    assert r.returncode == 2
    assert "--password-stdin" in r.stderr
