"""Migrations: up, down and up again on SQLite and PostgreSQL, matching tables.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from plait.store import migrate
from plait.store.tables import LOG_SEARCH_INDEXES, LOG_SEARCH_TABLES, metadata


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/deep/dir/plait.db"
    base: str = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(base, poolclass=sa.NullPool)
    with engine.begin() as conn:  # the session database, shared with the contract suite
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    return base


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version", *LOG_SEARCH_TABLES}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(url: str) -> None:
    assert migrate.current(url) is None
    assert not migrate.is_current(url)
    migrate.open_store(url).close()
    assert migrate.is_current(url)
    assert _tables(url) == set(metadata.tables)
    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    assert _tables(url) == set()
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.HEAD
    assert _tables(url) == set(metadata.tables)


def test_migrations_match_the_tables(url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    migrate.upgrade(url)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:

        def ours(name: str | None, kind: str, parent: object) -> bool:  # not the FTS parts
            return name not in LOG_SEARCH_TABLES | LOG_SEARCH_INDEXES

        context = MigrationContext.configure(conn, opts={"include_name": ours})
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []


def test_open_store_without_migrate_leaves_the_schema_alone(url: str) -> None:
    migrate.open_store(url, migrate=False).close()
    assert migrate.current(url) is None
