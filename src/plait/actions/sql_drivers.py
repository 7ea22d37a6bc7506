"""How ``uses: sql`` runs a statement on each driver: psycopg, PyMySQL and sqlite3.

The drivers are blocking, so a statement runs in a thread on a connection of its own,
opened for the step and closed after it: a step needs no pool, and a connection never
carries one run's session state into another. The step's deadline reaches the database
(``statement_timeout``, ``max_statement_time``, SQLite's progress handler), so a cancelled
or timed-out step does not leave a query running; on cancel the query is also cancelled
actively (libpq's cancel request, ``KILL QUERY``, ``sqlite3_interrupt``). Drivers are
imported only when a step runs. Rows come back as JSON values (:func:`json_value`), and
driver errors as a message and whether a retry may pass (:func:`describe_error`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from uuid import UUID

from plait.actions.base import ActionFailed
from plait.actions.sqlparams import Dialect
from plait.errors import PlaitError

if TYPE_CHECKING:
    from plait.actions.sql_connections import MySqlConfig, PostgresConfig, SqliteConfig

#: server errors worth a retry: too many connections, shutdown, lock wait, deadlock, killed
_MYSQL_TRANSIENT = frozenset({1040, 1053, 1205, 1213, 1927})


@dataclass
class Job:
    """One statement to run: its text and bound parameters, and how (see ``SqlInput``)."""

    sql: str
    params: Any
    mode: str
    transaction: bool
    max_rows: int
    timeout: float
    workdir: Path


@dataclass
class Outcome:
    """What the statement returned: rows (at most ``max_rows``) and the count."""

    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    rowcount: int = -1
    truncated: bool = False


class Cancel:
    """How to stop the running statement from another thread (set once connected)."""

    def __init__(self) -> None:
        self.fn: Callable[[], None] | None = None

    def fire(self) -> None:
        fn = self.fn
        if fn is not None:
            # In a thread of its own: a cancel request opens a connection, and the event
            # loop must not wait for it.
            threading.Thread(target=_quietly, args=(fn,), daemon=True).start()


def _quietly(fn: Callable[[], None]) -> None:
    # The statement may have finished meanwhile, or the connection be gone: nothing to do.
    with contextlib.suppress(Exception):
        fn()


async def run_statement(dialect: Dialect, config: Any, job: Job, name: str) -> Outcome:
    """Run ``job`` on the connection ``name`` in a thread; a driver error is an
    :class:`ActionFailed` that says whether a retry may pass."""
    cancel = Cancel()
    try:
        return await asyncio.to_thread(_RUNNERS[dialect], config, job, cancel)
    except asyncio.CancelledError:
        cancel.fire()
        raise
    except ActionFailed:
        raise
    except Exception as exc:
        message, retryable = describe_error(dialect, exc, job.timeout)
        raise ActionFailed(f"sql on {name!r} ({dialect}): {message}", retryable=retryable) from exc


# -- drivers -------------------------------------------------------------------------------
def _run_postgres(config: PostgresConfig, job: Job, cancel: Cancel) -> Outcome:
    conn = _pg_connect(config, job.timeout)
    try:
        cancel.fn = getattr(conn, "cancel_safe", conn.cancel)
        cur = conn.cursor()
        cur.execute("SELECT set_config('statement_timeout', %s, false)", [_ms(job.timeout)])
        if job.mode == "query":
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        if job.transaction:
            cur.execute("BEGIN")
        try:
            if job.mode == "query" and job.transaction and _declarable(job.sql):
                # A server-side cursor: only max_rows + 1 rows ever leave the server.
                named = conn.cursor(name=f"plait_{secrets.token_hex(6)}")
                named.execute(job.sql, job.params)
                taken = named.fetchmany(job.max_rows + 1)
                outcome = _from_rows(_names(named.description), taken, job.max_rows)
                named.close()
            else:
                cur.execute(job.sql, job.params)
                while cur.nextset():  # several statements: the last one's result counts
                    pass
                outcome = _collect(cur, job)
        except BaseException:
            if job.transaction:
                _quietly(conn.rollback)
            raise
        if job.transaction:
            cur.execute("ROLLBACK" if job.mode == "query" else "COMMIT")
        return outcome
    finally:
        conn.close()


_DECLARABLE = re.compile(
    r"(?:\s+|--[^\n]*\n?|/\*.*?\*/|\()*(select|values|table|with)\b", re.I | re.S
)


def _declarable(sql: str) -> bool:
    """Whether PostgreSQL can run ``sql`` behind ``DECLARE … CURSOR`` (a SELECT, VALUES,
    TABLE or WITH query); SHOW, EXPLAIN and the like run as a plain statement."""
    return _DECLARABLE.match(sql) is not None


def _pg_connect(config: PostgresConfig, timeout: float) -> Any:
    import psycopg

    url = config.url.get_secret_value() if config.url else ""
    return psycopg.connect(
        url,
        host=config.host,
        port=config.port,
        dbname=config.database,
        user=config.user,
        password=config.password.get_secret_value() if config.password else None,
        sslmode=config.sslmode,
        connect_timeout=max(2, math.ceil(min(timeout, 30))),
        application_name="plait",
        autocommit=True,
    )


def _run_mysql(config: MySqlConfig, job: Job, cancel: Cancel) -> Outcome:
    import pymysql.cursors

    conn = _mysql_connect(config, job.timeout)
    try:
        cancel.fn = lambda: _mysql_kill(config, conn.thread_id())
        with conn.cursor() as setup:
            if "mariadb" in conn.get_server_info().lower():
                setup.execute("SET SESSION max_statement_time = %s", [round(job.timeout, 3)])
            else:
                setup.execute("SET SESSION max_execution_time = %s", [int(_ms(job.timeout))])
            if job.mode == "query":
                setup.execute("SET SESSION TRANSACTION READ ONLY")
            if job.transaction:
                setup.execute("START TRANSACTION")
        cursor_class = pymysql.cursors.SSCursor if job.mode == "query" else pymysql.cursors.Cursor
        cur = conn.cursor(cursor_class)
        try:
            cur.execute(job.sql, job.params)
            outcome = _collect(cur, job)
        except BaseException:
            if job.transaction:
                _quietly(conn.rollback)
            raise
        if outcome.truncated and job.mode == "query":
            # An unbuffered cursor reads every remaining row before it closes: stop the
            # query on the server first, so only what is already in transit is read.
            _quietly(lambda: _mysql_kill(config, conn.thread_id()))
            _quietly(cur.close)
        elif job.transaction:
            conn.rollback() if job.mode == "query" else conn.commit()
        return outcome
    finally:
        _quietly(conn.close)


def _mysql_connect(config: MySqlConfig, timeout: float) -> Any:
    import pymysql

    ssl: dict[str, Any] | None = None
    if config.ssl or config.ssl_ca:
        ssl = {"ca": config.ssl_ca} if config.ssl_ca else {}
    return pymysql.connect(
        host=config.host,
        port=config.port,
        user=config.user,
        password=config.password.get_secret_value() if config.password else "",
        database=config.database,
        unix_socket=config.unix_socket,
        charset="utf8mb4",
        connect_timeout=min(timeout, 30),
        # a backstop: the server stops the statement at the timeout (max_statement_time)
        read_timeout=math.ceil(timeout) + 5,
        write_timeout=math.ceil(timeout) + 5,
        ssl=ssl,
        ssl_verify_cert=config.ssl_verify if ssl is not None else None,
        ssl_verify_identity=config.ssl_verify if ssl is not None else None,
        autocommit=True,
    )


def _mysql_kill(config: MySqlConfig, thread_id: int) -> None:
    other = _mysql_connect(config, 10)
    try:
        with other.cursor() as cur:
            cur.execute(f"KILL QUERY {int(thread_id)}")
    finally:
        other.close()


def _run_sqlite(config: SqliteConfig, job: Job, cancel: Cancel) -> Outcome:
    import sqlite3

    conn = _sqlite_connect(config, job.workdir, job.timeout)
    deadline = time.monotonic() + job.timeout
    try:
        cancel.fn = conn.interrupt
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        if job.mode == "query":
            conn.execute("PRAGMA query_only = ON")
        if job.transaction:
            conn.execute("BEGIN")
        try:
            cur = conn.execute(job.sql, job.params if job.params is not None else ())
            outcome = _collect(cur, job)
            cur.close()
        except BaseException:
            if conn.in_transaction:
                _quietly(conn.rollback)
            raise
        if conn.in_transaction:
            conn.rollback() if job.mode == "query" else conn.commit()
        return outcome
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc) and time.monotonic() > deadline:
            raise TimeoutError from exc
        raise
    finally:
        conn.close()


def _sqlite_connect(config: SqliteConfig, workdir: Path, timeout: float) -> Any:
    import sqlite3

    if config.path == ":memory:":
        target = ":memory:"
    else:
        path = Path(config.path).expanduser()
        path = path if path.is_absolute() else workdir / path
        mode = "ro" if config.read_only else ("rwc" if config.create else "rw")
        if mode != "rwc" and not path.exists():
            raise ActionFailed(
                f"SQLite database {path} does not exist (set create: true on the "
                "connection to create it)",
                retryable=False,
            )
        target = f"file:{quote(str(path))}?mode={mode}"
    return sqlite3.connect(
        target, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
    )


_RUNNERS: dict[Dialect, Callable[[Any, Job, Cancel], Outcome]] = {
    "postgres": _run_postgres,
    "mysql": _run_mysql,
    "sqlite": _run_sqlite,
}


def check_connection(dialect: Dialect, config: Any, workdir: Path) -> str:
    """``SELECT 1`` and what answered (the server version)."""
    job = Job("SELECT 1", None, "query", False, 1, 10.0, workdir)
    try:
        if dialect == "postgres":
            conn = _pg_connect(config, 10)
            try:
                conn.execute("SELECT 1")
                version = conn.info.parameter_status("server_version") or "?"
                info = conn.info
                return (
                    f"PostgreSQL {version.split()[0]}, database {info.dbname} on "
                    f"{info.host}:{info.port} as {info.user}"
                )
            finally:
                conn.close()
        if dialect == "mysql":
            conn = _mysql_connect(config, 10)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1, VERSION()")
                    row = cur.fetchone()
                where = config.unix_socket or f"{config.host}:{config.port}"
                db = f"database {config.database} on " if config.database else ""
                return f"{_mysql_product(str(row[1]) if row else '?')}, {db}{where}"
            finally:
                conn.close()
        _run_sqlite(config, job, Cancel())
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}, {config.path}"
    except Exception as exc:
        message, _ = describe_error(dialect, exc, 10.0)
        raise PlaitError(f"{dialect}: {message}") from exc


def _mysql_product(info: str) -> str:
    return f"MariaDB {info}" if "mariadb" in info.lower() else f"MySQL {info}"


# -- results -------------------------------------------------------------------------------
def _collect(cur: Any, job: Job) -> Outcome:
    """Rows (at most ``max_rows``) and the count of what the statement did."""
    if cur.description is None or job.mode == "execute":
        return Outcome(rowcount=cur.rowcount if cur.rowcount is not None else -1)
    return _from_rows(_names(cur.description), cur.fetchmany(job.max_rows + 1), job.max_rows)


def _from_rows(columns: list[str], rows: Sequence[Sequence[Any]], max_rows: int) -> Outcome:
    truncated = len(rows) > max_rows
    kept = [dict(zip(columns, map(json_value, row), strict=True)) for row in rows[:max_rows]]
    return Outcome(columns, kept, len(kept), truncated)


def _names(description: Iterable[Any] | None) -> list[str]:
    """Column names, a repeated one suffixed ``_2``, ``_3`` … (rows are objects)."""
    names: list[str] = []
    seen: set[str] = set()
    for column in description or ():
        base = str(getattr(column, "name", None) or column[0])
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        names.append(name)
    return names


def json_value(value: Any) -> Any:
    """A database value as JSON: exact numbers stay numbers where a float holds them
    (else text), times as ISO 8601, bytes as base64, intervals as seconds."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    return str(value)


