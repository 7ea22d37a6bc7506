"""Stored connections on real databases: sealed at rest, looked up in the run's
namespace then the global one, and re-sealed by a key rotation."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from plait.actions.connections import ChainedConnections, EnvConnections, UnknownConnection
from plait.errors import NotFound, StoreError
from plait.security.crypto import Keyring
from plait.store.migrate import open_store
from plait.store.rekey import key_usage, reseal
from plait.store.server import ServerStore
from plait.store.server_connections import StoreConnections

PASSWORD = "hunter2-but-longer-0451"


def _put(store: ServerStore, namespace: str, name: str, user: str, password: str) -> bool:
    return store.put_connection(
        namespace, name, "postgres", {"host": "db", "user": user}, {"password": password}, "t"
    )


def test_lookup_prefers_the_namespace_then_the_global_one(url: str, keyring: Keyring) -> None:
    sql = open_store(url, keyring)
    try:
        store = ServerStore(sql)
        assert _put(store, "*", "warehouse", "global", "pw-global-000") is True
        assert _put(store, "ops", "warehouse", "ops", PASSWORD) is True
        assert _put(store, "ops", "warehouse", "ops", PASSWORD) is False  # replaced
        source = StoreConnections(store)

        own = source.get("ops", "warehouse")
        assert (own.name, own.type) == ("warehouse", "postgres")
        assert dict(own.config) == {"host": "db", "user": "ops", "password": PASSWORD}
        assert own.secrets == (PASSWORD,)  # what the runtime masks
        shared = source.get("dev", "warehouse")
        assert shared.config["user"] == "global"
        with pytest.raises(UnknownConnection, match="no connection named 'nope'"):
            source.get("ops", "nope")

        env = EnvConnections(environ={"PLAIT_CONNECTION_NOPE": '{"type": "example"}'})
        chained = ChainedConnections(source, env)
        assert chained.get("ops", "nope").type == "example"
        assert chained.get("ops", "warehouse").config["user"] == "ops"  # the store first

        record = store.get_connection("ops", "warehouse")
        assert record.secret_fields == ("password",)
        assert dict(record.config) == {"host": "db", "user": "ops"}
        store.delete_connection("ops", "warehouse")
        assert source.get("ops", "warehouse").config["user"] == "global"
        with pytest.raises(NotFound):
            store.delete_connection("ops", "warehouse")
    finally:
        sql.close()


def test_credentials_are_sealed_at_rest(url: str, keyring: Keyring) -> None:
    sql = open_store(url, keyring)
    try:
        _put(ServerStore(sql), "ops", "warehouse", "ops", PASSWORD)
        with sql.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM connections")).mappings().one()
        assert PASSWORD not in str(dict(row))
        assert keyring.key_id_of(bytes(row["sealed_secrets"])) == keyring.current_key_id
    finally:
        sql.close()


def test_listing_pages_and_filters(url: str, keyring: Keyring) -> None:
    sql = open_store(url, keyring)
    try:
        store = ServerStore(sql)
        for ns, name in (("ops", "b"), ("*", "a"), ("ops", "a"), ("dev", "c")):
            _put(store, ns, name, "u", PASSWORD)
        seen, cursor = [], None
        while True:
            page = store.list_connections(cursor=cursor, limit=3)
            seen += [(r.namespace, r.name) for r in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [("*", "a"), ("dev", "c"), ("ops", "a"), ("ops", "b")]
        only = store.list_connections(namespaces={"ops"}).items
        assert [(r.namespace, r.name) for r in only] == [("ops", "a"), ("ops", "b")]
        assert store.list_connections(namespaces=set()).items == []
        assert [r.name for r in store.list_connections("dev").items] == ["c"]
    finally:
        sql.close()


def test_rotate_key_reseals_connection_credentials(url: str, keyring: Keyring) -> None:
    sql = open_store(url, keyring)
    try:
        store = ServerStore(sql)
        for i in range(5):
            _put(store, "ops", f"c{i}", "u", f"{PASSWORD}-{i}")
        new_id = keyring.rotate()
        report = reseal(sql, keyring, batch=2)
        assert report.columns["connections.sealed_secrets"].resealed == 5
        assert key_usage(sql, keyring)["connections.sealed_secrets"] == {new_id: 5}
        assert StoreConnections(store).get("ops", "c3").config["password"] == f"{PASSWORD}-3"
    finally:
        sql.close()
    assert keyring.path is not None
    reopened = open_store(url, Keyring.from_file(keyring.path))
    try:
        found = StoreConnections(ServerStore(reopened)).get("ops", "c4")
        assert found.config["password"] == f"{PASSWORD}-4"
    finally:
        reopened.close()


def test_a_store_without_a_key_keeps_only_credential_free_connections(url: str) -> None:
    sql = open_store(url)
    try:
        store = ServerStore(sql)
        store.put_connection("ops", "open", "http", {"base_url": "http://x"}, {}, None)
        assert StoreConnections(store).get("ops", "open").secrets == ()
        with pytest.raises(StoreError, match="no sealer"):
            _put(store, "ops", "closed", "u", PASSWORD)
    finally:
        sql.close()
