"""The SQLite store without SQLAlchemy on the way: how ``plait run`` starts fast.

Importing SQLAlchemy costs more than a whole one-step run (a quarter of a second on a
small machine). :class:`~plait.store.sql.SqlStore` needs it only to compile its
statements and for queries built per call; for SQLite the compiled statements are kept
in :mod:`plait.store._sqlite_statements` (written by ``python -m plait.store.lite``; a
test compiles them afresh and fails if the kept copy differs), and :class:`LiteHooks`
runs them on a :mod:`sqlite3` connection with the same PRAGMAs and transactions as
:class:`~plait.store.dialects.SqliteHooks`. Anything else — a run list with filters,
the server's tables, a migration — builds the SQLAlchemy hooks on first use.

:func:`open_lite` is used only for a plain SQLite file whose schema is already current;
any other URL, a new database or an old schema goes the usual way (and is migrated).
``PLAIT_STORE_LITE=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from plait.errors import ConflictError, StoreError

if TYPE_CHECKING:
    from sqlalchemy import Engine, Select, Table
    from sqlalchemy.engine import Connection

    from plait.store.base import Sealer
    from plait.store.sql import SqlStore

SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL", "off": "OFF", "extra": "EXTRA"}
_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")
_BACKSTOP_PAGES = 20_000  # 80 MB of WAL
_WAL_LIMIT_BYTES = 64 * 1024 * 1024
CHECKPOINT_EVERY = 0.5  # seconds


def connect_pragmas(synchronous: str, *, memory: bool) -> list[str]:
    """What every SQLite connection of a store runs first (both hook sets)."""
    return [
        *([] if memory else ["PRAGMA journal_mode=WAL"]),
        f"PRAGMA synchronous={synchronous}",
        "PRAGMA busy_timeout=30000",
        # Checkpoints (and their fsyncs) run in a background thread, not in the
        # committing one; this is only the backstop if that thread falls behind.
        f"PRAGMA wal_autocheckpoint={_BACKSTOP_PAGES}",
        f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}",
        "PRAGMA foreign_keys=ON",
    ]


class StoreHooks(Protocol):
    """What a store needs of its dialect hooks (:class:`plait.store.dialects.Hooks`
    and :class:`LiteHooks` both fit)."""

    name: str

    @property
    def engine(self) -> Engine: ...

    def insert(self, table: Table) -> Any: ...

    def lock(self, query: Select[Any]) -> Select[Any]: ...

    def write(self) -> AbstractContextManager[Connection]: ...

    def read(self) -> AbstractContextManager[Connection]: ...

    def cursor(self, write: bool = True) -> AbstractContextManager[Any]: ...

    def close(self) -> None: ...


def lite_target(url: str) -> tuple[Path, str] | None:
    """The database file and synchronous mode of a plain ``sqlite:///FILE`` URL (only
    ``synchronous`` as an option), or None when the URL needs SQLAlchemy's handling."""
    if os.environ.get("PLAIT_STORE_LITE", "1").lower() in ("0", "false", "no", "off"):
        return None
    prefix = next((p for p in _PREFIXES if url.startswith(p)), None)
    if prefix is None:
        return None
    path, _, query = url[len(prefix) :].partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    sync = options.pop("synchronous", os.environ.get("PLAIT_SQLITE_SYNCHRONOUS", "normal"))
    if options or not path or path == ":memory:" or sync.lower() not in SYNCHRONOUS:
        return None
    return Path(path).expanduser(), SYNCHRONOUS[sync.lower()]


