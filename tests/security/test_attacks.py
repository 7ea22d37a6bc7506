"""Attacks on a live server: forged tokens, privilege escalation, cross-namespace access
and secrets that must stay write-only. Input attacks are in test_input_attacks.py."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest

from tests.server.conftest import ADMIN_USER, LiveServer

from .conftest import PASSWORD, assert_error_shape, deploy, start, user_token, wait_status, workflow


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, body, sig = token.split(".")

    def pad(part: str) -> str:
        return part + "=" * (-len(part) % 4)

    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(body))),
        sig,
    )


def _me(server: LiveServer, token: str) -> httpx.Response:
    with server.client(token) as c:
        return c.get("/api/v1/auth/me")


# -- token tampering -------------------------------------------------------------------
def test_forged_access_tokens_are_refused(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    viewer = user_token(server, "vera", "viewer")
    assert _me(server, viewer).status_code == 200
    header, payload, sig = _parts(viewer)
    secret = server.services.tokens._secret  # the real key: only the algorithm is wrong
    admin_id = str(server.services.accounts.find_user(ADMIN_USER).id)  # type: ignore[union-attr]
    as_admin = {**payload, "sub": admin_id}
    now = int(time.time())
    forged = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(as_admin)}.",
        "alg None": f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{_b64(as_admin)}.",
        "HS512 with the real key": jwt.encode(as_admin, secret, algorithm="HS512"),
        "RS256 header, HMAC body": (
            lambda h, p: f"{h}.{p}." + jwt.encode(as_admin, secret).split(".")[2]
        )(_b64({"alg": "RS256", "typ": "JWT"}), _b64(as_admin)),
        "wrong key": jwt.encode(as_admin, "not-the-server-key-" * 3, algorithm="HS256"),
        "expired": jwt.encode(
            {**payload, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, secret
        ),
        "not yet valid": jwt.encode({**payload, "nbf": now + 3600, "iat": now}, secret),
        "modified payload": f"{_b64(header)}.{_b64(as_admin)}.{sig}",
        "no signature": f"{_b64(header)}.{_b64(payload)}.",
        "refresh type": jwt.encode({**payload, "typ": "refresh"}, secret),
        "no exp": jwt.encode({k: v for k, v in payload.items() if k != "exp"}, secret),
        "no jti": jwt.encode({k: v for k, v in payload.items() if k != "jti"}, secret),
        "sub not a number": jwt.encode({**payload, "sub": "admin"}, secret),
        "sub unknown id": jwt.encode({**payload, "sub": "999999"}, secret),
        "kid and jku headers, other key": jwt.encode(
            as_admin, "attacker-key-" * 4, headers={"kid": "../../dev/null", "jku": "http://x"}
        ),
    }
    for what, token in forged.items():
        r = _me(server, token)
        assert r.status_code == 401, (what, r.status_code, r.text)
        assert_error_shape(r)
        assert '"roles"' not in r.text, (what, r.text)
    # the control: a genuine HS256 token with the real key and a fresh payload works
    assert _me(server, jwt.encode(payload, secret, algorithm="HS256")).status_code == 200


def test_a_replayed_refresh_token_revokes_the_whole_session(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    create_user_and = user_token(server, "rita", "viewer")
    assert create_user_and
    with server.anonymous() as c:
        first = c.post("/api/v1/auth/token", data={"username": "rita", "password": PASSWORD})
        pair = first.json()
        second = c.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert second.status_code == 200, second.text
        new = second.json()
        assert _me(server, new["access_token"]).status_code == 200
        replay = c.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert replay.status_code == 401
        assert_error_shape(replay)
        # the thief's replay ended the session: the rotated tokens die with it
        again = c.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
        assert again.status_code == 401
    assert _me(server, new["access_token"]).status_code == 401
    assert _me(server, pair["access_token"]).status_code == 401


# -- privilege escalation --------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "namespace"),
    [("viewer", None), ("operator", None), ("editor", None), ("editor", "ops")],
)
def test_nobody_below_admin_grants_themselves_a_role(
    sqlite_server: LiveServer, role: str, namespace: str | None
) -> None:
    server = sqlite_server
    token = user_token(server, "eddie", role, namespace)
    with server.client(token) as c:
        for grant in (
            {"subject": "user:eddie", "role": "admin"},
            {"subject": "eddie", "role": "admin", "namespace": "ops"},
            {"subject": "user:eddie", "role": "editor", "namespace": "finance"},
        ):
            r = c.post("/api/v1/roles", json=grant)
            assert r.status_code == 403, (grant, r.text)
        r = c.post("/api/v1/users", json={"name": "sock", "password": PASSWORD, "admin": True})
        assert r.status_code == 403
        r = c.patch(f"/api/v1/users/{ADMIN_USER}", json={"password": "pwned-pwned-pwned-1"})
        assert r.status_code == 403
        assert c.get("/api/v1/audit").status_code == 403
        me = c.get("/api/v1/auth/me").json()
    assert [r["role"] for r in me["roles"]] == [role]


def test_a_namespace_admin_stays_in_its_namespace(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    token = user_token(server, "nadia", "admin", "ops")
    user_token(server, "otto", None)
    with server.client(token) as c:
        for grant in (
            {"subject": "user:nadia", "role": "viewer"},  # global
            {"subject": "user:otto", "role": "admin"},
            {"subject": "user:nadia", "role": "admin", "namespace": "finance"},
            {"subject": "user:otto", "role": "operator", "namespace": "finance"},
        ):
            r = c.post("/api/v1/roles", json=grant)
            assert r.status_code == 403, (grant, r.text)
        ok = c.post("/api/v1/roles", json={"subject": "otto", "role": "editor", "namespace": "ops"})
        assert ok.status_code == 201, ok.text
        r = c.post("/api/v1/users", json={"name": "mallory", "password": PASSWORD, "admin": True})
        assert r.status_code == 403
        global_bindings = list(c.get("/api/v1/roles", params={"namespace": "ops"}).json())
        assert all(b["namespace"] == "ops" for b in global_bindings)
        assert c.get("/api/v1/roles").status_code == 403  # every binding: global only
        admin_binding = server.services.accounts.list_bindings(
            "user",
            server.services.accounts.find_user(ADMIN_USER).id,  # type: ignore[union-attr]
        )[0]
        assert c.delete(f"/api/v1/roles/{admin_binding.id}").status_code == 403


def test_a_token_never_exceeds_its_owner(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    viewer = user_token(server, "vic", "viewer")
    wide = ["admin", "runs:write", "secrets:write", "workflows:write", "runs:approve"]
    with server.client(viewer) as c:
        made = c.post("/api/v1/tokens", json={"name": "wide", "scopes": wide})
    assert made.status_code in (201, 403, 422), made.text
    if made.status_code != 201:
        return  # refusing the scopes outright is also fine
    token = made.json()["token"]
    assert deploy(server, workflow("esc")).status_code == 201
    with server.client(token) as c:
        assert c.post("/api/v1/workflows/esc/runs", json={"inputs": {}}).status_code == 403
        assert c.put("/api/v1/secrets/default/X", json={"value": "v" * 10}).status_code == 403
        r = c.post("/api/v1/users", json={"name": "mal", "password": PASSWORD, "admin": True})
        assert r.status_code == 403
        assert c.post("/api/v1/workflows", json={"source": workflow("esc2")}).status_code == 403
        r = c.post("/api/v1/roles", json={"subject": f"token:{made.json()['id']}", "role": "admin"})
        assert r.status_code == 403
    # even an admin binding the token itself cannot lift it above its owner
    with server.client() as c:
        r = c.post("/api/v1/roles", json={"subject": f"token:{made.json()['id']}", "role": "admin"})
        assert r.status_code == 201, r.text
    with server.client(token) as c:
        assert c.post("/api/v1/workflows/esc/runs", json={"inputs": {}}).status_code == 403
        assert c.get("/api/v1/users").status_code == 403


def test_a_token_cannot_mint_a_token_with_wider_scopes(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    with server.client() as c:
        ro = c.post("/api/v1/tokens", json={"name": "ro", "scopes": ["runs:read"]}).json()
    with server.client(ro["token"]) as c:
        r = c.post("/api/v1/tokens", json={"name": "up", "scopes": ["admin"]})
        assert r.status_code == 403, r.text


def test_a_read_only_token_cannot_manage_its_owners_tokens(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    with server.client() as c:
        other = c.post("/api/v1/tokens", json={"name": "ci", "scopes": ["runs:write"]}).json()
        short = c.post(
            "/api/v1/tokens", json={"name": "ro", "scopes": ["runs:read"], "expires_in": 60}
        ).json()
    with server.client(short["token"]) as c:
        minted = c.post("/api/v1/tokens", json={"name": "forever", "scopes": ["runs:read"]})
        revoked = c.delete(f"/api/v1/tokens/{other['id']}")
    # a leaked 60-second read token must not outlive itself nor disable the owner's CI
    assert minted.status_code == 403, minted.text
    assert revoked.status_code == 403, revoked.text


# -- IDOR across namespaces ------------------------------------------------------------
def _two_namespaces(server: LiveServer) -> tuple[str, str]:
    assert deploy(server, workflow("fin-pay", "finance")).status_code == 201
    assert deploy(server, workflow("ops-job", "ops")).status_code == 201
    fin_run = start(server, "fin-pay")
    ops_run = start(server, "ops-job")
    wait_status(server, fin_run, ("waiting",))
    wait_status(server, ops_run, ("waiting",))
    with server.client() as c:
        assert c.put("/api/v1/secrets/finance/BANK", json={"value": "b" * 16}).status_code == 204
    return fin_run, ops_run


def test_an_ops_operator_cannot_touch_finance(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    fin_run, ops_run = _two_namespaces(server)
    token = user_token(server, "olga", "operator", "ops")
    hidden = (403, 404)
    with server.client(token) as c:
        attempts: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"/api/v1/runs/{fin_run}", None),
            ("GET", f"/api/v1/runs/{fin_run}/logs", None),
            ("GET", f"/api/v1/runs/{fin_run}/logs?follow=true", None),
            ("POST", f"/api/v1/runs/{fin_run}/cancel", None),
            ("POST", f"/api/v1/runs/{fin_run}/retry", {}),
            ("POST", f"/api/v1/runs/{fin_run}/steps/gate/approve", {"comment": "x"}),
            ("POST", f"/api/v1/runs/{fin_run}/steps/gate/reject", {"comment": "x"}),
            ("POST", "/api/v1/workflows/fin-pay/runs", {"inputs": {}}),
            ("GET", "/api/v1/workflows/fin-pay", None),
            ("GET", "/api/v1/workflows/fin-pay/versions", None),
            ("GET", "/api/v1/workflows/fin-pay/versions/1", None),
            ("GET", "/api/v1/workflows/fin-pay/diff?from=1&to=1", None),
            ("GET", "/api/v1/workflows/fin-pay/schedules", None),
            ("POST", "/api/v1/workflows/fin-pay/rollback", {"version": 1}),
            ("GET", "/api/v1/secrets/finance/BANK", None),
            ("GET", "/api/v1/secrets?namespace=finance", None),
            ("PUT", "/api/v1/secrets/finance/BANK", {"value": "overwritten!"}),
            ("DELETE", "/api/v1/secrets/finance/BANK", None),
            ("GET", "/api/v1/runs?namespace=finance", None),
            ("POST", "/api/v1/workflows", {"source": workflow("fin-evil", "finance")}),
        ]
        for method, path, body in attempts:
            r = c.request(method, path, json=body)
            if path.endswith("runs?namespace=finance") and r.status_code == 200:
                assert r.json()["items"] == [], r.text
                continue
            assert r.status_code in hidden, (method, path, r.status_code, r.text)
            assert "b" * 16 not in r.text
        runs = c.get("/api/v1/runs").json()["items"]
        assert {x["id"] for x in runs} == {ops_run}
        flows = c.get("/api/v1/workflows").json()["items"]
        assert {w["name"] for w in flows} == {"ops-job"}
        assert c.get("/api/v1/secrets").json()["items"] == []
        # the control: the same operator may act in ops
        ok = c.post(f"/api/v1/runs/{ops_run}/steps/gate/approve", json={"comment": "ok"})
        assert ok.status_code == 200, ok.text
    wait_status(server, fin_run, ("waiting",))  # finance untouched


def test_an_ops_editor_cannot_reach_finance_through_a_sub_workflow(
    sqlite_server: LiveServer,
) -> None:
    """Deploying in ops a workflow that calls a finance workflow must not run it."""
    server = sqlite_server
    assert deploy(server, workflow("fin-pay", "finance")).status_code == 201
    token = user_token(server, "ed", "editor", "ops")
    parent = (
        "name: ops-caller\nnamespace: ops\nsteps:\n"
        "  - id: call\n    uses: workflow\n    with: {workflow: fin-pay, inputs: {}}\n"
    )
    r = deploy(server, parent, token)
    if r.status_code in (403, 422):
        return  # refused at deploy time: fine
    assert r.status_code == 201, r.text
    with server.client(token) as c:
        started = c.post("/api/v1/workflows/ops-caller/runs", json={"inputs": {}})
        assert started.status_code == 201, started.text
    run = wait_status(server, started.json()["id"], ("failed", "succeeded", "waiting"), 30)
    with server.client() as c:
        fin_runs = c.get("/api/v1/runs", params={"workflow": "fin-pay"}).json()["items"]
    assert fin_runs == [], f"an ops workflow started a finance run: {run}"


# -- secrets are write-only ------------------------------------------------------------
def test_an_editor_writes_secrets_but_never_reads_one_back(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    value = "editor-canary-7f3a9c"
    token = user_token(server, "edna", "editor")
    with server.client(token) as c:
        assert c.put("/api/v1/secrets/default/API_KEY", json={"value": value}).status_code == 204
        seen = [
            c.get("/api/v1/secrets/default/API_KEY"),
            c.get("/api/v1/secrets"),
            c.get("/api/v1/secrets", params={"namespace": "default"}),
            c.get("/api/v1/secrets/default/API_KEY", params={"reveal": "true"}),
            c.get("/api/v1/secrets/default/API_KEY/value"),
            c.get("/api/v1/secrets/default/API_KEY", headers={"Accept": "text/plain"}),
        ]
    for r in seen:
        assert r.status_code < 500
        assert value not in r.text, r.request.url
    with server.client() as c:  # not even the admin
        for path in ("/api/v1/secrets/default/API_KEY", "/api/v1/secrets", "/api/v1/audit"):
            assert value not in c.get(path).text
