"""The TOTP second factor over real HTTP: enrolment, login with and without a code,
replayed codes, recovery codes, disabling, and an administrator's reset."""

from __future__ import annotations

import time

import httpx
import pytest
import sqlalchemy as sa

from plait.security import totp
from plait.server.bootstrap import create_user
from plait.store.accounts import AuditFilter
from plait.store.tables import user_mfa

from .conftest import LiveServer

PASSWORD = "a-long-and-unusual-passphrase"


class Clock:
    """The server's clock, moved by the test (TOTP codes depend on it)."""

    def __init__(self) -> None:
        self.now = float(int(time.time() // 30) * 30 + 5)  # 5 s into a time step

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(server: LiveServer) -> Clock:
    c = Clock()
    server.services.clock = c
    return c


def login(server: LiveServer, otp: str | None = None, user: str = "mia") -> httpx.Response:
    form = {"username": user, "password": PASSWORD}
    if otp is not None:
        form["otp"] = otp
    with server.anonymous() as c:
        return c.post("/api/v1/auth/token", data=form)


def enrol(server: LiveServer, clock: Clock, token: str) -> tuple[str, list[str]]:
    """Enrol and confirm ``token``'s user; returns the secret and recovery codes."""
    with server.client(token) as c:
        r = c.post("/api/v1/auth/mfa/enroll")
        assert r.status_code == 200, r.text
        secret = r.json()["secret"]
        r = c.post("/api/v1/auth/mfa/confirm", json={"code": totp.code_at(secret, clock.now)})
        assert r.status_code == 200, r.text
        return secret, r.json()["recovery_codes"]


@pytest.fixture
def mia(server: LiveServer, clock: Clock) -> str:
    create_user(server.services, "mia", PASSWORD, role="viewer")
    r = login(server)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_enrolment_then_login_needs_a_fresh_code(
    server: LiveServer, clock: Clock, mia: str
) -> None:
    with server.client(mia) as c:
        r = c.post("/api/v1/auth/mfa/enroll")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["otpauth_uri"].startswith("otpauth://totp/Plait:mia?secret=")
        assert body["qr_svg"].startswith("<svg")  # the URI as a QR code for the UI
        assert c.get("/api/v1/auth/mfa").json() == {
            "enabled": False,
            "pending": True,
            "recovery_codes_left": 0,
        }
        assert login(server).status_code == 200  # pending: not enforced yet
        wrong = c.post("/api/v1/auth/mfa/confirm", json={"code": "000000"})
        assert wrong.status_code == 400
        assert wrong.json()["error"]["code"] == "mfa_invalid"
        code = totp.code_at(body["secret"], clock.now)
        r = c.post("/api/v1/auth/mfa/confirm", json={"code": code})
        assert r.status_code == 200, r.text
        assert len(set(r.json()["recovery_codes"])) == 10
        assert c.get("/api/v1/auth/mfa").json()["enabled"] is True

    missing = login(server)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "mfa_required"
    assert (
        login(server, "123456" if code != "123456" else "654321").json()["error"]["code"]
        == "mfa_invalid"
    )
    assert login(server, code).json()["error"]["code"] == "mfa_invalid"  # used to confirm
    clock.now += 30
    fresh = totp.code_at(body["secret"], clock.now)
    assert login(server, fresh).status_code == 200
    replay = login(server, fresh)
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "mfa_invalid"


def test_a_recovery_code_works_once(server: LiveServer, clock: Clock, mia: str) -> None:
    _, codes = enrol(server, clock, mia)
    ok = login(server, codes[3].lower())
    assert ok.status_code == 200, ok.text
    assert login(server, codes[3]).status_code == 401
    with server.client(ok.json()["access_token"]) as c:
        assert c.get("/api/v1/auth/mfa").json()["recovery_codes_left"] == 9
    entries = server.services.accounts.audit_entries(AuditFilter(action="login")).items
    outcomes = [
        (e.outcome, e.details.get("reason"), e.details.get("second_factor")) for e in entries
    ]
    assert outcomes[:2] == [
        ("denied", "wrong second factor", None),
        ("success", None, "recovery_code"),
    ]


def test_disable_needs_password_and_code(server: LiveServer, clock: Clock, mia: str) -> None:
    secret, codes = enrol(server, clock, mia)
    clock.now += 30
    code = totp.code_at(secret, clock.now)
    with server.client(mia) as c:
        bad = c.post("/api/v1/auth/mfa/disable", json={"password": "wrong-password", "code": code})
        assert bad.status_code == 403
        r = c.post(
            "/api/v1/auth/mfa/disable", json={"password": PASSWORD, "recovery_code": codes[0]}
        )
        assert r.status_code == 204, r.text
        assert c.get("/api/v1/auth/mfa").json()["enabled"] is False
    assert login(server).status_code == 200


def test_the_secret_is_stored_sealed(server: LiveServer, clock: Clock, mia: str) -> None:
    secret, _ = enrol(server, clock, mia)
    with server.services.store.engine.connect() as conn:
        sealed = conn.execute(sa.select(user_mfa.c.sealed_secret)).scalar_one()
    assert secret.encode() not in bytes(sealed)
    assert server.services.keyring.unseal(bytes(sealed)) == secret.encode()


def test_api_tokens_cannot_manage_the_second_factor(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        r = c.post("/api/v1/tokens", json={"name": "ci", "scopes": ["workflows:read"]})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
    with sqlite_server.client(token) as c:
        assert c.post("/api/v1/auth/mfa/enroll").status_code == 403


def test_an_admin_resets_a_lost_second_factor(server: LiveServer, clock: Clock, mia: str) -> None:
    enrol(server, clock, mia)
    with server.client(mia) as c:
        assert c.post("/api/v1/auth/mfa/reset", json={"user": "mia"}).status_code == 403
    with server.client() as c:
        assert c.post("/api/v1/auth/mfa/reset", json={"user": "mia"}).status_code == 204
    assert login(server).status_code == 200
    with server.client(mia) as c:  # the sessions from before the reset are over
        assert c.get("/api/v1/auth/me").status_code == 401