def _revision(path: Path) -> str | None:
    if not path.is_file():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def open_lite(url: str, sealer: Sealer | None = None) -> SqlStore | None:
    """The store at ``url`` on :class:`LiteHooks`, or None if it cannot be (see the
    module docstring): the caller then opens it the usual way."""
    from plait.store import _sqlite_statements as kept
    from plait.store.migrate import HEAD

    target = lite_target(url)
    if target is None or kept.REVISION != HEAD or _revision(target[0]) != HEAD:
        return None
    from plait.store.sql import SqlStore
    from plait.store.statement_set import StatementSet

    hooks = LiteHooks(url, *target)
    return SqlStore(url, sealer, hooks=hooks, statements=StatementSet.from_specs(kept.STATEMENTS))


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection of a store to its file, with the store's PRAGMAs; transactions
    are begun explicitly (:func:`transaction`)."""
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
    cur = conn.cursor()
    for pragma in connect_pragmas(synchronous, memory=False):
        cur.execute(pragma)
    cur.close()
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, begin: str) -> Iterator[sqlite3.Cursor]:
    """A cursor in a transaction, committed when the block ends and rolled back if it
    raises; the driver's errors become StoreError (IntegrityError: ConflictError)."""
    cur = conn.cursor()
    try:
        cur.execute(begin)
        yield cur
        conn.commit()
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        if isinstance(exc, sqlite3.IntegrityError):
            raise ConflictError(f"conflicting write: {exc}") from exc
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"database error: {exc}") from exc
        raise
    finally:
        with contextlib.suppress(sqlite3.Error):
            cur.close()


class LiteHooks:
    """:class:`~plait.store.dialects.SqliteHooks`' cursor on a bare :mod:`sqlite3`
    connection; the rest of the hooks interface is SQLAlchemy's, built on first use."""

    name = "sqlite"

    def __init__(self, url: str, path: Path, synchronous: str) -> None:
        self._url = url
        self._synchronous = synchronous
        self._path = path
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = self._connect()
        self._full: StoreHooks | None = None
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="plait-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        return connect(self._path, self._synchronous)

    def _checkpoint_loop(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(CHECKPOINT_EVERY):
                try:
                    conn = conn or sqlite3.connect(str(self._path), timeout=30)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    continue
        finally:
            if conn is not None:
                conn.close()

    @contextmanager
    def cursor(self, write: bool = True) -> Iterator[Any]:
        with self._lock:
            if self._conn is None:  # closed: like SQLAlchemy's engine, connect again
                self._conn = self._connect()
            with transaction(self._conn, "BEGIN IMMEDIATE" if write else "BEGIN") as cur:
                yield cur

    # -- the rest of the hooks: SQLAlchemy's ---------------------------------------------
    def full(self) -> StoreHooks:
        with self._lock:
            if self._full is None:
                from plait.store.dialects import hooks_for

                self._full = hooks_for(self._url)
            return self._full

    @property
    def engine(self) -> Engine:
        return self.full().engine

    def insert(self, table: Table) -> Any:
        return self.full().insert(table)

    def lock(self, query: Select[Any]) -> Select[Any]:
        return query

    def write(self) -> AbstractContextManager[Connection]:
        return self.full().write()

    def read(self) -> AbstractContextManager[Connection]:
        return self.full().read()

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._full is not None:
                self._full.close()


def write_kept(path: Path | None = None) -> str:
    """Compile the statements for SQLite and write them as
    :mod:`plait.store._sqlite_statements`; returns the text."""
    import pprint
    import tempfile

    from plait.store.dialects import hooks_for
    from plait.store.migrate import HEAD
    from plait.store.statement_set import StatementSet

    with tempfile.TemporaryDirectory() as tmp:
        hooks = hooks_for(f"sqlite:///{tmp}/compile.db")
        try:
            specs = StatementSet.compile(hooks).specs()
        finally:
            hooks.close()
    text = (
        '"""The SQLite statements of :class:`plait.store.sql.SqlStore`, compiled.\n\n'
        "Written by ``python -m plait.store.lite``; do not edit (a test compares it with a\n"
        'fresh compilation). See :mod:`plait.store.lite`."""\n\n'
        "from typing import Any\n\n"
        f"REVISION = {HEAD!r}\n\n"
        f"STATEMENTS: dict[str, Any] = {pprint.pformat(specs, width=96, sort_dicts=False)}\n"
    )
    if path is not None:
        path.write_text(text)
    return text


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    target = Path(__file__).with_name("_sqlite_statements.py")
    write_kept(target)
    print(f"wrote {target}")
