"""Fixtures for tests against real databases.

PostgreSQL: a fresh database per test session on the local server (trust auth), dropped
at the end. Without a server the PostgreSQL tests fail, unless
``PLAIT_TEST_SKIP_POSTGRES=1`` says to skip them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.security.crypto import Keyring
from plait.store.migrate import open_store
from plait.store.tables import metadata
from tests.pg import fresh_database


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with fresh_database("plait_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store's URL, once per database: a new SQLite file, or the session's PostgreSQL
    database with every table emptied. (A module may define its own ``url``.)"""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/plait.db"
        return
    pg: str = request.getfixturevalue("postgres_url")
    store = open_store(pg)
    names = ", ".join(t.name for t in reversed(metadata.sorted_tables))
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    store.close()
    yield pg


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    """A key file in a home of this test (what ``plait secrets rotate-key`` changes)."""
    return Keyring.load_or_create(tmp_path / "home", environ={})
