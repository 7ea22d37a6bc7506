"""What differs between SQLite and PostgreSQL, and nothing else (DBOS-style hooks).

Each hook set builds the engine with its options, hands out connections inside a
transaction (``write`` and ``read``), makes the dialect's ``INSERT … ON CONFLICT`` and
locks the rows a claim selects. Every query itself is written once, in
:mod:`plait.store.sql`.

PostgreSQL connections come from one bounded SQLAlchemy pool per process, sized and
timed by ``PLAIT_DB_*`` variables (:func:`pool_settings`; docs/cluster.md). A lost
connection — the server restarted, ``pg_terminate_backend``, a cut network — raises
:class:`~plait.errors.StoreUnavailable` once and marks every pooled connection of that
generation stale, so the next transaction reconnects instead of failing on the next
dead connection, and the one after that on the next.

SQLite durability: WAL with ``synchronous=NORMAL`` survives a crash or ``kill -9`` of
the process (the WAL is in the OS page cache) but may lose the last transactions on a
power loss or OS crash. Add ``?synchronous=full`` to the URL, or set
``PLAIT_SQLITE_SYNCHRONOUS=full``, to be durable against those too (one fsync per
commit).
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Select, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from plait.errors import ConflictError, StoreError, StoreUnavailable
from plait.store.lite import CHECKPOINT_EVERY as _CHECKPOINT_EVERY
from plait.store.lite import SYNCHRONOUS as _SYNCHRONOUS
from plait.store.lite import connect, connect_pragmas, transaction

#: Pooled read connections kept open (anyio's thread pool has 40 threads, plus workers)
#: and how many more may open briefly beyond them.
_READ_POOL_SIZE = 40
_READ_POOL_OVERFLOW = 20

#: PostgreSQL pool settings: environment variable → (default, what it sets). Every
#: process has one pool; the cluster needs the sum of its processes' bounds (plus one
#: listening connection each, and one more per scheduler) below ``max_connections``.
POOL_SETTINGS: dict[str, tuple[float, str]] = {
    "PLAIT_DB_POOL_SIZE": (10, "connections kept open"),
    "PLAIT_DB_MAX_OVERFLOW": (10, "more opened under load, closed when returned"),
    "PLAIT_DB_POOL_TIMEOUT": (10, "seconds to wait for a free connection"),
    "PLAIT_DB_POOL_RECYCLE": (1800, "seconds after which a connection is replaced"),
    "PLAIT_DB_CONNECT_TIMEOUT": (5, "seconds to wait for a new connection"),
}


def pool_settings(environ: Mapping[str, str] | None = None) -> dict[str, float]:
    """The ``PLAIT_DB_*`` settings from the environment, checked (a bad value names the
    variable instead of failing somewhere inside the driver)."""
    env = os.environ if environ is None else environ
    found: dict[str, float] = {}
    for name, (default, _) in POOL_SETTINGS.items():
        raw = env.get(name, "").strip()
        least = 1.0 if name == "PLAIT_DB_POOL_SIZE" else 0.0
        try:
            value = float(raw) if raw else default
        except ValueError:
            value = math.nan
        if not least <= value < math.inf:
            raise StoreError(f"{name}={raw!r}: expected a number of at least {least:g}")
        found[name] = value
    return found


def driver_options(connect_timeout: float) -> dict[str, Any]:
    """libpq options of every Plait connection: bounded connects, and TCP keepalives so
    a connection to a host that vanished (a partition, not a clean close) is found dead
    within about a minute instead of the kernel's two hours."""
    return {
        "connect_timeout": max(1, int(connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 60_000,  # ms: unacknowledged writes to a vanished host
    }


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
    """Driver errors become StoreError (IntegrityError: ConflictError; a lost or refused
    connection: StoreUnavailable), cause kept. SQLAlchemy has already invalidated the
    pool on a disconnect."""
    try:
        yield
    except IntegrityError as exc:
        raise ConflictError(f"conflicting write: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        lost = isinstance(exc, OperationalError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        )
        if lost:
            reason = _first_line(getattr(exc, "orig", None) or exc)
            raise StoreUnavailable(f"database unavailable: {reason}") from exc
        raise StoreError(f"database error: {exc}") from exc


@contextmanager
def _driver_transaction(
    engine: Engine, dbapi_conn: Any, begin: str | None, proxy: Any = None
) -> Iterator[Any]:
    """Run the block in a transaction on a driver connection; wrap the driver's errors.
    On a lost connection, ``proxy`` (the pool's wrapper) is invalidated, and with it
    every pooled connection opened before it (a restarted server dropped them all)."""
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
            _invalidate_pool(engine, proxy, exc)
        else:
            with contextlib.suppress(dbapi.Error):
                dbapi_conn.rollback()
        if isinstance(exc, dbapi.IntegrityError):
            raise ConflictError(f"conflicting write: {exc}") from exc
        if lost or isinstance(exc, dbapi.OperationalError):
            raise StoreUnavailable(f"database unavailable: {_first_line(exc)}") from exc
        if isinstance(exc, dbapi.Error):
            raise StoreError(f"database error: {exc}") from exc
        raise
    finally:
        with contextlib.suppress(dbapi.Error):
            cur.close()


def _first_line(exc: BaseException | None) -> str:
    """A driver error's first line: the reason, without the statement and hints."""
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__


def _invalidate_pool(engine: Engine, proxy: Any, exc: BaseException) -> None:
    """What SQLAlchemy's own ``Connection`` does on a disconnect: invalidate this
    connection and mark the pool's older ones for replacement at their next checkout."""
    invalidate = getattr(engine.pool, "_invalidate", None)
    if invalidate is not None:
        invalidate(proxy, exc)
    else:  # pragma: no cover - a SQLAlchemy without it: at least this connection
        proxy.invalidate(exc)


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
            self._readers = threading.local()  # a read after close connects again
        self.engine.dispose()


class PostgresHooks(Hooks):
    """A bounded connection pool; the claim locks its rows with ``FOR UPDATE SKIP
    LOCKED`` so concurrent workers take different steps without waiting for each other;
    ``NOTIFY`` inside a transaction wakes listeners when it commits.

    No ``pool_pre_ping``: it costs a round trip on every checkout, i.e. on every step
    transition. A dead connection is found by the statement that uses it instead, which
    fails with :class:`~plait.errors.StoreUnavailable` and renews the whole pool; the
    callers' loops retry."""

    name = "postgresql"

    def __init__(self, url: URL) -> None:
        settings = pool_settings()
        options = driver_options(settings["PLAIT_DB_CONNECT_TIMEOUT"])
        given = set(url.query)
        self.engine = create_engine(
            url,
            pool_size=int(settings["PLAIT_DB_POOL_SIZE"]),
            max_overflow=int(settings["PLAIT_DB_MAX_OVERFLOW"]),
            pool_timeout=settings["PLAIT_DB_POOL_TIMEOUT"],
            pool_recycle=int(settings["PLAIT_DB_POOL_RECYCLE"]),
            connect_args={
                k: v for k, v in {"application_name": "plait", **options}.items() if k not in given
            },
        )
        #: libpq URL and options of the dedicated connections (LISTEN, leadership),
        #: which live outside the pool
        self.listen_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.listen_options = {k: v for k, v in options.items() if k not in given}

    @contextmanager
    def pipeline(self, cur: Any) -> Iterator[Any]:
        """Send the block's statements without waiting for each (psycopg's pipeline
        mode): one round trip for the lot instead of one per statement, which is what a
        step transition costs most on a busy machine. Yields another cursor of the same
        transaction, for the statement whose result is read after the block; results,
        and any error, arrive when the block ends."""
        conn = cur.connection
        other = conn.cursor()  # not closed here: that would drop the results it awaits
        with conn.pipeline():
            yield other

    def notify(self, cur: Any, channel: str, payload: str = "") -> None:
        """Queue a notification in the cursor's transaction: sent when it commits,
        dropped if it rolls back (and collapsed with an identical one in it)."""
        cur.execute("SELECT pg_notify(%s, %s)", (channel, payload))

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
            raise StoreUnavailable(
                f"cannot connect to the database: {_first_line(getattr(exc, 'orig', None) or exc)}"
            ) from exc
        try:
            # psycopg begins a transaction with the first statement.
            with _driver_transaction(self.engine, proxy.dbapi_connection, None, proxy) as cur:
                yield cur
        finally:
            proxy.close()

    @contextmanager
    def autocommit(self) -> Iterator[Any]:
        """A driver cursor on which each statement is a transaction of its own: a
        one-statement transaction costs one round trip (no separate ``COMMIT``)."""
        try:
            proxy = self.engine.raw_connection()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"cannot connect to the database: {_first_line(getattr(exc, 'orig', None) or exc)}"
            ) from exc
        conn: Any = proxy.dbapi_connection
        try:
            conn.autocommit = True
            with _driver_transaction(self.engine, conn, None, proxy) as cur:
                yield cur
        finally:
            with contextlib.suppress(Exception):  # a lost connection has been invalidated
                conn.autocommit = False
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
