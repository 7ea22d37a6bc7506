"""Runs over real HTTP: start, detail, masking, idempotency, bad inputs, listing and
permissions — on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx

from plait.model import load_workflow

from .conftest import LiveServer

HELLO = """\
name: hello
namespace: team-a
inputs:
  who: {type: string, required: true}
  count: {type: integer, default: 1}
  token: {type: string, secret: true, default: none-given}
steps:
  - id: greet
    run: |
      echo "hello ${{ inputs.who }} with ${{ inputs.token }}"
      echo "greeting=hi ${{ inputs.who }} ${{ inputs.token }}" >> "$PLAIT_OUTPUT"
  - id: twice
    run: echo "count ${{ inputs.count }}"
outputs:
  greeting: "${{ steps.greet.outputs.greeting }}"
"""


def deploy(server: LiveServer, source: str, author: str = "admin") -> None:
    """Deploy through the API, or straight into the server store while the workflows
    route does not exist yet."""
    with server.client() as c:
        r = c.post(
            "/api/v1/workflows",
            content=source.encode(),
            headers={"Content-Type": "application/yaml"},
        )
    if r.status_code in (404, 405):
        services = server.services
        plan = load_workflow(source, "test.yaml", services.registry.input_models()).plan
        checksum = hashlib.sha256(source.encode()).hexdigest()
        services.server_store.deploy(plan.namespace, plan.name, source, checksum, author)
        return
    assert r.status_code in (200, 201), r.text


def start(
    c: httpx.Client, name: str, inputs: dict[str, Any] | None = None, **kw: Any
) -> httpx.Response:
    return c.post(f"/api/v1/workflows/{name}/runs", json={"inputs": inputs or {}}, **kw)


def wait_for(
    c: httpx.Client, run_id: str, statuses: tuple[str, ...], timeout: float = 30
) -> dict[str, Any]:
    """Poll the run until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"/api/v1/runs/{run_id}")
        assert r.status_code == 200, r.text
        run: dict[str, Any] = r.json()
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, f"run still {run['status']}: {run}"
        time.sleep(0.05)


ENDED = ("succeeded", "failed", "cancelled", "timed_out")


def step_of(run: dict[str, Any], key: str) -> dict[str, Any]:
    return next(s for s in run["steps"] if s["id"] == key)


def test_start_runs_to_the_end_and_shows_every_detail(server: LiveServer) -> None:
    deploy(server, HELLO)
    with server.client() as c:
        r = start(c, "hello", {"who": "Ada", "count": 2, "token": "s3cr3t-value"})
        assert r.status_code == 201, r.text
        started = r.json()
        assert r.headers["location"].endswith(f"/api/v1/runs/{started['id']}")
        assert started["workflow"] == "hello"
        assert started["namespace"] == "team-a"
        assert started["version"] == 1
        assert started["trigger_type"] == "manual"
        run = wait_for(c, started["id"], ENDED)
        logs = c.get(f"/api/v1/runs/{run['id']}/logs").json()
    assert run["status"] == "succeeded", run
    assert run["success"] is True
    assert run["inputs"] == {"who": "Ada", "count": 2, "token": "***"}
    assert run["outputs"] == {"greeting": "hi Ada ***"}
    assert run["duration"] is not None
    assert run["started_at"]
    assert run["finished_at"]
    assert [s["id"] for s in run["steps"]] == ["greet", "twice"]
    greet = step_of(run, "greet")
    assert greet["status"] == "succeeded"
    assert greet["uses"] == "shell"
    assert greet["attempt"] == 1
    assert greet["outputs"]["greeting"] == "hi Ada ***"
    assert [a["status"] for a in greet["attempts"]] == ["succeeded"]
    assert greet["attempts"][0]["duration"] is not None
    text = "\n".join(line["line"] for line in logs["items"])
    assert "hello Ada with ***" in text
    assert "count 2" in text
    assert "s3cr3t-value" not in text
    assert logs["status"] == "succeeded"
    assert logs["more"] is False
    assert logs["next_after"] == logs["items"][-1]["id"]


def test_log_pages_read_on_after_an_id_and_by_step(server: LiveServer) -> None:
    deploy(server, HELLO)
    with server.client() as c:
        run_id = start(c, "hello", {"who": "Bo"}).json()["id"]
        wait_for(c, run_id, ENDED)
        everything = c.get(f"/api/v1/runs/{run_id}/logs").json()["items"]
        first = c.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 1}).json()
        rest = c.get(f"/api/v1/runs/{run_id}/logs", params={"after": first["next_after"]}).json()
        twice = c.get(f"/api/v1/runs/{run_id}/logs", params={"step": "twice"}).json()
    assert first["more"] is True
    assert [x["id"] for x in first["items"] + rest["items"]] == [x["id"] for x in everything]
    assert {x["step"] for x in twice["items"]} == {"twice"}


