"""ServerStore on SQLite and PostgreSQL: deployments, versions, labels, idempotency,
schedules and fires, secrets sealed at rest, published events."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plait.errors import ConflictError, NotFound, StoreError
from plait.security.crypto import Keyring
from plait.store.base import VersionRecord
from plait.store.migrate import open_store
from plait.store.server import ServerStore
from plait.store.sql import SqlStore
from plait.triggers.schedule import fire_key
from tests.pg import fresh_database


def _postgres() -> Iterator[str]:
    with fresh_database("plait_ss") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        store = open_store(f"sqlite:///{tmp_path / 'plait.db'}", Keyring.generate())
        yield store
        store.close()
        return
    for url in _postgres():
        store = open_store(url, Keyring.generate())
        try:
            yield store
        finally:
            store.close()


@pytest.fixture
def server(sql_store: SqlStore) -> ServerStore:
    return ServerStore(sql_store)


def _sum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def deploy(
    store: ServerStore,
    name: str,
    text: str,
    namespace: str = "default",
    *,
    description: str = "",
    labels: dict[str, str] | None = None,
    schedules: list[dict[str, Any]] | None = None,
) -> tuple[VersionRecord, bool]:
    return store.deploy(
        namespace,
        name,
        text,
        _sum(text),
        "ann",
        description=description,
        labels=labels,
        schedules=schedules,
    )


# -- deployments -----------------------------------------------------------------------
def test_unchanged_text_makes_no_new_version(server: ServerStore) -> None:
    v1, created = deploy(server, "build", "a: 1")
    again, created_again = deploy(server, "build", "a: 1")
    v2, created2 = deploy(server, "build", "a: 2")
    assert (v1.version, created, again.version, created_again, v2.version, created2) == (
        1,
        True,
        1,
        False,
        2,
        True,
    )
    assert again.id == v1.id
    assert server.get_workflow("build").version == 2
    assert [v.version for v in server.versions("build")] == [2, 1]
    assert server.version("build", 1).source == "a: 1"
    with pytest.raises(NotFound):
        server.version("build", 9)


def test_redeploying_old_text_makes_a_new_version(server: ServerStore) -> None:
    deploy(server, "build", "a: 1")
    deploy(server, "build", "a: 2")
    v3, created = deploy(server, "build", "a: 1")
    assert (v3.version, created) == (3, True)


def test_save_version_does_not_move_the_current_version(server: ServerStore) -> None:
    v1, _ = deploy(server, "build", "a: 1")
    local = server._sql.save_version("default", "build", "a: local", "local", "cli")
    assert local.version == 2
    assert server.get_workflow("build").version_id == v1.id
    # deploying that very text reuses the version the run saved
    v, created = server.deploy("default", "build", "a: local", "local", "ann")
    assert (v.id, created) == (local.id, True)


def test_rollback_makes_an_older_version_current(server: ServerStore) -> None:
    deploy(server, "build", "a: 1", labels={"stage": "dev"}, description="one")
    deploy(server, "build", "a: 2", labels={"stage": "prod"}, description="two")
    back = server.rollback("build", 1, description="one", labels={"stage": "dev"})
    wf = server.get_workflow("build")
    assert (back.version, wf.version, wf.description, dict(wf.labels)) == (
        1,
        1,
        "one",
        {"stage": "dev"},
    )
    assert len(server.versions("build")) == 2
    with pytest.raises(NotFound):
        server.rollback("build", 7)
    with pytest.raises(NotFound):
        server.rollback("nope", 1)


def test_names_are_unique_across_namespaces(server: ServerStore) -> None:
    deploy(server, "build", "a: 1", namespace="ci")
    with pytest.raises(ConflictError, match="namespace 'ci'"):
        deploy(server, "build", "a: 1", namespace="ops")
    assert server.get_workflow("build").namespace == "ci"


def test_list_filters_labels_search_and_pages(server: ServerStore) -> None:
    for i in range(12):
        stage = "production" if i % 3 == 0 else "staging"
        deploy(
            server,
            f"wf-{i:02d}",
            f"n: {i}",
            namespace="ops" if i < 6 else "dev",
            labels={"stage": stage, "service": f"svc{i % 2}"},
            description=f"Job {i}",
        )
    page = server.list_workflows(limit=5)
    names = [w.name for w in page.items]
    while page.next_cursor:
        page = server.list_workflows(limit=5, cursor=page.next_cursor)
        names += [w.name for w in page.items]
    assert names == [f"wf-{i:02d}" for i in range(12)]
    prod = server.list_workflows(labels={"stage": "production"}).items
    assert [w.name for w in prod] == ["wf-00", "wf-03", "wf-06", "wf-09"]
    both = server.list_workflows(labels={"stage": "production", "service": "svc1"}).items
    assert [w.name for w in both] == ["wf-03", "wf-09"]
    assert [w.name for w in server.list_workflows(namespace="dev", limit=2).items] == [
        "wf-06",
        "wf-07",
    ]
    assert [w.name for w in server.list_workflows(search="JOB 1").items] == [
        "wf-01",
        "wf-10",
        "wf-11",
    ]
    assert server.list_workflows(namespaces=set()).items == []
    assert len(server.list_workflows(namespaces={"ops"}).items) == 6
    assert server.namespaces() == ["dev", "ops"]
    with pytest.raises(StoreError):
        server.list_workflows(cursor="!!!")


# -- idempotency -----------------------------------------------------------------------
def test_first_idempotency_key_wins(server: ServerStore) -> None:
    assert server.remember_idempotency("user:build", "k1", "run-a") is None
    assert server.remember_idempotency("user:build", "k1", "run-b") == "run-a"
    assert server.remember_idempotency("other", "k1", "run-c") is None
    server.forget_idempotency("user:build", "k1")
    assert server.remember_idempotency("user:build", "k1", "run-d") is None
    assert server.seen_delivery("build/d1") is False
    assert server.seen_delivery("build/d1") is True


# -- schedules -------------------------------------------------------------------------
CRON = {"kind": "schedule", "cron": "0 2 * * *", "timezone": "Europe/Berlin"}


def test_sync_keeps_last_fire_when_the_cron_is_unchanged(server: ServerStore) -> None:
    v1, _ = deploy(server, "nightly", "a: 1", schedules=[CRON, {"kind": "manual"}])
    [s] = server.list_schedules("nightly")
    assert s.next_fire is not None
    assert s.version_id == v1.id
    assert server.update_schedule(s.id, last_fire=1000.0, next_fire=2000.0)
    v2, _ = deploy(server, "nightly", "a: 2", schedules=[{**CRON, "catch_up": "all"}])
    [kept] = server.list_schedules("nightly")
    assert (kept.id, kept.last_fire, kept.catch_up, kept.version_id) == (
        s.id,
        1000.0,
        "all",
        v2.id,
    )
    deploy(server, "nightly", "a: 3", schedules=[{**CRON, "cron": "0 3 * * *"}])
    [changed] = server.list_schedules("nightly")
    assert changed.id != s.id
    assert changed.last_fire is None
    deploy(server, "nightly", "a: 4", schedules=[])
    assert server.list_schedules("nightly") == []
    assert server.get_workflow("nightly").next_fire is None


def test_update_schedule_never_moves_last_fire_back(server: ServerStore) -> None:
    deploy(server, "nightly", "a: 1", schedules=[CRON])
    [s] = server.list_schedules()
    server.update_schedule(s.id, last_fire=2000.0, missed_count_increment=3, last_missed=1500.0)
    server.update_schedule(s.id, last_fire=1000.0, missed_count_increment=2, last_missed=900.0)
    [after] = server.list_schedules()
    assert (after.last_fire, after.missed_count, after.last_missed) == (2000.0, 5, 1500.0)
    assert server.update_schedule("gone/x", next_fire=1.0) is False
    assert after.schedule.cron == "0 2 * * *"


def test_a_fire_is_recorded_once_even_when_schedulers_race(server: ServerStore) -> None:
    deploy(server, "nightly", "a: 1", schedules=[CRON])
    [s] = server.list_schedules()
    when = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    key = fire_key(s.id, when)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def fire(i: int) -> None:
        barrier.wait()
        results.append(server.record_fire(s.id, key, when, f"run-{i}", "fired"))

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    missed = datetime(2026, 3, 28, 1, 0, tzinfo=UTC)
    assert server.record_fire(s.id, fire_key(s.id, missed), missed, None, "missed")
    fires = server.schedule_fires("nightly")
    assert [(f.status, f.fire_time) for f in fires] == [
        ("fired", when.timestamp()),
        ("missed", missed.timestamp()),
    ]
    with pytest.raises(StoreError):
        server.record_fire(s.id, "k", when, None, "exploded")


# -- secrets ---------------------------------------------------------------------------
def test_secrets_are_sealed_and_looked_up_namespace_first(
    server: ServerStore, sql_store: SqlStore
) -> None:
    assert server.put_secret("ops", "TOKEN", "ops-value-123", "ann") is True
    assert server.put_secret("*", "TOKEN", "global-value-456", "ann") is True
    assert server.put_secret("*", "SHARED", "shared-789", "ann") is True
    assert server.put_secret("ops", "TOKEN", "ops-value-999", "bob") is False
    assert server.secret_values("ops", ["TOKEN", "SHARED", "MISSING"]) == {
        "TOKEN": "ops-value-999",
        "SHARED": "shared-789",
    }
    assert server.secret_values("dev", ["TOKEN"]) == {"TOKEN": "global-value-456"}
    meta = server.get_secret("ops", "TOKEN")
    assert (meta.created_by, meta.updated_by) == ("ann", "bob")
    with sql_store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT sealed_value FROM secrets").scalars().all()
    assert all(b"value" not in bytes(v) for v in stored)
    page = server.list_secrets(limit=2)
    assert [(s.namespace, s.name) for s in page.items] == [("*", "SHARED"), ("*", "TOKEN")]
    rest = server.list_secrets(limit=2, cursor=page.next_cursor)
    assert [(s.namespace, s.name) for s in rest.items] == [("ops", "TOKEN")]
    assert rest.next_cursor is None
    server.delete_secret("ops", "TOKEN")
    with pytest.raises(NotFound):
        server.delete_secret("ops", "TOKEN")
    with pytest.raises(NotFound):
        server.get_secret("ops", "TOKEN")


# -- events ----------------------------------------------------------------------------
def test_published_events_reach_the_outbox(server: ServerStore, sql_store: SqlStore) -> None:
    first = server.publish_event("deploy.done", "ci", {"sha": "abc"}, "ann")
    second = server.publish_event("deploy.done", None, None, "ann")
    assert second > first
    [one, _] = sql_store.read_events(after_id=first - 1)
    assert not one.event.run_id  # published: no run (Event.run_id is typed str)
    assert one.event.type == "deploy.done"
    assert one.event.data == {"source": "ci", "payload": {"sha": "abc"}, "actor": "ann"}
    assert server.event_cursor("triggers") == 0
    server.set_event_cursor("triggers", first)
    server.set_event_cursor("triggers", second)
    assert server.event_cursor("triggers") == second


def test_concurrent_first_deploys_of_one_name_leave_one_owner(server: ServerStore) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def go(namespace: str) -> None:
        barrier.wait()
        try:
            deploy(server, "race", "a: 1", namespace=namespace)
            outcomes.append("ok")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=go, args=(f"ns{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 3 + ["ok"]
    assert server.namespaces() == [server.get_workflow("race").namespace]
