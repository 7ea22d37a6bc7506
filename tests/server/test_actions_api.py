"""The action catalogue over real HTTP: what the editor's palette and step forms are
built from — built-ins and installed plugins, with their JSON Schemas."""

from __future__ import annotations

from plait.server.bootstrap import create_user

from .conftest import LiveServer

KEYS = {"name", "version", "description", "source", "input_schema", "output_schema"}


def test_the_list_has_builtins_and_plugins_with_schemas(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        r = c.get("/api/v1/actions")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"items"}
    items = {a["name"]: a for a in body["items"]}
    assert [a["name"] for a in body["items"]] == sorted(items)
    assert all(set(a) == KEYS for a in body["items"])
    assert {"shell", "http", "sleep", "approval", "example.greet"} <= set(items)

    shell = items["shell"]
    assert shell["source"] == "builtin"
    assert "command" in shell["input_schema"]["properties"]

    greet = items["example.greet"]  # from the example plugin package's entry point
    assert greet["source"] == "plait-example 0.1.0"
    assert greet["version"] == "1.0"
    assert greet["input_schema"]["required"] == ["name"]
    assert set(greet["input_schema"]["properties"]) == {
        "name",
        "greeting",
        "punctuation",
        "connection",
    }
    assert set(greet["output_schema"]["properties"]) == {"greeting", "length", "signature"}


def test_one_action_and_an_unknown_one(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        listed = {a["name"]: a for a in c.get("/api/v1/actions").json()["items"]}
        one = c.get("/api/v1/actions/example.greet")
        missing = c.get("/api/v1/actions/no.such.action")
    assert one.status_code == 200
    assert one.json() == listed["example.greet"]
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert "no.such.action" in missing.json()["error"]["message"]


def test_any_reader_may_list_but_not_strangers(sqlite_server: LiveServer) -> None:
    services = sqlite_server.services
    create_user(services, "vera", "a-long-viewer-password", role="viewer", namespace="ops")
    create_user(services, "nora", "a-long-nobody-password")
    viewer = sqlite_server.login("vera", "a-long-viewer-password")
    nobody = sqlite_server.login("nora", "a-long-nobody-password")
    with sqlite_server.client(viewer) as c:
        assert c.get("/api/v1/actions").status_code == 200
        assert c.get("/api/v1/actions/shell").status_code == 200
    with sqlite_server.client(nobody) as c:
        refused = c.get("/api/v1/actions")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
    with sqlite_server.anonymous() as c:
        assert c.get("/api/v1/actions").status_code == 401


def test_every_route_is_described_in_openapi(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        spec = c.get("/api/v1/openapi.json").json()
    ours = {
        path: item
        for path, item in spec["paths"].items()
        if path.startswith(("/api/v1/actions", "/api/v1/connection"))
    }
    assert len(ours) == 6
    for path, item in ours.items():
        for method, op in item.items():
            assert op.get("summary"), (method, path)
            assert op.get("description"), (method, path)
    schema = spec["components"]["schemas"]["ConnectionTypeOut"]
    assert "schema" in schema["properties"]
