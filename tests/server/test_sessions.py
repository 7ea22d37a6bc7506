"""Login sessions over real HTTP: listed with their client, revoked one at a time, and
the access tokens of a revoked session refused at once."""

from __future__ import annotations

import httpx

from plait.server.bootstrap import create_user

from .conftest import LiveServer

PASSWORD = "a-long-and-unusual-passphrase"


def login(server: LiveServer, agent: str) -> dict[str, str]:
    with server.anonymous() as c:
        r = c.post(
            "/api/v1/auth/token",
            data={"username": "sam", "password": PASSWORD},
            headers={"User-Agent": agent},
        )
    assert r.status_code == 200, r.text
    return dict(r.json())


def sessions(server: LiveServer, token: str, **params: str) -> httpx.Response:
    with server.client(token) as c:
        return c.get("/api/v1/auth/sessions", params=params)


def test_sessions_are_listed_and_revoked(server: LiveServer) -> None:
    create_user(server.services, "sam", PASSWORD, role="viewer")
    laptop, phone = login(server, "laptop/1.0"), login(server, "phone/2.0")
    r = sessions(server, laptop["access_token"])
    assert r.status_code == 200, r.text
    listed = {s["user_agent"]: s for s in r.json()}
    assert set(listed) == {"laptop/1.0", "phone/2.0"}
    assert listed["laptop/1.0"]["current"] is True
    assert listed["phone/2.0"]["current"] is False
    assert listed["phone/2.0"]["source_ip"] == "127.0.0.1"
    assert listed["phone/2.0"]["expires_at"] > listed["phone/2.0"]["created_at"]

    with server.client(laptop["access_token"]) as c:
        gone = c.delete(f"/api/v1/auth/sessions/{listed['phone/2.0']['id']}")
        assert gone.status_code == 204, gone.text
        assert c.get("/api/v1/auth/me").status_code == 200  # the laptop's own session lives
    with server.client(phone["access_token"]) as c:
        assert c.get("/api/v1/auth/me").status_code == 401  # at once, not at expiry
    with server.anonymous() as c:
        r = c.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
        assert r.status_code == 401
    assert [s["user_agent"] for s in sessions(server, laptop["access_token"]).json()] == [
        "laptop/1.0"
    ]


def test_only_admins_see_and_end_other_users_sessions(server: LiveServer) -> None:
    create_user(server.services, "sam", PASSWORD, role="viewer")
    create_user(server.services, "eve", PASSWORD, role="editor")
    sam = login(server, "sam-browser")
    with server.anonymous() as c:
        r = c.post("/api/v1/auth/token", data={"username": "eve", "password": PASSWORD})
    eve = r.json()["access_token"]
    assert sessions(server, eve, user="sam").status_code == 403
    (sams,) = sessions(server, server.token, user="sam").json()
    assert sams["user"] == "sam"
    with server.client(eve) as c:  # another's session: as if it did not exist
        assert c.delete(f"/api/v1/auth/sessions/{sams['id']}").status_code == 404
    with server.client() as c:
        assert c.delete(f"/api/v1/auth/sessions/{sams['id']}").status_code == 204
        assert c.delete(f"/api/v1/auth/sessions/{sams['id']}").status_code == 404
    with server.client(sam["access_token"]) as c:
        assert c.get("/api/v1/auth/me").status_code == 401
