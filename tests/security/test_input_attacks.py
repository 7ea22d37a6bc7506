"""Attacks through input: SQL and log injection, path traversal, webhook forgery and
replay, oversized, malformed and out-of-range bodies."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import httpx

from plait.triggers.webhook import sign
from tests.server.conftest import ADMIN_USER, LiveServer

from .conftest import PASSWORD, assert_error_shape, deploy, start, workflow

# -- injection -------------------------------------------------------------------------
PAYLOADS = [
    "' OR 1=1 --",
    "'; DROP TABLE runs; --",
    '" OR ""="',
    "x') UNION SELECT password_hash, 1 FROM users --",
    "%' OR name LIKE '%",
    "\\",
    "admin\x00",
    "line\nforged audit line",
    "{{ 7*7 }} ${{ secrets.X }}",
]


def _no_5xx(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text)
    assert "Traceback" not in r.text, r.text
    assert "sqlalchemy" not in r.text.lower(), r.text


def test_injection_in_every_string_field_is_inert(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    assert deploy(server, workflow("inj")).status_code == 201
    with server.client() as c:
        for p in PAYLOADS:
            params_sets = [
                ("/api/v1/runs", {"workflow": p}),
                ("/api/v1/runs", {"status": p}),
                ("/api/v1/runs", {"namespace": p}),
                ("/api/v1/runs", {"cursor": p}),
                ("/api/v1/workflows", {"q": p}),
                ("/api/v1/workflows", {"label": p}),
                ("/api/v1/workflows", {"label": f"stage:{p}"}),
                ("/api/v1/workflows", {"namespace": p}),
                ("/api/v1/workflows", {"cursor": p}),
                ("/api/v1/audit", {"actor": p}),
                ("/api/v1/audit", {"action": p}),
                ("/api/v1/audit", {"outcome": p}),
                ("/api/v1/audit", {"since": p}),
                ("/api/v1/audit", {"cursor": p}),
                ("/api/v1/users", {"cursor": p}),
                ("/api/v1/tokens", {"user": p}),
                ("/api/v1/roles", {"subject": p}),
                ("/api/v1/roles", {"namespace": p}),
                ("/api/v1/secrets", {"namespace": p}),
                ("/api/v1/secrets", {"cursor": p}),
            ]
            for path, params in params_sets:
                r = c.get(path, params=params)
                _no_5xx(r)
                if path == "/api/v1/runs" and r.status_code == 200:
                    assert r.json()["items"] == [], (params, r.text)
            q = quote(p, safe="")
            for path in (f"/api/v1/workflows/{q}", f"/api/v1/users/{q}", f"/api/v1/runs/{q}"):
                _no_5xx(c.get(path))
            _no_5xx(c.get(f"/api/v1/secrets/default/{q}"))
            _no_5xx(c.post("/api/v1/workflows", json={"source": workflow(p)}))
            _no_5xx(c.post("/api/v1/workflows", json={"source": f"name: ok\nnamespace: '{p}'"}))
            r = c.post("/api/v1/workflows/inj/runs", json={"inputs": {"who": p}})
            _no_5xx(r)
            _no_5xx(c.post("/api/v1/users", json={"name": p, "password": PASSWORD}))
            _no_5xx(c.post("/api/v1/tokens", json={"name": p, "scopes": ["runs:read"]}))
            _no_5xx(c.post("/api/v1/tokens", json={"name": "t", "scopes": [p]}))
            _no_5xx(c.post("/api/v1/roles", json={"subject": p, "role": "viewer"}))
            _no_5xx(c.post("/api/v1/roles", json={"subject": "admin", "role": p}))
            _no_5xx(c.put(f"/api/v1/secrets/default/{q}", json={"value": p}))
            _no_5xx(c.post("/api/v1/events", json={"type": p, "data": {"x": p}}))
            with server.anonymous() as anon:
                r = anon.post("/api/v1/auth/token", data={"username": p, "password": p})
                assert r.status_code in (401, 422, 429), r.text
        # the injections did nothing: the tables and the admin are intact
        assert c.get("/api/v1/workflows/inj").status_code == 200
        assert c.get("/api/v1/auth/me").json()["name"] == ADMIN_USER
        verify = c.get("/api/v1/audit/verify")
        assert verify.status_code == 200, verify.text
        assert verify.json()["ok"] is True, verify.text


def test_newlines_in_user_names_cannot_forge_audit_lines(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    forged = '{"actor": "admin", "action": "users.delete", "outcome": "success"}'
    with server.anonymous() as c:
        for name in (f"eve\n{forged}", f"eve\r\n{forged}", "eve\u2028admin", "eve\x1b[2J"):
            r = c.post("/api/v1/auth/token", data={"username": name, "password": "x" * 12})
            assert r.status_code in (401, 422, 429)
    with server.client() as c:
        r = c.post("/api/v1/users", json={"name": f"mal\n{forged}", "password": PASSWORD})
        assert r.status_code in (201, 422)
        export = c.get("/api/v1/audit", params={"format": "jsonl"})
        assert export.status_code == 200
        lines = export.text.split("\n")  # JSON lines: only \n separates records
        entries = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
        assert not [e for e in entries if e.get("action") == "users.delete"]
        assert entries
        assert all("hash" in e and "prev_hash" in e for e in entries)
        assert not [e for e in entries if "\n" in str(e.get("actor"))] or all(
            line.count("\n") == 0 for line in lines
        )
        verify = c.get("/api/v1/audit/verify").json()
        assert verify["ok"] is True, verify


# -- path traversal --------------------------------------------------------------------
TRAVERSALS = [
    "../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..\\..\\windows\\win.ini",
    "....//....//etc/passwd",
    "%252e%252e%252fetc%252fpasswd",
]


def test_path_traversal_reaches_no_file(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    with server.client() as c:
        for t in TRAVERSALS:
            for path in (
                f"/api/v1/workflows/{t}",
                f"/api/v1/workflows/{t}/versions",
                f"/api/v1/secrets/default/{t}",
                f"/api/v1/secrets/{t}/X",
                f"/api/v1/runs/{t}",
                f"/api/v1/runs/{t}/logs",
                f"/{t}",
                f"/assets/{t}",
                f"/static/{t}",
            ):
                r = c.get(path)
                _no_5xx(r)
                assert "root:" not in r.text, (path, r.text[:200])
                assert "[fonts]" not in r.text, (path, r.text[:200])
            # httpx resolves a literal ../ before sending: a 204 then names a plain secret
            r = c.put(f"/api/v1/secrets/default/{t}", json={"value": "v" * 8})
            assert r.status_code in (204, 404, 405, 422), (t, r.status_code)
            r = c.post("/api/v1/workflows", json={"source": f"name: '{t}'\nsteps: []\n"})
            assert r.status_code == 422, (t, r.text)
            assert_error_shape(r)
        # the home directory holds nothing named after a traversal
        names = [p.name for p in server.services.settings.home.rglob("*")]
        assert not [n for n in names if "passwd" in n or ".." in n], names


# -- webhooks --------------------------------------------------------------------------
HOOK_KEY = "webhook-key-for-attacks"


def _hooked(name: str, timestamp: bool) -> str:
    return (
        f"name: {name}\n"
        "triggers:\n"
        f"  - webhook: {{secret: '{HOOK_KEY}', require_timestamp: {str(timestamp).lower()}}}\n"
        "steps:\n  - id: show\n    run: echo ok\n"
    )


def _post_hook(server: LiveServer, name: str, body: bytes, **headers: str) -> httpx.Response:
    with server.anonymous() as c:
        return c.post(
            f"/api/v1/hooks/{name}",
            content=body,
            headers={"Content-Type": "application/json", **headers},
        )


def test_webhook_forgeries_and_replays_are_refused(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    assert deploy(server, _hooked("plain", False)).status_code == 201
    assert deploy(server, _hooked("stamped", True)).status_code == 201
    body = b'{"ref": "main"}'
    good = sign(HOOK_KEY, body)
    refusals = [
        _post_hook(server, "plain", body),
        _post_hook(server, "plain", body, **{"X-Plait-Signature": ""}),
        _post_hook(server, "plain", body, **{"X-Plait-Signature": "sha256="}),
        _post_hook(server, "plain", body, **{"X-Plait-Signature": sign("wrong-key", body)}),
        _post_hook(server, "plain", body, **{"X-Plait-Signature": good.replace("sha256", "md5")}),
        _post_hook(server, "plain", body, **{"X-Plait-Signature": good[:-2]}),
        _post_hook(server, "plain", body + b" ", **{"X-Plait-Signature": good}),
        _post_hook(server, "plain", body, **{"X-Plait-Signature": "sha256=" + "zz" * 32}),
        _post_hook(server, "stamped", body, **{"X-Plait-Signature": good}),
    ]
    stale = str(int(time.time()) - 3600)
    refusals.append(
        _post_hook(
            server,
            "stamped",
            body,
            **{"X-Plait-Signature": sign(HOOK_KEY, body, stale), "X-Plait-Timestamp": stale},
        )
    )
    future = str(int(time.time()) + 3600)
    refusals.append(
        _post_hook(
            server,
            "stamped",
            body,
            **{"X-Plait-Signature": sign(HOOK_KEY, body, future), "X-Plait-Timestamp": future},
        )
    )
    fresh = str(int(time.time()))
    refusals.append(  # a timestamp changed after signing
        _post_hook(
            server,
            "stamped",
            body,
            **{"X-Plait-Signature": sign(HOOK_KEY, body, stale), "X-Plait-Timestamp": fresh},
        )
    )
    for i, r in enumerate(refusals):
        assert r.status_code in (400, 401), (i, r.status_code, r.text)
        assert_error_shape(r)
    assert _post_hook(server, "nope", body, **{"X-Plait-Signature": good}).status_code == 404
    with server.client() as c:
        assert c.get("/api/v1/runs", params={"workflow": "plain"}).json()["items"] == []
    # a replayed delivery starts no second run
    headers = {"X-Plait-Signature": good, "X-Plait-Delivery": "d-1"}
    first = _post_hook(server, "plain", body, **headers)
    assert first.status_code == 202, first.text
    replay = _post_hook(server, "plain", body, **headers)
    assert replay.status_code == 200
    assert replay.json()["duplicate"] is True
    assert replay.json()["run_id"] == first.json()["run_id"]
    stamped = sign(HOOK_KEY, body, fresh)
    ok = _post_hook(
        server, "stamped", body, **{"X-Plait-Signature": stamped, "X-Plait-Timestamp": fresh}
    )
    assert ok.status_code == 202, ok.text
    with server.client() as c:
        assert len(c.get("/api/v1/runs", params={"workflow": "plain"}).json()["items"]) == 1


# -- oversized and malformed input -----------------------------------------------------
def test_oversized_bodies_are_413(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    limit = server.services.max_body_bytes
    big = b"x" * (limit + 1)
    with server.client() as c:
        for method, path in [
            ("POST", "/api/v1/workflows"),
            ("PUT", "/api/v1/secrets/default/BIG"),
            ("POST", "/api/v1/events"),
            ("POST", "/api/v1/auth/refresh"),
        ]:
            r = c.request(method, path, content=big, headers={"Content-Type": "application/json"})
            assert r.status_code == 413, (path, r.status_code)
            assert_error_shape(r)

        def chunks() -> Any:  # no Content-Length: counted while reading
            for _ in range(limit // 65536 + 2):
                yield b"y" * 65536

        r = c.post("/api/v1/workflows", content=chunks(), headers={"Content-Type": "text/yaml"})
        assert r.status_code == 413
        assert_error_shape(r)
    with server.anonymous() as anon:
        r = anon.post(
            "/api/v1/auth/token",
            content=big,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 413
        r = _post_hook(server, "plain", big, **{"X-Plait-Signature": sign(HOOK_KEY, big)})
        assert r.status_code == 413


MALFORMED_JSON = [
    b"{",
    b'{"source": ',
    b"[1, 2",
    b"\xff\xfe\x00garbage",
    b'{"inputs": NaN}',
    b"[" * 5000 + b"]" * 5000,
    b'{"inputs": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"}",
    b"null",
    b'"just a string"',
]

MALFORMED_YAML = [
    "name: [unclosed",
    "name: x\nsteps:\n  - id: a\n\trun: tab",
    "!!python/object/apply:os.system ['echo pwned']",
    "name: !!binary AAAA\nsteps: []",
    "a: &a [*a]",
    # billion laughs
    "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n"
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "name: bomb\nsteps: [{id: a, run: '${{ inputs }}'}]\n",
    "[" * 3000,
    "\x00\x01\x02",
    "name: x\nsteps: 7",
    "",
]


def test_malformed_bodies_are_4xx_in_the_error_shape(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    assert deploy(server, workflow("mal")).status_code == 201
    with server.client() as c:
        for raw in MALFORMED_JSON:
            for method, path in [
                ("POST", "/api/v1/workflows"),
                ("POST", "/api/v1/workflows/mal/runs"),
                ("POST", "/api/v1/events"),
                ("POST", "/api/v1/roles"),
                ("POST", "/api/v1/tokens"),
                ("PUT", "/api/v1/secrets/default/M"),
                ("PATCH", f"/api/v1/users/{ADMIN_USER}"),
            ]:
                r = c.request(
                    method, path, content=raw, headers={"Content-Type": "application/json"}
                )
                _no_5xx(r)
                if r.status_code >= 400 or (method == "POST" and "workflows" in path):
                    assert_error_shape(r)  # NaN or a lone surrogate may be valid elsewhere
        for text in MALFORMED_YAML:
            started = time.monotonic()
            r = c.post(
                "/api/v1/workflows",
                content=text.encode(),
                headers={"Content-Type": "application/yaml"},
            )
            assert_error_shape(r)
            assert time.monotonic() - started < 10, "a YAML bomb took too long"
            r = c.post("/api/v1/workflows", json={"source": text})
            assert_error_shape(r)
        r = c.post("/api/v1/workflows", content=b"name: x", headers={"Content-Type": "image/png"})
        assert_error_shape(r)
    with server.anonymous() as anon:
        r = anon.post("/api/v1/auth/token", content=b"%%%", headers={"Content-Type": "text/plain"})
        assert_error_shape(r)
        r = anon.post("/api/v1/auth/token", data={"username": "x"})
        assert_error_shape(r)


def test_a_lone_surrogate_in_inputs_is_a_4xx(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    assert deploy(server, workflow("sur")).status_code == 201
    raw = b'{"inputs": {"who": "\\ud800"}}'
    with server.client() as c:
        r = c.post(
            "/api/v1/workflows/sur/runs", content=raw, headers={"Content-Type": "application/json"}
        )
        _no_5xx(r)
        listing = c.get("/api/v1/runs", params={"workflow": "sur"})
        _no_5xx(listing)


def test_huge_integers_are_a_4xx(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    big = 2**70
    assert deploy(server, workflow("big")).status_code == 201
    run_id = start(server, "big")
    for method, path, body in [
        ("DELETE", f"/api/v1/tokens/{big}", None),
        ("DELETE", f"/api/v1/roles/{big}", None),
        ("GET", f"/api/v1/workflows/big/versions/{big}", None),
        ("GET", f"/api/v1/workflows/big/diff?from={big}&to=1", None),
        ("POST", "/api/v1/workflows/big/rollback", {"version": big}),
        ("GET", f"/api/v1/runs/{run_id}/logs?after={big}", None),
    ]:
        with server.client() as c:  # a 500 closes the connection
            _no_5xx(c.request(method, path, json=body))
