"""Schema migrations (Alembic, shipped in the package) and opening a ready store.

Alembic is imported only when a migration actually runs: checking that a database is
current reads ``alembic_version`` directly. A current SQLite file opens on
:mod:`plait.store.lite` without SQLAlchemy at all, which keeps ``plait run`` start-up
fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.errors import StoreError
from plait.store.base import Sealer
from plait.store.sql import SqlStore

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection, Engine

#: The newest revision in ``migrations/versions`` (a test checks it against Alembic).
HEAD = "0011"

_SCRIPTS = "plait.store:migrations"


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", _SCRIPTS)
    cfg.attributes["connection"] = connection
    return cfg


def _run(url: str, action: str, revision: str) -> None:
    from alembic import command
    from sqlalchemy.exc import SQLAlchemyError

    store = SqlStore(url)  # the store's engine: same SQLite pragmas, directory created
    try:
        with store.engine.connect() as conn:
            getattr(command, action)(_config(conn), revision)
            conn.commit()
    except SQLAlchemyError as exc:
        raise StoreError(f"migration failed: {exc}") from exc
    finally:
        store.close()


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision``."""
    _run(url, "upgrade", revision)


def downgrade(url: str, revision: str = "-1") -> None:
    """Downgrade the database at ``url`` to ``revision`` (one step by default)."""
    _run(url, "downgrade", revision)


def revision_of(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            row: Any = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the schema version: {exc}") from exc
    return None if row is None else str(row[0])


def current(url: str) -> str | None:
    """The revision of the database at ``url`` (None: no schema yet)."""
    from sqlalchemy import create_engine, make_url
    from sqlalchemy.pool import NullPool

    parsed = make_url(url)
    db = parsed.database
    in_file = parsed.get_backend_name() == "sqlite" and db and db != ":memory:"
    if in_file and not Path(str(db)).expanduser().exists():  # do not create it by looking
        return None
    engine = create_engine(url, poolclass=NullPool)
    try:
        return revision_of(engine)
    finally:
        engine.dispose()


def is_current(url: str) -> bool:
    """Whether the database at ``url`` is at :data:`HEAD` (without importing Alembic)."""
    return current(url) == HEAD


def open_store(
    url: str, sealer: Sealer | None = None, *, migrate: bool = True, lite: bool = False
) -> SqlStore:
    """The store at ``url``, its schema upgraded first when ``migrate`` and not current.
    A SQLite file's directory is created.

    ``lite``: for one process driving its own runs (``plait run``), open a SQLite file
    on :mod:`plait.store.lite` — without SQLAlchemy, one connection. A server keeps the
    pooled connections of the SQLAlchemy hooks, whose readers run beside the writer."""
    if lite and migrate:
        from plait.store.lite import open_lite

        found = open_lite(url, sealer)
        if found is not None:
            return found
    store = SqlStore(url, sealer)
    try:
        if migrate and revision_of(store.engine) != HEAD:
            upgrade(url)
            if lite:  # a new (or upgraded) file is current now
                from plait.store.lite import open_lite

                found = open_lite(url, sealer)
                if found is not None:
                    store.close()
                    return found
    except BaseException:
        store.close()
        raise
    return store


__all__ = ["HEAD", "current", "downgrade", "is_current", "open_store", "upgrade"]
