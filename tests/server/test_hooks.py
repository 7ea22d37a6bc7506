"""Webhooks over real HTTP: signatures, timestamps, deliveries, the body as trigger."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from plait.triggers.webhook import sign

from .conftest import LiveServer

KEY = "hook-key-for-tests"


def hooked(
    name: str = "on-push", *, secret: str = "${{ secrets.HOOK_KEY }}", timestamp: bool = False
) -> str:
    return (
        f"name: {name}\n"
        "inputs:\n  env: {type: string, default: staging}\n"
        "triggers:\n"
        f"  - webhook: {{secret: '{secret}', require_timestamp: {str(timestamp).lower()}}}\n"
        "steps:\n"
        "  - id: show\n    run: echo ref=${{ trigger.ref }}\n"
    )


def setup(server: LiveServer, source: str) -> None:
    with server.client() as c:
        assert c.put("/api/v1/secrets/default/HOOK_KEY", json={"value": KEY}).status_code == 204
        r = c.post("/api/v1/workflows", json={"source": source})
        assert r.status_code == 201, r.text


def post(server: LiveServer, name: str, body: bytes, **headers: str) -> httpx.Response:
    with server.anonymous() as c:
        return c.post(
            f"/api/v1/hooks/{name}",
            content=body,
            headers={"Content-Type": "application/json", **headers},
        )


def wait_done(server: LiveServer, run_id: str) -> Any:
    deadline = time.time() + 20
    while time.time() < deadline:
        run = server.services.store.load_run(run_id).run
        if run.status.terminal:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def test_a_signed_webhook_starts_a_run_with_the_body(server: LiveServer) -> None:
    setup(server, hooked())
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    r = post(server, "on-push", body, **{"X-Plait-Signature": sign(KEY, body)})
    assert r.status_code == 202, r.text
    run = wait_done(server, r.json()["run_id"])
    assert str(run.status) == "succeeded"
    assert run.trigger["type"] == "webhook"
    assert run.trigger["payload"] == {"ref": "refs/heads/main"}
    assert run.inputs == {"env": "staging"}
    lines = [line.line for line in server.services.store.read_logs(run.id)]
    assert any("ref=refs/heads/main" in line for line in lines)


def test_bad_and_missing_signatures(server: LiveServer) -> None:
    setup(server, hooked())
    body = b'{"ref": "x"}'
    wrong = post(server, "on-push", body, **{"X-Plait-Signature": sign("other", body)})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    assert post(server, "on-push", body).status_code == 401
    tampered = post(server, "on-push", b'{"ref": "y"}', **{"X-Plait-Signature": sign(KEY, body)})
    assert tampered.status_code == 401
    assert post(server, "on-push", body, **{"X-Plait-Signature": "md5=abc"}).status_code == 400


def test_unknown_workflow_and_no_webhook_trigger_look_the_same(sqlite_server: LiveServer) -> None:
    plain = "name: plain\nsteps:\n  - id: a\n    run: echo a\n"
    setup(sqlite_server, plain)
    body = b"{}"
    signature = {"X-Plait-Signature": sign(KEY, body)}
    missing = post(sqlite_server, "nope", body, **signature)
    untriggered = post(sqlite_server, "plain", body, **signature)
    assert missing.status_code == untriggered.status_code == 404
    assert missing.json()["error"]["message"] == untriggered.json()["error"]["message"]


def test_literal_secret_and_stale_timestamp(sqlite_server: LiveServer) -> None:
    setup(sqlite_server, hooked("stamped", secret="literal-key", timestamp=True))
    body = b'{"ref": "t"}'
    now = str(int(time.time()))
    ok = post(
        sqlite_server,
        "stamped",
        body,
        **{
            "X-Plait-Signature": sign("literal-key", body, now),
            "X-Plait-Timestamp": now,
        },
    )
    assert ok.status_code == 202, ok.text
    old = str(int(time.time()) - 3600)
    stale = post(
        sqlite_server,
        "stamped",
        body,
        **{
            "X-Plait-Signature": sign("literal-key", body, old),
            "X-Plait-Timestamp": old,
        },
    )
    assert stale.status_code == 401
    assert "old" in stale.json()["error"]["message"]
    unstamped = post(
        sqlite_server, "stamped", body, **{"X-Plait-Signature": sign("literal-key", body)}
    )
    assert unstamped.status_code == 401


def test_a_repeated_delivery_starts_one_run(server: LiveServer) -> None:
    setup(server, hooked())
    body = b'{"ref": "d"}'
    headers = {"X-Plait-Signature": sign(KEY, body), "X-Plait-Delivery": "delivery-1"}
    first = post(server, "on-push", body, **headers)
    second = post(server, "on-push", body, **headers)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"run_id": first.json()["run_id"], "duplicate": True}
    other = post(server, "on-push", body, **{**headers, "X-Plait-Delivery": "delivery-2"})
    assert other.status_code == 202
    assert other.json()["run_id"] != first.json()["run_id"]
    bad = post(server, "on-push", body, **{**headers, "X-Plait-Delivery": "has space"})
    assert bad.status_code == 400
