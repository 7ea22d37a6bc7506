"""``/health``, ``/ready`` and ``/metrics`` on a live server."""

from __future__ import annotations

import sqlalchemy as sa

from .conftest import LiveServer


def test_health_needs_no_token(server: LiveServer) -> None:
    with server.anonymous() as c:
        r = c.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_ready_when_the_store_is_current(server: LiveServer) -> None:
    with server.anonymous() as c:
        r = c.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"


def test_not_ready_when_migrations_are_behind(sqlite_server: LiveServer) -> None:
    engine = sqlite_server.services.store.engine
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'old'"))
    with sqlite_server.anonymous() as c:
        r = c.get("/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable"
    assert "plait db upgrade" in body["reason"]
