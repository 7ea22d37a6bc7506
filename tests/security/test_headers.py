"""Secure headers on every response and CORS closed unless origins are configured."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from plait.server import headers
from plait.server.app import create_app
from tests.server.conftest import LiveServer


def _app(server: LiveServer, environ: dict[str, str] | None = None) -> FastAPI:
    """create_app installs the headers (and CORS from the environment it sees)."""
    saved = {k: os.environ.get(k) for k in (environ or {})}
    os.environ.update(environ or {})
    try:
        app = create_app(server.services)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert any(cast(object, m.cls) is headers.SecureHeaders for m in app.user_middleware)
    return app


@pytest.fixture
def client(sqlite_server: LiveServer) -> Iterator[TestClient]:
    with TestClient(_app(sqlite_server)) as c:
        yield c


def _assert_secure(r: object, csp: str = headers.CSP) -> None:
    h = r.headers  # type: ignore[attr-defined]
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    assert h["content-security-policy"] == csp
    assert "frame-ancestors 'none'" in h["content-security-policy"]


def test_create_app_installs_the_secure_headers(sqlite_server: LiveServer) -> None:
    """Wiring: ``create_app`` must call ``headers.install`` (fails until it does)."""
    app = create_app(sqlite_server.services)
    assert any(cast(object, m.cls) is headers.SecureHeaders for m in app.user_middleware)


def test_every_kind_of_response_carries_the_headers(
    client: TestClient, sqlite_server: LiveServer
) -> None:
    auth = {"Authorization": f"Bearer {sqlite_server.token}"}
    for r in (
        client.get("/health"),
        client.get("/api/v1/workflows", headers=auth),
        client.get("/api/v1/workflows"),  # 401
        client.get("/api/v1/nope", headers=auth),  # 404
        client.post("/api/v1/workflows", content=b"x" * 2_000_000, headers=auth),  # 413
        client.get("/api/v1/openapi.json"),
    ):
        _assert_secure(r)
        assert "strict-transport-security" not in r.headers  # plain HTTP
    assert client.get("/api/v1/workflows", headers=auth).headers["cache-control"] == "no-store"


def test_docs_alone_get_the_relaxed_policy(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    _assert_secure(r, headers.DOCS_CSP)
    assert headers.DOCS_CDN in r.text  # what the relaxed policy exists for
    assert "cdn.jsdelivr" not in client.get("/health").headers["content-security-policy"]


def test_hsts_only_over_https(sqlite_server: LiveServer) -> None:
    with TestClient(_app(sqlite_server), base_url="https://plait.example") as c:
        r = c.get("/health")
    assert r.headers["strict-transport-security"].startswith("max-age=31536000")


def test_cors_is_closed_by_default(client: TestClient) -> None:
    origin = {"Origin": "https://evil.example"}
    r = client.get("/health", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/api/v1/workflows",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers


def test_cors_opens_only_for_the_listed_origins(sqlite_server: LiveServer) -> None:
    env = {"PLAIT_CORS_ORIGINS": "https://ui.example, *, https://bad.example/path, ftp://x"}
    assert headers.cors_origins(env) == ["https://ui.example"]
    with TestClient(_app(sqlite_server, env)) as c:
        pre = c.options(
            "/api/v1/workflows",
            headers={
                "Origin": "https://ui.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://ui.example"
        assert "access-control-allow-credentials" not in pre.headers
        other = c.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        ok = c.get("/health", headers={"Origin": "https://ui.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        _assert_secure(ok)
