"""The status poll's fast path answers exactly what the FastAPI route answers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from plait.server import fastpath

from .conftest import LiveServer
from .test_runs import ENDED, HELLO, deploy, start, wait_for


@pytest.fixture
def fast_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the fast path answered itself (the server runs in this process)."""
    answered: list[str] = []
    original = fastpath.FastRunReads._answer

    async def counting(self: Any, scope: Any, send: Any, run_id: str) -> bool:
        done = await original(self, scope, send, run_id)
        if done:
            answered.append(scope["path"])
        return done

    monkeypatch.setattr(fastpath.FastRunReads, "_answer", counting)
    return answered


def test_the_fast_answer_is_the_routes_answer(
    sqlite_server: LiveServer, fast_answers: list[str]
) -> None:
    server = sqlite_server
    deploy(server, HELLO)
    with server.client() as c:
        run_id = start(c, "hello", {"who": "fast", "token": "s3cr3t-value"}).json()["id"]
        wait_for(c, run_id, ENDED)
        # The polling above was answered fast too; the server notes an answer just
        # after sending it, so let the last note land before starting afresh.
        time.sleep(0.3)
        fast_answers.clear()
        fast = c.get(f"/api/v1/runs/{run_id}")
        slow = c.get(f"/api/v1/runs/{run_id}", params={"via": "route"})  # a query: the route
    time.sleep(0.3)
    assert fast_answers == [f"/api/v1/runs/{run_id}"]
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    assert "s3cr3t-value" not in fast.text
    same = ("content-type", "content-length", "x-content-type-options", "cache-control")
    for header in same:
        assert fast.headers.get(header) == slow.headers.get(header), header
    assert fast.headers["x-request-id"]


def test_anything_unusual_goes_to_the_route(
    sqlite_server: LiveServer, fast_answers: list[str]
) -> None:
    from plait.server.bootstrap import create_user

    server = sqlite_server
    deploy(server, HELLO)
    create_user(server.services, "olga", "operator-password-123", role="operator", namespace="b")
    olga = server.login("olga", "operator-password-123")
    with server.client() as c:
        run_id = start(c, "hello", {"who": "x"}).json()["id"]
        missing = c.get("/api/v1/runs/no-such-run")
    with server.client(olga) as o:
        o.get("/api/v1/runs")
        hidden = o.get(f"/api/v1/runs/{run_id}")  # another namespace: 404, not 403
    with server.anonymous() as anon:
        anonymous = anon.get(f"/api/v1/runs/{run_id}")
        forged = anon.get(f"/api/v1/runs/{run_id}", headers={"Authorization": "Bearer not-a-token"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"]
    assert hidden.status_code == 404
    assert anonymous.status_code == 401
    assert forged.status_code == 401
    assert fast_answers == []


def test_fast_answers_are_counted_under_the_route_template(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    deploy(server, HELLO)
    with server.client() as c:
        run_id = start(c, "hello", {"who": "m"}).json()["id"]
        wait_for(c, run_id, ENDED)
        for _ in range(3):
            assert c.get(f"/api/v1/runs/{run_id}").status_code == 200
        metrics = c.get("/metrics").text
    assert run_id not in metrics
    assert 'route="/api/v1/runs/{run_id}"' in metrics
