"""Fixtures for tests against real databases.

PostgreSQL: a fresh database per test session on the local server (trust auth), dropped
at the end. Without a server the PostgreSQL tests fail, unless
``PLAIT_TEST_SKIP_POSTGRES=1`` says to skip them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import fresh_database


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with fresh_database("plait_test") as url:
        yield url
