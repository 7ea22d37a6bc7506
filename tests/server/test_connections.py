"""Connections over real HTTP: CRUD, validation, permissions per role, credentials never
in a response or the audit log, the test operation, and a run that uses one."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from plait.actions.connections import ConnectionConfig, ConnectionType
from plait.server.bootstrap import create_user

from .conftest import LiveServer
from .test_runs import deploy, wait_for

KEY = "k3y-0f-the-greeter-4711-zz"  # the example plugin's signing key (a credential)
PASSWORD = "pw-that-must-never-leak-0451"


class ProbeSqliteConfig(ConnectionConfig):
    path: str
    password: SecretStr | None = None


class ProbeSqlite(ConnectionType):
    """A real check: opens the SQLite file read-only and asks its version."""

    name = "probe-sqlite"
    description = "A SQLite file (test type)."
    Config = ProbeSqliteConfig

    async def test(self, config: ProbeSqliteConfig) -> str:
        with sqlite3.connect(f"file:{config.path}?mode=ro", uri=True) as db:
            (version,) = db.execute("SELECT sqlite_version()").fetchone()
        return f"SQLite {version} answered"


class LeakyConfig(ConnectionConfig):
    password: SecretStr


class Leaky(ConnectionType):
    """A driver whose error message quotes the password it was given."""

    name = "probe-leaky"
    Config = LeakyConfig

    async def test(self, config: LeakyConfig) -> str:
        raise ConnectionRefusedError(f"login refused for {config.password.get_secret_value()}")


class SlowConfig(ConnectionConfig):
    blocking: bool = False


class Slow(ConnectionType):
    """Never answers in time; ``blocking`` stalls its thread like a synchronous driver."""

    name = "probe-slow"
    Config = SlowConfig

    async def test(self, config: SlowConfig) -> str:
        if config.blocking:
            time.sleep(2)  # noqa: ASYNC251 - a synchronous driver, on purpose
        else:
            await asyncio.sleep(30)
        return "too late"


def _register(server: LiveServer) -> None:
    types = server.services.extras["connection_types"]
    for cls in (ProbeSqlite, Leaky, Slow):
        types.register(cls)


def _greeter(c: httpx.Client, ns: str = "ops", name: str = "greeter", **config: Any) -> Any:
    body = {"type": "example", "config": {"greeting": "Hi", "signing_key": KEY, **config}}
    return c.put(f"/api/v1/connections/{ns}/{name}", json=body)


def test_crud_never_shows_a_credential(server: LiveServer) -> None:
    store = server.services.server_store
    with server.client() as c:
        created = _greeter(c)
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["type"] == "example"
        assert body["config"] == {"greeting": "Hi"}
        assert body["secrets"] == {"signing_key": True}
        assert body["created_by"] == "admin"
        assert c.get("/api/v1/connections/ops/greeter").json() == body

        # A PUT that leaves the credential out keeps it; the public config is replaced.
        kept = c.put("/api/v1/connections/ops/greeter", json={"type": "example", "config": {}})
        assert kept.status_code == 200
        assert kept.json()["config"] == {"greeting": "Hello"}
        assert kept.json()["secrets"] == {"signing_key": True}
        assert store.unsealed_connection("ops", "greeter").secrets == {"signing_key": KEY}

        assert _greeter(c, "*", "shared", signing_key=None).status_code == 201
        listed = c.get("/api/v1/connections").json()
        assert [(i["namespace"], i["name"]) for i in listed["items"]] == [
            ("*", "shared"),
            ("ops", "greeter"),
        ]
        assert listed["items"][0]["secrets"] == {"signing_key": False}  # null cleared it
        only = c.get("/api/v1/connections", params={"namespace": "ops"}).json()
        assert [i["name"] for i in only["items"]] == ["greeter"]
        page = c.get("/api/v1/connections", params={"limit": 1}).json()
        rest = c.get(
            "/api/v1/connections", params={"limit": 1, "cursor": page["next_cursor"]}
        ).json()
        assert [i["name"] for i in page["items"] + rest["items"]] == ["shared", "greeter"]
        assert rest["next_cursor"] is None

        texts = [created.text, kept.text, c.get("/api/v1/connections").text]
        assert all(KEY not in t for t in texts)

        assert c.delete("/api/v1/connections/ops/greeter").status_code == 204
        assert c.get("/api/v1/connections/ops/greeter").status_code == 404
        gone = c.delete("/api/v1/connections/ops/greeter")
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "not_found"


def test_a_changed_type_does_not_inherit_credentials(sqlite_server: LiveServer) -> None:
    _register(sqlite_server)
    with sqlite_server.client() as c:
        body = {"type": "probe-leaky", "config": {"password": PASSWORD}}
        assert c.put("/api/v1/connections/ops/db", json=body).status_code == 201
        r = c.put(
            "/api/v1/connections/ops/db", json={"type": "probe-sqlite", "config": {"path": "x"}}
        )
        assert r.status_code == 200
        assert r.json()["secrets"] == {"password": False}
        assert sqlite_server.services.server_store.unsealed_connection("ops", "db").secrets == {}


def test_bad_bodies_are_422_naming_the_field(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        url = "/api/v1/connections/ops/greeter"
        unknown = c.put(url, json={"type": "nope", "config": {}})
        assert unknown.status_code == 422
        assert "unknown connection type 'nope'" in unknown.json()["error"]["message"]
        assert "example" in unknown.json()["error"]["message"]  # the known ones are listed

        bad = c.put(url, json={"type": "example", "config": {"greeting": "", "colour": "red"}})
        assert bad.status_code == 422
        error = bad.json()["error"]
        assert error["code"] == "invalid"
        locs = {tuple(d["loc"]) for d in error["details"]}
        assert locs == {("config", "greeting"), ("config", "colour")}
        assert "greeting" in error["message"]
        assert "colour" in error["message"]

        leaked = c.put(url, json={"type": "example", "config": {"signing_key": 12345678901}})
        assert leaked.status_code == 422
        assert "12345678901" not in leaked.text  # a refused credential is not echoed

        assert c.put(url, json={"config": {}}).status_code == 422  # no type
        assert c.put(url, json={"type": "example", "extra": 1}).status_code == 422
        nul = c.put(url, json={"type": "example", "config": {"greeting": "a\x00b"}})
        assert nul.status_code == 422
        assert c.put("/api/v1/connections/Bad NS/x", json={"type": "example"}).status_code == 422
        assert c.put("/api/v1/connections/ops/-x", json={"type": "example"}).status_code == 422
        assert c.get("/api/v1/connections", params={"namespace": "Bad NS"}).status_code == 422
        assert c.get("/api/v1/connections", params={"cursor": "%%%"}).status_code == 400
        assert c.post("/api/v1/connections/ops/missing/test").status_code == 404


def test_permissions_per_role(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    services = server.services
    with server.client() as c:
        assert _greeter(c).status_code == 201
        assert _greeter(c, "dev").status_code == 201
        assert _greeter(c, "*", "shared").status_code == 201
    create_user(services, "vera", "a-long-viewer-password", role="viewer")
    create_user(services, "otto", "a-long-operator-password", role="operator")
    create_user(services, "eddie", "a-long-editor-password", role="editor", namespace="ops")
    viewer = server.login("vera", "a-long-viewer-password")
    operator = server.login("otto", "a-long-operator-password")
    editor = server.login("eddie", "a-long-editor-password")
    with server.client(viewer) as c:
        assert c.get("/api/v1/connections/ops/greeter").status_code == 200
        assert len(c.get("/api/v1/connections").json()["items"]) == 3
        assert c.get("/api/v1/connection-types").status_code == 200
        refused = _greeter(c, "ops", "new")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        assert c.put("/api/v1/connections/ops/greeter", json={}).status_code == 403  # 403 first
        assert c.delete("/api/v1/connections/ops/greeter").status_code == 403
        assert c.post("/api/v1/connections/ops/greeter/test").status_code == 403
    with server.client(operator) as c:
        tested = c.post("/api/v1/connections/ops/greeter/test")
        assert tested.status_code == 200
        assert tested.json()["ok"] is True
        assert _greeter(c, "ops", "new").status_code == 403
    with server.client(editor) as c:
        assert _greeter(c, "ops", "mine").status_code == 201
        assert _greeter(c, "dev", "mine").status_code == 403
        assert _greeter(c, "*", "mine").status_code == 403
        assert c.get("/api/v1/connections/dev/greeter").status_code == 403
        names = [(i["namespace"], i["name"]) for i in c.get("/api/v1/connections").json()["items"]]
        assert names == [("ops", "greeter"), ("ops", "mine")]  # only its namespace
        assert c.get("/api/v1/connections", params={"namespace": "dev"}).status_code == 403
        assert c.delete("/api/v1/connections/ops/mine").status_code == 204
    with server.anonymous() as c:
        assert c.get("/api/v1/connections").status_code == 401
        assert c.get("/api/v1/connection-types").status_code == 401


def test_the_test_operation(sqlite_server: LiveServer, tmp_path: Path) -> None:
    server = sqlite_server
    _register(server)
    db = tmp_path / "warehouse.db"
    sqlite3.connect(db).close()
    with server.client() as c:

        def put(name: str, type_name: str, **config: Any) -> None:
            r = c.put(f"/api/v1/connections/ops/{name}", json={"type": type_name, "config": config})
            assert r.status_code == 201, r.text

        put("warehouse", "probe-sqlite", path=str(db), password=PASSWORD)
        put("missing", "probe-sqlite", path=str(tmp_path / "no" / "such.db"))
        put("leaky", "probe-leaky", password=PASSWORD)
        put("greeter", "example", signing_key="short-key-0451")

        ok = c.post("/api/v1/connections/ops/warehouse/test").json()
        assert ok == {"ok": True, "message": f"SQLite {sqlite3.sqlite_version} answered"}
        failed = c.post("/api/v1/connections/ops/missing/test").json()
        assert failed["ok"] is False
        assert "unable to open database file" in failed["message"]
        masked = c.post("/api/v1/connections/ops/leaky/test").json()
        assert masked == {"ok": False, "message": "login refused for ***"}
        plugin = c.post("/api/v1/connections/ops/greeter/test").json()
        assert plugin == {
            "ok": False,
            "message": "the signing key is shorter than 16 characters",
        }
    audit = _audit(server)
    tests = [e for e in audit if e["action"] == "connections.test"]
    assert [(e["resource"], e["outcome"]) for e in tests] == [
        ("connections/ops/greeter", "failed"),
        ("connections/ops/leaky", "failed"),
        ("connections/ops/missing", "failed"),
        ("connections/ops/warehouse", "success"),
    ]
    puts = [e for e in audit if e["action"] == "PUT /api/v1/connections/{namespace}/{name}"]
    assert len(puts) == 4
    assert PASSWORD not in str(audit)


def test_a_test_is_bounded_by_its_timeout(sqlite_server: LiveServer) -> None:
    server = sqlite_server
    _register(server)
    server.services.extras["connection_test_timeout"] = 0.5
    with server.client() as c:
        for name, blocking in (("slow", False), ("stuck", True)):
            body = {"type": "probe-slow", "config": {"blocking": blocking}}
            assert c.put(f"/api/v1/connections/ops/{name}", json=body).status_code == 201
        started = time.monotonic()
        r = c.post("/api/v1/connections/ops/slow/test")
        assert r.json() == {"ok": False, "message": "no answer within 0.5s"}
        # A type that blocks its thread (a synchronous driver) neither outlasts the
        # timeout nor stalls the server's event loop while it hangs.
        assert c.post("/api/v1/connections/ops/stuck/test").json()["ok"] is False
        assert c.get("/health").status_code == 200
        assert time.monotonic() - started < 5


def test_connection_types_describe_their_config(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        listed = c.get("/api/v1/connection-types").json()
    types = {t["name"]: t for t in listed["items"]}
    example = types["example"]
    assert example["secret_fields"] == ["signing_key"]
    assert set(example["schema"]["properties"]) == {"greeting", "signing_key"}
    assert example["description"].startswith("The example plugin's greeter")
    assert {"http", "smtp"} <= set(types)
    for name, why in listed["unavailable"].items():  # built-ins still being written
        assert name not in types
        assert why


def test_sealed_at_rest(sqlite_server: LiveServer, tmp_path: Path) -> None:
    with sqlite_server.client() as c:
        assert _greeter(c).status_code == 201
    files = list((tmp_path / "home").glob("plait.db*"))
    assert files
    for path in files:
        assert KEY.encode() not in path.read_bytes()


GREET = """\
name: greet-with-connection
namespace: ops
steps:
  - id: greet
    uses: example.greet
    with: {name: Ada, connection: greeter}
  - id: echo
    needs: [greet]
    run: echo "key was {key}"