def test_bad_inputs_are_422_with_every_problem(server: LiveServer) -> None:
    deploy(server, HELLO)
    with server.client() as c:
        r = start(c, "hello", {"count": "three", "colour": "red"})
        missing = c.post("/api/v1/workflows/nope/runs", json={"inputs": {}})
        listed = c.get("/api/v1/runs").json()["items"]
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_inputs"
    text = " ".join(d["message"] for d in err["details"])
    assert "'who' is required" in text
    assert "'count': expected an integer" in text
    assert "'colour' is not an input" in text
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert listed == []  # nothing was started


def test_text_inputs_are_coerced_when_asked(server: LiveServer) -> None:
    deploy(server, HELLO)
    with server.client() as c:
        body = {"inputs": {"who": "Cy", "count": "3"}, "coerce": True}
        r = c.post("/api/v1/workflows/hello/runs", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["inputs"]["count"] == 3


def test_an_idempotency_key_returns_the_first_run(server: LiveServer) -> None:
    deploy(server, HELLO)
    with server.client() as c:
        key = {"Idempotency-Key": "deploy-2024-06-01"}
        first = start(c, "hello", {"who": "Di"}, headers=key)
        again = start(c, "hello", {"who": "Di"}, headers=key)
        other = start(c, "hello", {"who": "Di"}, headers={"Idempotency-Key": "another"})
        plain = start(c, "hello", {"who": "Di"})
        runs = c.get("/api/v1/runs", params={"workflow": "hello"}).json()["items"]
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    assert plain.status_code == 201
    assert len(runs) == 3


def test_a_key_of_a_refused_request_can_be_used_again(server: LiveServer) -> None:
    deploy(server, HELLO)
    with server.client() as c:
        key = {"Idempotency-Key": "k1"}
        bad = start(c, "hello", {}, headers=key)
        good = start(c, "hello", {"who": "Ed"}, headers=key)
    assert bad.status_code == 422
    assert good.status_code == 201


def test_unknown_run_and_bad_filters(server: LiveServer) -> None:
    with server.client() as c:
        assert c.get("/api/v1/runs/no-such-run").status_code == 404
        assert c.get("/api/v1/runs/no-such-run/logs").status_code == 404
        bad = c.get("/api/v1/runs", params={"status": "sleeping"})
        cursor = c.get("/api/v1/runs", params={"cursor": "!!not-a-cursor"})
    assert bad.status_code == 422
    assert "sleeping" in bad.json()["error"]["message"]
    assert cursor.status_code == 400


def test_without_a_token_401_and_a_viewer_cannot_start(server: LiveServer) -> None:
    from plait.server.bootstrap import create_user

    deploy(server, HELLO)
    create_user(server.services, "vera", "viewer-password-123", role="viewer")
    viewer = server.login("vera", "viewer-password-123")
    with server.client() as c:
        run_id = start(c, "hello", {"who": "Fa"}).json()["id"]
        wait_for(c, run_id, ENDED)
    with server.anonymous() as anon:
        assert anon.get("/api/v1/runs").status_code == 401
        assert start(anon, "hello", {"who": "x"}).status_code == 401
    with server.client(viewer) as v:
        refused = start(v, "hello", {"who": "x"})
        cancel = v.post(f"/api/v1/runs/{run_id}/cancel")
        retry = v.post(f"/api/v1/runs/{run_id}/retry")
        seen = v.get(f"/api/v1/runs/{run_id}")
        logs = v.get(f"/api/v1/runs/{run_id}/logs")
    assert refused.status_code == 403, refused.text
    assert "runs:start" in refused.json()["error"]["message"]
    assert cancel.status_code == 403
    assert retry.status_code == 403
    assert seen.status_code == 200
    assert logs.status_code == 200


def test_a_namespace_role_sees_only_its_namespace(server: LiveServer) -> None:
    from plait.server.bootstrap import create_user

    deploy(server, HELLO)
    deploy(server, HELLO.replace("name: hello", "name: other").replace("team-a", "team-b"))
    create_user(
        server.services, "olga", "operator-password-123", role="operator", namespace="team-b"
    )
    olga = server.login("olga", "operator-password-123")
    with server.client() as c:
        a = start(c, "hello", {"who": "A"}).json()["id"]
        b = start(c, "other", {"who": "B"}).json()["id"]
    with server.client(olga) as o:
        listed = [r["id"] for r in o.get("/api/v1/runs").json()["items"]]
        hidden = o.get(f"/api/v1/runs/{a}")
        own = o.get(f"/api/v1/runs/{b}")
        refused = start(o, "hello", {"who": "x"})
        allowed = start(o, "other", {"who": "y"})
        only_a = o.get("/api/v1/runs", params={"namespace": "team-a"}).json()["items"]
    assert a not in listed
    assert b in listed
    assert hidden.status_code == 404
    assert own.status_code == 200
    assert refused.status_code == 403
    assert allowed.status_code == 201
    assert only_a == []
