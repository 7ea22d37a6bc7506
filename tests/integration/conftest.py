"""Fixtures for tests against real databases.

PostgreSQL: a fresh database per test session on the local server (trust auth), dropped
at the end. Without a server the PostgreSQL tests fail, unless
``PLAIT_TEST_SKIP_POSTGRES=1`` says to skip them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

ADMIN_URL = os.environ.get(
    "PLAIT_TEST_POSTGRES_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"plait_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        if os.environ.get("PLAIT_TEST_SKIP_POSTGRES") == "1":
            pytest.skip(f"PostgreSQL unreachable at {ADMIN_URL}")
        pytest.fail(
            f"PostgreSQL unreachable at {ADMIN_URL} ({exc.orig}); start it, or set "
            "PLAIT_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL tests",
            pytrace=False,
        )
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()