"""


def test_a_run_uses_the_stored_connection(sqlite_server: LiveServer) -> None:
    """The server's workers resolve a step's connection from the store (its namespace
    first, then `*`), and its credential is masked in the run's logs."""
    server = sqlite_server
    with server.client() as c:
        assert _greeter(c, "*", "greeter", greeting="Howdy").status_code == 201
        assert _greeter(c, "ops", "greeter").status_code == 201  # shadows the global one
        deploy(server, GREET.replace("{key}", KEY))
        started = c.post("/api/v1/workflows/greet-with-connection/runs", json={"inputs": {}})
        assert started.status_code in (200, 201, 202), started.text
        run = wait_for(c, started.json()["id"], ("succeeded", "failed"))
        assert run["status"] == "succeeded", run
        outputs = next(s for s in run["steps"] if s["id"] == "greet")["outputs"]
        logs = c.get(f"/api/v1/runs/{run['id']}/logs").json()
    expected = hmac.new(KEY.encode(), b"Hi, Ada!", hashlib.sha256).hexdigest()
    assert outputs == {"greeting": "Hi, Ada!", "length": 8, "signature": expected}
    text = "\n".join(line["line"] for line in logs["items"])
    assert "Hi, Ada!" in text
    assert "key was ***" in text
    assert KEY not in text


def _audit(server: LiveServer) -> list[dict[str, Any]]:
    with server.client() as c:
        r = c.get("/api/v1/audit", params={"limit": 500})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return sorted(items, key=lambda e: (str(e["action"]), str(e["resource"])))