def _decimal(value: Decimal) -> int | float | str:
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


def _ms(seconds: float) -> str:
    return str(max(1, int(seconds * 1000)))


# -- errors --------------------------------------------------------------------------------
def describe_error(dialect: Dialect, exc: BaseException, timeout: float) -> tuple[str, bool]:
    """A driver error as (message, retryable): lost connections and timeouts may pass;
    syntax, constraint and permission errors will not."""
    timed_out = f"the statement ran past its {timeout:g}s timeout and was stopped"
    if isinstance(exc, TimeoutError):
        return timed_out, True
    if dialect == "postgres":
        import psycopg

        if isinstance(exc, psycopg.errors.QueryCanceled):
            return timed_out, True
        text = " ".join(str(exc).split())
        return text or type(exc).__name__, isinstance(exc, psycopg.OperationalError)
    if dialect == "mysql":
        import pymysql

        code, text = (*exc.args, "", "")[:2] if isinstance(exc, pymysql.Error) else (0, "")
        if code in (1969, 3024) or (code == 2013 and "timed out" in str(text)):
            return timed_out, True
        text = f"({code}) {text}" if code else str(exc) or type(exc).__name__
        # PyMySQL's exception classes are coarse; the error code tells what passes.
        return text, isinstance(code, int) and (2000 <= code < 3000 or code in _MYSQL_TRANSIENT)
    text = str(exc) or type(exc).__name__
    return text, any(word in text for word in ("locked", "busy"))
