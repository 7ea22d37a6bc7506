"""Published events over real HTTP: stored in the outbox for event triggers."""

from __future__ import annotations

from plait.server.bootstrap import create_user

from .conftest import LiveServer


def test_a_published_event_is_stored(server: LiveServer) -> None:
    body = {"type": "deploy.finished", "source": "ci", "payload": {"sha": "abc123"}}
    with server.client() as c:
        r = c.post("/api/v1/events", json=body)
    assert r.status_code == 202, r.text
    event_id = r.json()["id"]
    [stored] = server.services.store.read_events(after_id=event_id - 1, limit=1)
    assert stored.id == event_id
    assert not stored.event.run_id  # published: no run
    assert stored.event.type == "deploy.finished"
    assert stored.event.data == {"source": "ci", "payload": {"sha": "abc123"}, "actor": "admin"}


def test_bad_events_and_permissions(sqlite_server: LiveServer) -> None:
    create_user(sqlite_server.services, "vi", "a-long-viewer-password", role="viewer")
    viewer = sqlite_server.login("vi", "a-long-viewer-password")
    with sqlite_server.client() as c:
        assert c.post("/api/v1/events", json={"type": "has space"}).status_code == 422
        assert c.post("/api/v1/events", json={"type": "run.succeeded"}).status_code == 422
        assert c.post("/api/v1/events", json={}).status_code == 422
        assert c.post("/api/v1/events", json={"type": "ping"}).status_code == 202
    with sqlite_server.client(viewer) as c:
        assert c.post("/api/v1/events", json={"type": "ping"}).status_code == 403
    with sqlite_server.anonymous() as c:
        assert c.post("/api/v1/events", json={"type": "ping"}).status_code == 401
