"""Users, API tokens, role bindings and the permission checks, over real HTTP."""

from __future__ import annotations

import time
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from plait.server import errors
from plait.server.bootstrap import create_user
from plait.server.deps import Principal, allowed_namespaces, path_param, require

from .conftest import ADMIN_USER, LiveServer

PASSWORD = "a-long-and-unusual-passphrase"


def user_token(
    server: LiveServer, name: str, role: str | None, namespace: str | None = None
) -> str:
    create_user(server.services, name, PASSWORD, role=role, namespace=namespace)
    return server.login(name, PASSWORD)


def api_token(server: LiveServer, scopes: list[str], **extra: object) -> dict[str, object]:
    with server.client() as c:
        r = c.post("/api/v1/tokens", json={"name": "ci", "scopes": scopes, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


def probe_app(server: LiveServer) -> TestClient:
    """A tiny app on the live server's services whose routes only check permissions."""
    app = FastAPI()
    app.state.services = server.services
    errors.install(app)

    @app.post("/ns/{namespace}/start")
    def start(
        who: Annotated[Principal, Depends(require("runs:start", path_param("namespace")))],
    ) -> dict[str, str]:
        return {"actor": who.actor}

    @app.post("/deploy")
    def deploy(
        who: Annotated[Principal, Depends(require("workflows:deploy", "default"))],
    ) -> dict[str, str]:
        return {"actor": who.actor}

    @app.get("/visible")
    def visible(
        who: Annotated[Principal, Depends(require("runs:read", "ops"))],
    ) -> dict[str, list[str] | None]:
        found = allowed_namespaces(who, "runs:read")
        return {"namespaces": None if found is None else sorted(found)}

    return TestClient(app)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_viewer_cannot_deploy_or_manage_users(server: LiveServer) -> None:
    token = user_token(server, "vera", "viewer")
    with server.client(token) as c:
        r = c.post("/api/v1/users", json={"name": "eve", "password": PASSWORD, "admin": True})
        assert r.status_code == 403, r.text
        assert "users:manage" in r.json()["error"]["message"]
        assert c.get("/api/v1/users").status_code == 403
        assert c.get("/api/v1/audit").status_code == 403
        assert c.get("/api/v1/users/vera").status_code == 200  # oneself
    with probe_app(server) as probe:
        r = probe.post("/deploy", headers=auth(token))
        assert r.status_code == 403
        assert "needs role 'editor'" in r.json()["error"]["message"]
        assert probe.post("/deploy", headers=auth(server.token)).status_code == 200


def test_a_namespace_operator_acts_only_in_its_namespace(server: LiveServer) -> None:
    token = user_token(server, "olga", "operator", namespace="ops")
    with probe_app(server) as probe:
        assert probe.post("/ns/ops/start", headers=auth(token)).json() == {"actor": "olga"}
        r = probe.post("/ns/finance/start", headers=auth(token))
        assert r.status_code == 403
        assert r.json()["error"]["details"] == {"permission": "runs:start", "namespace": "finance"}
        assert probe.get("/visible", headers=auth(token)).json() == {"namespaces": ["ops"]}
        assert probe.get("/visible", headers=auth(server.token)).json() == {"namespaces": None}
        assert probe.post("/ns/ops/start").status_code == 401


def test_roles_are_read_per_request(server: LiveServer) -> None:
    token = user_token(server, "olga", "operator", namespace="ops")
    with server.client() as admin, probe_app(server) as probe:
        assert probe.post("/ns/finance/start", headers=auth(token)).status_code == 403
        r = admin.post("/api/v1/roles", json={"subject": "olga", "role": "operator"})
        assert r.status_code == 201, r.text
        assert probe.post("/ns/finance/start", headers=auth(token)).status_code == 200
        assert admin.delete(f"/api/v1/roles/{r.json()['id']}").status_code == 204
        assert probe.post("/ns/finance/start", headers=auth(token)).status_code == 403


def test_user_administration(server: LiveServer) -> None:
    with server.client() as c:
        weak = c.post("/api/v1/users", json={"name": "bob", "password": "password123"})
        assert weak.status_code == 422
        assert "too common" in weak.json()["error"]["message"]
        r = c.post(
            "/api/v1/users",
            json={"name": "bob", "password": PASSWORD, "role": "editor", "namespace": "web"},
        )
        assert r.status_code == 201, r.text
        assert [(b["role"], b["namespace"]) for b in r.json()["roles"]] == [("editor", "web")]
        again = c.post("/api/v1/users", json={"name": "bob", "password": PASSWORD})
        assert again.status_code == 409
        names = [u["name"] for u in c.get("/api/v1/users", params={"limit": 1}).json()["items"]]
        assert names == [ADMIN_USER]
        page = c.get("/api/v1/users", params={"limit": 1}).json()
        rest = c.get("/api/v1/users", params={"cursor": page["next_cursor"]}).json()
        assert [u["name"] for u in rest["items"]] == ["bob"]
        assert c.get("/api/v1/users", params={"cursor": "bogus"}).status_code == 400
        assert c.delete("/api/v1/users/bob").status_code == 204
        assert c.get("/api/v1/users/bob").status_code == 404
        last = c.delete(f"/api/v1/users/{ADMIN_USER}")
        assert last.status_code == 409
        assert "last global admin" in last.json()["error"]["message"]


def test_changing_ones_own_password_needs_the_current_one(server: LiveServer) -> None:
    token = user_token(server, "vera", "viewer")
    new = "another-long-passphrase-2"
    with server.client(token) as c:
        wrong = c.patch("/api/v1/users/vera", json={"password": new, "current_password": "x"})
        assert wrong.status_code == 403
        r = c.patch("/api/v1/users/vera", json={"password": new, "current_password": PASSWORD})
        assert r.status_code == 200, r.text
        assert c.get("/api/v1/auth/me").status_code == 401  # sessions end with the change
        assert c.patch("/api/v1/users/vera", json={"disabled": True}).status_code == 401
    server.login("vera", new)


def test_no_one_grants_above_their_own_role(server: LiveServer) -> None:
    create_user(server.services, "nadia", PASSWORD, role="admin", namespace="ops")
    token = server.login("nadia", PASSWORD)
    create_user(server.services, "vera", PASSWORD, role="viewer")
    with server.client(token) as c:
        ok = c.post("/api/v1/roles", json={"subject": "vera", "role": "editor", "namespace": "ops"})
        assert ok.status_code == 201, ok.text
        for namespace in (None, "finance"):
            body = {"subject": "user:nadia", "role": "admin", "namespace": namespace}
            assert c.post("/api/v1/roles", json=body).status_code == 403
        assert c.get("/api/v1/roles", params={"namespace": "ops"}).status_code == 200
        assert c.get("/api/v1/roles").status_code == 403
    with server.client() as admin:
        bad = admin.post("/api/v1/roles", json={"subject": "vera", "role": "owner"})
        assert bad.status_code == 422
        assert (
            admin.post("/api/v1/roles", json={"subject": "ghost", "role": "viewer"}).status_code
            == 404
        )


def test_api_tokens_are_bearer_credentials_limited_by_scopes(server: LiveServer) -> None:
    created = api_token(server, ["runs:read", "workflows:read"])
    token = str(created["token"])
    assert token.startswith("plt_")
    assert token.startswith(str(created["prefix"]))
    with probe_app(server) as probe:
        assert probe.get("/visible", headers=auth(token)).status_code == 200
        r = probe.post("/deploy", headers=auth(token))
        assert r.status_code == 403
        assert "scope 'workflows:write'" in r.json()["error"]["message"]
    with server.client(token) as c:
        whoami = c.get("/api/v1/auth/me").json()
        assert whoami["kind"] == "token"
        assert whoami["scopes"] == ["runs:read", "workflows:read"]
        assert c.get("/api/v1/users").status_code == 403  # admin owner, but no admin scope
        wider = c.post("/api/v1/tokens", json={"name": "more", "scopes": ["admin"]})
        assert wider.status_code == 403
    with server.client() as c:
        listed = c.get("/api/v1/tokens").json()["items"]
        assert [t["name"] for t in listed] == ["ci"]
        assert "token" not in listed[0]
        assert listed[0]["last_used_at"] is not None
        assert c.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    with server.client(token) as c:
        refused = c.get("/api/v1/auth/me")
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == "the API token is revoked"


def test_expired_and_unknown_scope_tokens(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post("/api/v1/tokens", json={"name": "x", "scopes": ["root"]})
        assert r.status_code == 422
    created = api_token(server, ["admin"], expires_in=1)
    time.sleep(1.1)
    with server.client(str(created["token"])) as c:
        r = c.get("/api/v1/auth/me")
        assert r.status_code == 401
        assert r.json()["error"]["message"] == "the API token is expired"


def test_a_token_never_exceeds_its_owner(server: LiveServer) -> None:
    create_user(server.services, "olga", PASSWORD, role="operator", namespace="ops")
    with server.client(server.login("olga", PASSWORD)) as c:
        r = c.post("/api/v1/tokens", json={"name": "mine", "scopes": ["admin"]})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        assert c.get("/api/v1/tokens").json()["items"][0]["user"] == "olga"
        other = c.post(
            "/api/v1/tokens", json={"name": "t", "scopes": ["admin"], "user": ADMIN_USER}
        )
        assert other.status_code == 403
    with probe_app(server) as probe:
        assert probe.post("/ns/ops/start", headers=auth(token)).status_code == 200
        assert probe.post("/ns/finance/start", headers=auth(token)).status_code == 403
    with server.client(token) as c:
        assert c.get("/api/v1/users").status_code == 403


def test_require_refuses_unknown_permissions() -> None:
    with pytest.raises(ValueError, match="unknown permission"):
        require("workflows:destroy")


def test_openapi_documents_the_account_routes(sqlite_server: LiveServer) -> None:
    with sqlite_server.anonymous() as c:
        doc = c.get("/api/v1/openapi.json").json()
    paths = doc["paths"]
    for path in ("/api/v1/auth/token", "/api/v1/users", "/api/v1/tokens", "/api/v1/roles"):
        assert path in paths
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    created = paths["/api/v1/tokens"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["$ref"].endswith("TokenCreated")
