"""What differs between SQLite and PostgreSQL, and nothing else (DBOS-style hooks).

Each hook set builds the engine with its options, hands out connections inside a
transaction (``write`` and ``read``), makes the dialect's ``INSERT … ON CONFLICT`` and
locks the rows a claim selects. Every query itself is written once, in
:mod:`plait.store.sql`.

SQLite durability: WAL with ``synchronous=NORMAL`` survives a crash or ``kill -9`` of
the process (the WAL is in the OS page cache) but may lose the last transactions on a
power loss or OS crash. Add ``?synchronous=full`` to the URL, or set
``PLAIT_SQLITE_SYNCHRONOUS=full``, to be durable against those too (one fsync per
commit).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Select, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from plait.errors import ConflictError, StoreError
from plait.store.lite import CHECKPOINT_EVERY as _CHECKPOINT_EVERY
from plait.store.lite import SYNCHRONOUS as _SYNCHRONOUS
from plait.store.lite import connect, connect_pragmas, transaction

#: Pooled read connections kept open (anyio's thread pool has 40 threads, plus workers)
#: and how many more may open briefly beyond them.
_READ_POOL_SIZE = 40
_READ_POOL_OVERFLOW = 20


class Hooks(ABC):
    """The dialect hooks; one instance per store."""

    engine: Engine
    name: str

    @abstractmethod
    def insert(self, table: Table) -> Any:
        """``INSERT`` with ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""

    def lock(self, query: Select[Any]) -> Select[Any]:
        """Make the claim's ``SELECT`` safe against concurrent claimers."""
        return query

    @abstractmethod
    def write(self) -> AbstractContextManager[Connection]:
        """A SQLAlchemy connection in a write transaction."""

    @abstractmethod
    def read(self) -> AbstractContextManager[Connection]:
        """A SQLAlchemy connection in a read transaction."""

    @abstractmethod
    def cursor(self, write: bool = True) -> AbstractContextManager[Any]:
        """A driver cursor inside a transaction, for :class:`~plait.store.prepared.Prepared`
        statements; committed when the block ends, rolled back if it raises."""

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def wrap_errors() -> Iterator[None]:
    """Driver errors become StoreError (IntegrityError: ConflictError), cause kept."""
    try:
        yield
    except IntegrityError as exc:
        raise ConflictError(f"conflicting write: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc}") from exc


@contextmanager
def _driver_transaction(
    engine: Engine, dbapi_conn: Any, begin: str | None, proxy: Any = None
) -> Iterator[Any]:
    """Run the block in a transaction on a driver connection; wrap the driver's errors.
    On a lost connection, ``proxy`` (the pool's wrapper) is invalidated."""
    dbapi = engine.dialect.loaded_dbapi
    cur = dbapi_conn.cursor()
    try:
        if begin:
            cur.execute(begin)
        yield cur
        dbapi_conn.commit()
    except BaseException as exc:
        lost = isinstance(exc, dbapi.Error) and engine.dialect.is_disconnect(exc, dbapi_conn, cur)
        if lost and proxy is not None:
            proxy.invalidate(exc)
        else:
            with contextlib.suppress(dbapi.Error):
                dbapi_conn.rollback()
        if isinstance(exc, dbapi.IntegrityError):
            raise ConflictError(f"conflicting write: {exc}") from exc
        if isinstance(exc, dbapi.Error):
            raise StoreError(f"database error: {exc}") from exc
        raise
    finally:
        with contextlib.suppress(dbapi.Error):
            cur.close()


