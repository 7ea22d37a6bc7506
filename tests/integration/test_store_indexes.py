"""The partial indexes of waiting steps and running attempts (migration 0011), on SQLite
and PostgreSQL: they exist with their predicates, and the claim, timer and lease
queries are planned on them. A query that bound its status as a parameter instead of
stating it literally would silently fall back to scanning every step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.store.migrate import open_store
from plait.store.sql import SqlStore

PARTIAL = {
    "ix_steps_queued": "status = 'queued'",
    "ix_steps_retrying": "status = 'retrying'",
    "ix_steps_waiting": "status = 'waiting'",
    "ix_attempts_running": "status = 'running'",
}
GONE = {"ix_steps_claim", "ix_steps_status_available_at", "ix_attempts_worker"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/plait.db"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = open_store(url)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()


def _index_sql(store: SqlStore) -> dict[str, str]:
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        else:
            rows = conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            )
        return {str(row[0]): str(row[1]) for row in rows}


def test_the_partial_indexes_exist_with_their_predicates(store: SqlStore) -> None:
    found = _index_sql(store)
    for name, predicate in PARTIAL.items():
        assert name in found, name
        where = found[name].split("WHERE", 1)[1].replace("::text", "").replace("(", "")
        assert predicate in where.replace(")", ""), (name, found[name])
    assert not GONE & set(found)


def _plan(store: SqlStore, sql: str, params: Any) -> str:
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        if store.dialect == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
            return "\n".join(str(row[-1]) for row in cur.fetchall())
        cur.execute("SET enable_seqscan = off")  # an empty table: make the choice visible
        cur.execute("EXPLAIN " + sql, params)
        return "\n".join(str(row[0]) for row in cur.fetchall())
    finally:
        raw.rollback()
        raw.close()


VALUES = {
    "now": 1.0, "lim": 10, "queue": "default", "tags": {}, "run": "r", "b_run": "r",
    "b_worker": "w", "b_lease": 2.0, "b_now": 1.0,
}  # fmt: skip


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        ("claim_queue", "ix_steps_queued"),
        ("claim_queue", "ix_steps_retrying"),
        ("claim_queue", "ix_steps_waiting"),
        ("renew", "ix_attempts_running"),
        ("expired", "ix_attempts_running"),
    ],
)
def test_claims_and_leases_are_planned_on_them(store: SqlStore, statement: str, index: str) -> None:
    prepared = getattr(store._q, statement)
    assert index in _plan(store, prepared.sql, prepared.params(VALUES))


def test_the_unrouted_claim_reads_each_status_from_its_own_index(store: SqlStore) -> None:
    if store.dialect != "sqlite":
        pytest.skip("PostgreSQL claims unrouted steps in one statement (claim)")
    plans = [_plan(store, p.sql, p.params(VALUES)) for p in store._q.claim_parts]
    indexes = ["ix_steps_queued", "ix_steps_retrying", "ix_steps_waiting"]
    for plan, index in zip(plans, indexes, strict=True):
        assert index in plan, plan


def test_queue_depth_and_backlog_use_them(store: SqlStore) -> None:
    from plait.server.metrics import _queues

    sql, params = _compiled(store, _queues(1.0))
    plan = _plan(store, sql, params)
    assert "ix_steps_queued" in plan, plan
    assert "ix_steps_retrying" in plan, plan


def _compiled(store: SqlStore, query: Any) -> tuple[str, Any]:
    compiled = query.compile(dialect=store.engine.dialect)
    if compiled.positional:
        return compiled.string, tuple(compiled.params[k] for k in compiled.positiontup or ())
    return compiled.string, compiled.params
