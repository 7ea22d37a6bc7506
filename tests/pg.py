"""A fresh PostgreSQL database for a test (trust auth on 127.0.0.1), dropped afterwards.

Without a server the test fails with a clear message, unless ``PLAIT_TEST_SKIP_POSTGRES=1``
says to skip the PostgreSQL tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

ADMIN_URL = os.environ.get(
    "PLAIT_TEST_POSTGRES_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def fresh_database(prefix: str = "plait_test") -> Iterator[str]:
    """Create a database, yield its URL, then drop it (after ending its connections)."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"{prefix}_{secrets.token_hex(5)}"
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
    try:
        yield sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()