class SqliteHooks(Hooks):
    """One long-lived write connection behind a lock: SQLite has a single writer anyway,
    and ``BEGIN IMMEDIATE`` takes the write lock up front, so a transaction never has to
    upgrade a read lock (the cause of ``database is locked`` deadlocks). Reads use
    other pooled connections and run beside the writer (WAL)."""

    name = "sqlite"

    def __init__(self, url: URL) -> None:
        query = dict(url.query)
        sync = str(query.pop("synchronous", os.environ.get("PLAIT_SQLITE_SYNCHRONOUS", "normal")))
        if sync.lower() not in _SYNCHRONOUS:
            raise StoreError(f"unknown SQLite synchronous mode {sync!r}")
        url = url.set(query=query)
        self.memory = url.database in (None, "", ":memory:")
        self._path = Path(url.database or ":memory:").expanduser()
        self._synchronous = _SYNCHRONOUS[sync.lower()]
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        if not self.memory and url.database:
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if self.memory:  # one shared connection, or every connection is another database
            options["poolclass"] = StaticPool
        else:
            # Readers run in the server's thread pool (anyio's default: 40 threads) and
            # the workers. The default QueuePool (5 + 10 overflow) closed every overflow
            # connection on check-in, so under load reads kept re-opening connections
            # and running the PRAGMAs below each time. Keep enough open for every thread.
            options["pool_size"] = _READ_POOL_SIZE
            options["max_overflow"] = _READ_POOL_OVERFLOW
        self.engine = create_engine(url, **options)
        self._listen(_SYNCHRONOUS[sync.lower()])
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if not self.memory:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="plait-sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database file in the background. PASSIVE never blocks
        readers or the writer; a failed round is retried on the next tick."""
        while not self._stop.wait(_CHECKPOINT_EVERY):
            try:
                proxy = self.engine.raw_connection()
                try:  # outside any transaction, or SQLite refuses to checkpoint
                    cur = proxy.cursor()
                    cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    cur.close()
                finally:
                    proxy.close()
            except (SQLAlchemyError, self.engine.dialect.loaded_dbapi.Error):
                continue

    def _listen(self, synchronous: str) -> None:
        memory = self.memory

        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Autocommit at the driver level: transactions are begun by us (below).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            for pragma in connect_pragmas(synchronous, memory=memory):
                cur.execute(pragma)
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("plait_begin", "BEGIN")
            conn.exec_driver_sql(mode)

    def insert(self, table: Table) -> Any:
        return sqlite.insert(table)

    def _writer(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = self.engine.connect().execution_options(plait_begin="BEGIN IMMEDIATE")
            self._conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._lock, wrap_errors():
            conn = self._writer()
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        if self.memory:  # the only connection is the writer's
            with self._lock, wrap_errors():
                conn = self._writer()
                with conn.begin():
                    yield conn
            return
        with wrap_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def cursor(self, write: bool = True) -> Iterator[Any]:
        if write or self.memory:
            with self._lock:
                proxy = self._writer().connection
                begin = "BEGIN IMMEDIATE" if write else "BEGIN"
                with _driver_transaction(self.engine, proxy.dbapi_connection, begin, proxy) as cur:
                    yield cur
            return
        # A read on the thread's own connection: checking one out of SQLAlchemy's pool
        # and back costs more than the indexed read itself (the run-status poll).
        with transaction(self._reader(), "BEGIN") as cur:
            yield cur

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = connect(self._path, self._synchronous)
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            for conn in self._reader_conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._reader_conns.clear()
        self.engine.dispose()


class PostgresHooks(Hooks):
    """A connection pool; the claim locks its rows with ``FOR UPDATE SKIP LOCKED`` so
    concurrent workers take different steps without waiting for each other."""

    name = "postgresql"

    def __init__(self, url: URL) -> None:
        self.engine = create_engine(
            url,
            pool_size=10,  # API handlers + workers of one process
            max_overflow=20,
            pool_recycle=1800,  # below common idle-connection timeouts of proxies
        )

    def insert(self, table: Table) -> Any:
        return postgresql.insert(table)

    def lock(self, query: Select[Any]) -> Select[Any]:
        return query.with_for_update(skip_locked=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with wrap_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with wrap_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def cursor(self, write: bool = True) -> Iterator[Any]:
        try:
            proxy = self.engine.raw_connection()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot connect to the database: {exc}") from exc
        try:
            # psycopg begins a transaction with the first statement.
            with _driver_transaction(self.engine, proxy.dbapi_connection, None, proxy) as cur:
                yield cur
        finally:
            proxy.close()


def hooks_for(url: str) -> Hooks:
    """The hooks for a store URL (``sqlite:///…`` or ``postgresql+psycopg://…``)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StoreError(f"invalid store URL {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return SqliteHooks(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":  # psycopg 3 is the driver Plait ships with
            parsed = parsed.set(drivername="postgresql+psycopg")
        return PostgresHooks(parsed)
    raise StoreError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")
