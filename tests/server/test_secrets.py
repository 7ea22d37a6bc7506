"""Secrets over real HTTP: write-only, metadata only, sealed at rest, permissions."""

from __future__ import annotations

from pathlib import Path

from plait.server.bootstrap import create_user

from .conftest import LiveServer

VALUE = "s3cr3t-plain-text-value-0451"


def test_secrets_are_write_only(server: LiveServer) -> None:
    with server.client() as c:
        r = c.put("/api/v1/secrets/ops/DEPLOY_KEY", json={"value": VALUE})
        assert r.status_code == 204
        assert r.content == b""
        meta = c.get("/api/v1/secrets/ops/DEPLOY_KEY")
        assert meta.status_code == 200
        assert VALUE not in meta.text
        assert meta.json()["created_by"] == "admin"
        assert set(meta.json()) == {
            "namespace",
            "name",
            "created_at",
            "updated_at",
            "created_by",
            "updated_by",
        }
        assert c.put("/api/v1/secrets/*/SHARED", json={"value": "global"}).status_code == 204
        listed = c.get("/api/v1/secrets").json()
        assert [(s["namespace"], s["name"]) for s in listed["items"]] == [
            ("*", "SHARED"),
            ("ops", "DEPLOY_KEY"),
        ]
        only = c.get("/api/v1/secrets", params={"namespace": "ops"}).json()
        assert [s["name"] for s in only["items"]] == ["DEPLOY_KEY"]
        assert VALUE not in c.get("/api/v1/secrets").text
        values = server.services.server_store.secret_values("ops", ["DEPLOY_KEY", "SHARED"])
        assert values == {"DEPLOY_KEY": VALUE, "SHARED": "global"}
        assert c.delete("/api/v1/secrets/ops/DEPLOY_KEY").status_code == 204
        assert c.get("/api/v1/secrets/ops/DEPLOY_KEY").status_code == 404
        assert c.delete("/api/v1/secrets/ops/DEPLOY_KEY").status_code == 404


def test_names_are_validated(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        assert c.put("/api/v1/secrets/ops/bad-name", json={"value": "x"}).status_code == 422
        assert c.put("/api/v1/secrets/Bad NS/OK", json={"value": "x"}).status_code == 422
        assert c.put("/api/v1/secrets/ops/OK", json={"nope": "x"}).status_code == 422
        big = {"value": "x" * (64 * 1024 + 1)}
        assert c.put("/api/v1/secrets/ops/OK", json=big).status_code == 413


def test_sealed_at_rest(sqlite_server: LiveServer, tmp_path: Path) -> None:
    with sqlite_server.client() as c:
        assert c.put("/api/v1/secrets/ops/DB_PASSWORD", json={"value": VALUE}).status_code == 204
    files = list((tmp_path / "home").glob("plait.db*"))  # the database and its WAL
    assert files
    for path in files:
        assert VALUE.encode() not in path.read_bytes()


def test_permissions(sqlite_server: LiveServer) -> None:
    services = sqlite_server.services
    create_user(services, "ed", "a-long-editor-password", role="editor", namespace="ops")
    create_user(services, "op", "a-long-operator-password", role="operator")
    editor = sqlite_server.login("ed", "a-long-editor-password")
    operator = sqlite_server.login("op", "a-long-operator-password")
    with sqlite_server.client(editor) as c:
        assert c.put("/api/v1/secrets/ops/TOKEN", json={"value": "v"}).status_code == 204
        assert c.put("/api/v1/secrets/dev/TOKEN", json={"value": "v"}).status_code == 403
        assert c.put("/api/v1/secrets/*/TOKEN", json={"value": "v"}).status_code == 403
        assert c.get("/api/v1/secrets", params={"namespace": "dev"}).status_code == 403
    with sqlite_server.client() as c:
        assert c.put("/api/v1/secrets/dev/OTHER", json={"value": "v"}).status_code == 204
    with sqlite_server.client(editor) as c:
        names = [s["name"] for s in c.get("/api/v1/secrets").json()["items"]]
        assert names == ["TOKEN"]
    with sqlite_server.client(operator) as c:
        assert c.put("/api/v1/secrets/ops/TOKEN", json={"value": "v"}).status_code == 403
        assert c.get("/api/v1/secrets/ops/TOKEN").status_code == 403
        assert c.get("/api/v1/secrets").json()["items"] == []
    with sqlite_server.anonymous() as c:
        assert c.put("/api/v1/secrets/ops/TOKEN", json={"value": "v"}).status_code == 401
