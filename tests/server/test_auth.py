"""Logging in, refreshing, logging out and refused tokens, over real HTTP on SQLite and
PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import pytest

from plait.server.bootstrap import create_user
from plait.store.accounts import AuditFilter

from .conftest import ADMIN_PASSWORD, ADMIN_USER, LiveServer

PASSWORD = "a-long-and-unusual-passphrase"


def login(server: LiveServer, username: str, password: str) -> httpx.Response:
    with server.anonymous() as c:
        return c.post("/api/v1/auth/token", data={"username": username, "password": password})


def me(server: LiveServer, token: str) -> httpx.Response:
    with server.client(token) as c:
        return c.get("/api/v1/auth/me")


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"]["code"] == "unauthorized"


@pytest.fixture
def viewer(server: LiveServer) -> str:
    create_user(server.services, "vera", PASSWORD, role="viewer")
    return "vera"


def test_login_gives_a_working_token_pair(server: LiveServer) -> None:
    r = login(server, ADMIN_USER, ADMIN_PASSWORD)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == server.services.tokens.access_ttl
    assert body["refresh_token"]
    assert body["access_token"].startswith("eyJ")
    who = me(server, body["access_token"])
    assert who.status_code == 200, who.text
    assert who.json()["name"] == ADMIN_USER
    assert who.json()["roles"] == [{"role": "admin", "namespace": None}]


def test_wrong_password_and_unknown_user_get_the_same_401(server: LiveServer) -> None:
    wrong = login(server, ADMIN_USER, "not-the-password-at-all")
    unknown = login(server, "nobody", "not-the-password-at-all")
    assert_401(wrong)
    assert_401(unknown)
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert server.services.accounts.find_user(ADMIN_USER).failed_logins == 1  # type: ignore[union-attr]


def test_every_login_attempt_is_audited(server: LiveServer) -> None:
    login(server, ADMIN_USER, "not-the-password-at-all")
    login(server, "mallory\nforged line", "whatever-it-is-here")
    login(server, ADMIN_USER, ADMIN_PASSWORD)
    logins = server.services.accounts.audit_entries(AuditFilter(action="login")).items
    # newest first; the fixture's own login is the oldest
    outcomes = [(e.actor, e.outcome, e.details.get("reason")) for e in logins[:3]]
    assert outcomes == [
        (ADMIN_USER, "success", None),
        ("mallory?forged line", "denied", "unknown user"),
        (ADMIN_USER, "denied", "wrong password"),
    ]
    assert all(e.request_id and e.source_ip == "127.0.0.1" for e in logins)


def test_disabled_user_cannot_log_in_and_loses_its_tokens(server: LiveServer, viewer: str) -> None:
    token = login(server, viewer, PASSWORD).json()["access_token"]
    with server.client() as admin:
        r = admin.patch(f"/api/v1/users/{viewer}", json={"disabled": True})
        assert r.status_code == 200, r.text
    assert_401(login(server, viewer, PASSWORD))
    assert_401(me(server, token))


def test_refresh_rotates_and_reuse_revokes_the_family(server: LiveServer) -> None:
    first = login(server, ADMIN_USER, ADMIN_PASSWORD).json()
    with server.anonymous() as c:
        second = c.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200, second.text
        pair = second.json()
        assert pair["refresh_token"] != first["refresh_token"]
        assert me(server, pair["access_token"]).status_code == 200
        # the used token again: someone else has a copy, so the whole session ends
        again = c.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert_401(again)
        assert "reused" in again.json()["error"]["message"]
        later = c.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert_401(later)
    assert_401(me(server, pair["access_token"]))  # its session was revoked too
    assert_401(me(server, first["access_token"]))
    refreshes = server.services.accounts.audit_entries(AuditFilter(action="refresh")).items
    assert [e.details.get("reason") for e in refreshes[:2]] == ["revoked", "reused"]


def test_unknown_refresh_token_is_refused(server: LiveServer) -> None:
    with server.anonymous() as c:
        assert_401(c.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"}))


def test_logout_ends_the_session(server: LiveServer) -> None:
    pair = login(server, ADMIN_USER, ADMIN_PASSWORD).json()
    with server.anonymous() as c:
        r = c.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert r.status_code == 204, r.text
        assert_401(c.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}))
        assert c.post("/api/v1/auth/logout", json={"refresh_token": "gone"}).status_code == 204
    assert_401(me(server, pair["access_token"]))
    assert me(server, server.token).status_code == 200  # other sessions live on


def test_logout_with_the_access_token_alone(sqlite_server: LiveServer) -> None:
    pair = login(sqlite_server, ADMIN_USER, ADMIN_PASSWORD).json()
    with sqlite_server.client(pair["access_token"]) as c:
        assert c.post("/api/v1/auth/logout").status_code == 204
    assert_401(me(sqlite_server, pair["access_token"]))


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_requests_without_a_valid_token_get_401(server: LiveServer) -> None:
    with server.anonymous() as c:
        assert_401(c.get("/api/v1/auth/me"))
        assert_401(c.get("/api/v1/users"))
        assert_401(c.get("/api/v1/users", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}))
    assert_401(me(server, "garbage"))
    assert_401(me(server, "plt_not-a-real-token"))
    now = int(time.time())
    claims = {"sub": "1", "iat": now, "nbf": now, "exp": now + 600, "jti": "x", "iss": "plait"}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({**claims, 'typ': 'access'})}."
    assert_401(me(server, unsigned))
    expired, _ = server.services.tokens.issue_access("1", now=time.time() - 7200)
    r = me(server, expired)
    assert_401(r)
    assert r.json()["error"]["message"] == "the token has expired"
    tampered = server.token[:-4] + ("AAAA" if not server.token.endswith("AAAA") else "BBBB")
    assert_401(me(server, tampered))


def test_weak_first_admin_password_is_refused(sqlite_server: LiveServer) -> None:
    from plait.server.bootstrap import AccountError

    with pytest.raises(AccountError, match="at least 12 characters"):
        create_user(sqlite_server.services, "shorty", "short", admin=True)
    assert sqlite_server.services.accounts.find_user("shorty") is None


def test_first_admin_from_the_environment(tmp_path: Path) -> None:
    from plait.server.bootstrap import ensure_first_admin
    from plait.server.compose import build_services
    from plait.settings import Settings

    home = tmp_path / "fresh"
    services = build_services(Settings(home=home, database_url=f"sqlite:///{home / 'p.db'}"))
    try:
        told = ensure_first_admin(services, {})
        assert told is not None
        assert "no default password" in told
        weak = ensure_first_admin(
            services, {"PLAIT_ADMIN_USER": "root", "PLAIT_ADMIN_PASSWORD": "short"}
        )
        assert weak is not None
        assert "not created" in weak
        env = {"PLAIT_ADMIN_USER": "root", "PLAIT_ADMIN_PASSWORD": PASSWORD}
        assert ensure_first_admin(services, env) == (
            "created the first admin 'root' from PLAIT_ADMIN_USER and PLAIT_ADMIN_PASSWORD"
        )
        assert services.accounts.global_admins() == [services.accounts.find_user("root").id]  # type: ignore[union-attr]
        assert ensure_first_admin(services, env) is None
    finally:
        services.store.close()
