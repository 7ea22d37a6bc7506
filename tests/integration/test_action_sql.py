"""The sql action on the machine's real PostgreSQL and MariaDB, and on SQLite files:
parameters bound by the driver (injection attempts stay data), rows and types as JSON,
limits, read-only queries, timeouts and cancellation, and a workflow run end to end."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.actions.base import ActionContext, ActionFailed
from plait.actions.connections import EnvConnections, default_types
from plait.actions.sql import SqlAction, SqlInput
from plait.local import LocalSession
from plait.model import load_workflow
from plait.settings import Settings
from tests.pg import fresh_database

MYSQL_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
DIALECTS = ["postgres", "mysql", "sqlite"]


@pytest.fixture(scope="module")
def postgres_db() -> Iterator[str]:
    with fresh_database("plait_sql") as url:
        yield url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="module")
def mysql_db() -> Iterator[str]:
    """A fresh MariaDB database for this module, dropped afterwards."""
    import pymysql

    name = f"plait_sql_{secrets.token_hex(5)}"
    try:
        admin = pymysql.connect(**MYSQL_ADMIN, autocommit=True)  # type: ignore[arg-type]
    except pymysql.err.OperationalError as exc:
        if os.environ.get("PLAIT_TEST_SKIP_MYSQL") == "1":
            pytest.skip(f"MariaDB unreachable: {exc}")
        pytest.fail(
            f"MariaDB unreachable at 127.0.0.1:3306 as root ({exc}); start it, or set "
            "PLAIT_TEST_SKIP_MYSQL=1 to skip the MariaDB tests",
            pytrace=False,
        )
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(scope="module")
def sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite") / "data.db"


@pytest.fixture(scope="module")
def connections(postgres_db: str, mysql_db: str, sqlite_file: Path) -> dict[str, str]:
    """PLAIT_CONNECTION_* values, one per dialect (as ``plait run`` reads them)."""
    return {
        "PLAIT_CONNECTION_POSTGRES": json.dumps({"type": "postgres", "url": postgres_db}),
        "PLAIT_CONNECTION_MYSQL": json.dumps(
            {"type": "mysql", **MYSQL_ADMIN, "database": mysql_db}
        ),
        "PLAIT_CONNECTION_SQLITE": json.dumps(
            {"type": "sqlite", "path": str(sqlite_file), "create": True}
        ),
        "PLAIT_CONNECTION_WEB": json.dumps({"type": "http", "base_url": "http://127.0.0.1:1"}),
    }


class Log(list[tuple[str, str]]):
    def __call__(self, stream: str, line: str) -> None:
        self.append((stream, line))


def make_ctx(
    env: dict[str, str], workdir: Path, deadline: float | None = None, log: Log | None = None
) -> ActionContext:
    source = EnvConnections(env)
    return ActionContext(
        run_id="run-1",
        workflow="wf",
        step="sql",
        attempt=1,
        workdir=workdir,
        env={},
        log=log if log is not None else Log(),
        mask=lambda text: text,
        deadline=deadline,
        connections=lambda name: source.get("default", name),
    )


@pytest.fixture
def sql(connections: dict[str, str], tmp_path: Path) -> Callable[..., Any]:
    async def run(connection: str, query: str, **kw: Any) -> dict[str, Any]:
        deadline = kw.pop("deadline", None)
        inp = SqlInput(connection=connection, query=query, **kw)
        result = await SqlAction().execute(make_ctx(connections, tmp_path, deadline), inp)
        return result.outputs

    return run


def table() -> str:
    return f"t_{secrets.token_hex(4)}"


@pytest.mark.parametrize("db", DIALECTS)
async def test_insert_and_select_with_named_and_positional_params(
    sql: Callable[..., Any], db: str
) -> None:
    t = table()
    await sql(db, f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, name VARCHAR(200), score REAL)")
    out = await sql(
        db, f"INSERT INTO {t} (id, name, score) VALUES (:id, :name, :score)",
        params={"id": 1, "name": "Ada", "score": 2.5},
    )  # fmt: skip
    assert out == {"rows": [], "columns": [], "rowcount": 1, "truncated": False}
    await sql(db, f"INSERT INTO {t} (id, name, score) VALUES (?, ?, ?)", params=[2, "Bob", None])
    out = await sql(
        db, f"SELECT id, name, score FROM {t} WHERE id >= :min ORDER BY id", params={"min": 1}
    )
    assert out["columns"] == ["id", "name", "score"]
    assert out["rows"] == [
        {"id": 1, "name": "Ada", "score": 2.5},
        {"id": 2, "name": "Bob", "score": None},
    ]
    assert out["rowcount"] == 2
    assert out["truncated"] is False


INJECTIONS = [
    "x'); DROP TABLE {t}; --",
    "x\\'); DROP TABLE {t}; -- ",
    "' OR '1'='1",
    "%s %(name)s ? :id",
    "\\",
    "Robert'); DELETE FROM {t} WHERE ('1'='1",
]


@pytest.mark.parametrize("db", DIALECTS)
async def test_injection_attempts_stay_data(sql: Callable[..., Any], db: str) -> None:
    t = table()
    await sql(db, f"CREATE TABLE {t} (id INTEGER, v VARCHAR(200))")
    values = [v.format(t=t) for v in INJECTIONS]
    for i, value in enumerate(values):
        await sql(db, f"INSERT INTO {t} (id, v) VALUES (:id, :v)", params={"id": i, "v": value})
        found = await sql(db, f"SELECT id FROM {t} WHERE v = ?", params=[value])
        assert found["rows"] == [{"id": i}], value
    out = await sql(db, f"SELECT v FROM {t} ORDER BY id", mode="query")
    assert [r["v"] for r in out["rows"]] == values  # every row there, verbatim


@pytest.mark.parametrize("db", DIALECTS)
async def test_placeholders_in_literals_and_comments_and_percent_signs(
    sql: Callable[..., Any], db: str
) -> None:
    out = await sql(
        db,
        "SELECT ':skip ?' AS lit, '100%' AS pct, :v AS v /* :skip ? */",
        params={"v": "ok"},
    )
    assert out["rows"] == [{"lit": ":skip ?", "pct": "100%", "v": "ok"}]


@pytest.mark.parametrize("db", DIALECTS)
async def test_max_rows_truncates_in_auto_and_query_mode(sql: Callable[..., Any], db: str) -> None:
    t = table()
    await sql(db, f"CREATE TABLE {t} (n INTEGER)")
    await sql(db, f"INSERT INTO {t} (n) VALUES " + ", ".join(["(?)"] * 25), params=list(range(25)))
    for mode in ("auto", "query"):
        out = await sql(db, f"SELECT n FROM {t} ORDER BY n", max_rows=10, mode=mode)
        assert out["truncated"] is True
        assert [r["n"] for r in out["rows"]] == list(range(10))
        assert out["rowcount"] == 10
    out = await sql(db, f"SELECT n FROM {t} ORDER BY n", max_rows=25)
    assert out["truncated"] is False
    assert len(out["rows"]) == 25
    # the connection left after a cut-short stream still works (a fresh one per step)
    assert (await sql(db, f"SELECT count(*) AS c FROM {t}"))["rows"] == [{"c": 25}]


@pytest.mark.parametrize("db", DIALECTS)
async def test_query_mode_is_read_only_and_execute_mode_counts(
    sql: Callable[..., Any], db: str
) -> None:
    t = table()
    await sql(db, f"CREATE TABLE {t} (n INTEGER)")
    with pytest.raises(ActionFailed) as caught:
        await sql(db, f"INSERT INTO {t} (n) VALUES (1)", mode="query")
    assert caught.value.retryable is False
    assert (await sql(db, f"SELECT count(*) AS c FROM {t}"))["rows"] == [{"c": 0}]
    for n in range(3):
        await sql(db, f"INSERT INTO {t} (n) VALUES (?)", params=[n])
    out = await sql(
        db, f"UPDATE {t} SET n = n + 10 WHERE n < :lim", params={"lim": 2}, mode="execute"
    )
    assert out["rowcount"] == 2
    assert out["rows"] == []


@pytest.mark.parametrize("db", DIALECTS)
async def test_an_empty_result_still_names_its_columns(sql: Callable[..., Any], db: str) -> None:
    for mode in ("auto", "query"):
        out = await sql(db, "SELECT 1 AS a, 2 AS b WHERE 1 = 0", mode=mode)
        assert out == {"rows": [], "columns": ["a", "b"], "rowcount": 0, "truncated": False}


async def test_postgres_query_mode_takes_statements_a_cursor_cannot(
    sql: Callable[..., Any],
) -> None:
    out = await sql("postgres", "SHOW statement_timeout", mode="query", timeout="5s")
    assert out["rows"] == [{"statement_timeout": "5s"}]
    out = await sql("postgres", "-- a comment\n (SELECT 1 AS one)", mode="query")
    assert out["rows"] == [{"one": 1}]
    out = await sql("postgres", "SELECT 1 AS one", mode="query", transaction=False)
    assert out["rows"] == [{"one": 1}]


async def test_types_become_json_on_postgres(sql: Callable[..., Any]) -> None:
    out = await sql(
        "postgres",
        "SELECT 12.50::numeric AS price, 12345678901234567890.12345::numeric AS big, "
        "'2024-05-01 12:30:00+00'::timestamptz AS at, '2024-05-01'::date AS day, "
        "'\\x00ff'::bytea AS raw, 'b3f1c6a2-5f0e-4d7c-9b1a-2f3e4d5c6b7a'::uuid AS id, "
        "'{\"a\": [1, 2]}'::jsonb AS doc, ARRAY[1, 2] AS arr, interval '90 seconds' AS wait, "
        ":flag::boolean AS flag, :doc::jsonb -> 'k' AS k",
        params={"flag": True, "doc": {"k": "v"}},
    )
    row = out["rows"][0]
    assert row["price"] == 12.5
    assert row["big"] == "12345678901234567890.12345"
    assert row["at"].startswith("2024-05-01T12:30:00")
    assert row["day"] == "2024-05-01"
    assert row["raw"] == "AP8="
    assert row["id"] == "b3f1c6a2-5f0e-4d7c-9b1a-2f3e4d5c6b7a"
    assert row["doc"] == {"a": [1, 2]}
    assert row["arr"] == [1, 2]
    assert row["wait"] == 90.0
    assert row["flag"] is True
    assert row["k"] == "v"
    json.dumps(out)


async def test_types_become_json_on_mariadb(sql: Callable[..., Any]) -> None:
    out = await sql(
        "mysql",
        "SELECT CAST(12.50 AS DECIMAL(6,2)) AS price, TIMESTAMP('2024-05-01 12:30:00') AS at, "
        "DATE('2024-05-01') AS day, X'00FF' AS raw, SEC_TO_TIME(90) AS wait",
    )
    assert out["rows"] == [
        {
            "price": 12.5,
            "at": "2024-05-01T12:30:00",
            "day": "2024-05-01",
            "raw": "AP8=",
            "wait": 90.0,
        }
    ]


async def test_a_failed_statement_commits_nothing(sql: Callable[..., Any]) -> None:
    t = table()
    await sql("postgres", f"CREATE TABLE {t} (n INTEGER)")
    with pytest.raises(ActionFailed, match="division by zero"):
        await sql("postgres", f"INSERT INTO {t} VALUES (1); SELECT 1/0")
    assert (await sql("postgres", f"SELECT count(*) AS c FROM {t}"))["rows"] == [{"c": 0}]


@pytest.mark.parametrize("db", DIALECTS)
async def test_bad_sql_and_bad_params_fail_for_good(sql: Callable[..., Any], db: str) -> None:
    with pytest.raises(ActionFailed) as caught:
        await sql(db, "SELEKT 1")
    assert caught.value.retryable is False
    assert f"({db})" in str(caught.value)
    with pytest.raises(ActionFailed, match="no value in params for :b") as caught:
        await sql(db, "SELECT :a, :b", params={"a": 1})
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("db", "slow"),
    [
        ("postgres", "SELECT pg_sleep(10)"),
        ("mysql", "SELECT SLEEP(10)"),
        (
            "sqlite",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c",
        ),
    ],
)
async def test_statement_timeout_reaches_the_database(
    sql: Callable[..., Any], db: str, slow: str
) -> None:
    started = time.monotonic()
    with pytest.raises(ActionFailed, match="timeout") as caught:
        await sql(db, slow, timeout="1s")
    assert time.monotonic() - started < 6
    assert caught.value.retryable is True


async def test_the_step_deadline_bounds_the_statement(sql: Callable[..., Any]) -> None:
    started = time.monotonic()
    with pytest.raises(ActionFailed, match="timeout"):
        await sql("postgres", "SELECT pg_sleep(10)", timeout="1m", deadline=time.time() + 1)
    assert time.monotonic() - started < 6


@pytest.mark.parametrize("db", ["postgres", "mysql"])
async def test_cancelling_the_step_cancels_the_query(
    sql: Callable[..., Any], db: str, postgres_db: str, mysql_db: str
) -> None:
    marker = f"plait_cancel_{secrets.token_hex(4)}"
    slow = (
        f"SELECT pg_sleep(30) AS {marker}" if db == "postgres" else f"SELECT SLEEP(30) AS {marker}"
    )
    task = asyncio.create_task(sql(db, slow, timeout="1m"))
    await _wait_for(lambda: _running(db, marker, postgres_db) > 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _wait_for(lambda: _running(db, marker, postgres_db) == 0)


def _running(db: str, marker: str, postgres_db: str) -> int:
    if db == "postgres":
        import psycopg

        with psycopg.connect(postgres_db) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE query LIKE %s AND pid <> pg_backend_pid()",
                [f"%{marker}%"],
            ).fetchone()
            return int(row[0]) if row else 0
    import pymysql

    conn = pymysql.connect(**MYSQL_ADMIN)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE info LIKE %s AND id <> CONNECTION_ID()",
                [f"%{marker}%"],
            )
            return int(cur.fetchone()[0])
    finally:
        conn.close()


async def _wait_for(check: Callable[[], bool], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def test_connection_problems_are_clear(connections: dict[str, str], tmp_path: Path) -> None:
    env = {
        **connections,
        "PLAIT_CONNECTION_DOWN": json.dumps({"type": "postgres", "host": "127.0.0.1", "port": 1}),
        "PLAIT_CONNECTION_NOFILE": json.dumps({"type": "sqlite", "path": "missing.db"}),
    }
    ctx = make_ctx(env, tmp_path)
    with pytest.raises(ActionFailed, match="of type 'http'; sql needs") as caught:
        await SqlAction().execute(ctx, SqlInput(connection="web", query="SELECT 1"))
    assert caught.value.retryable is False
    with pytest.raises(ActionFailed, match="no connection named 'nope'"):
        await SqlAction().execute(ctx, SqlInput(connection="nope", query="SELECT 1"))
    with pytest.raises(ActionFailed, match=r"sql on 'down' \(postgres\)") as caught:
        await SqlAction().execute(ctx, SqlInput(connection="down", query="SELECT 1"))
    assert caught.value.retryable is True
    with pytest.raises(ActionFailed, match=r"missing\.db does not exist.*create: true"):
        await SqlAction().execute(ctx, SqlInput(connection="nofile", query="SELECT 1"))


async def test_sqlite_relative_paths_live_in_the_work_directory(tmp_path: Path) -> None:
    env = {
        "PLAIT_CONNECTION_LOCAL": json.dumps(
            {"type": "sqlite", "path": "db/app.db", "create": True}
        )
    }
    (tmp_path / "db").mkdir()
    ctx = make_ctx(env, tmp_path)
    await SqlAction().execute(ctx, SqlInput(connection="local", query="CREATE TABLE a (x)"))
    assert (tmp_path / "db" / "app.db").is_file()
    out = await SqlAction().execute(
        ctx, SqlInput(connection="local", query="VACUUM", transaction=False)
    )
    assert out.outputs["rowcount"] == -1


@pytest.mark.parametrize("db", DIALECTS)
async def test_connection_test_reports_the_server(connections: dict[str, str], db: str) -> None:
    data = json.loads(connections[f"PLAIT_CONNECTION_{db.upper()}"])
    kind = data.pop("type")
    cls = default_types().get(kind)
    config = default_types().parse(kind, data)
    answer = await cls().test(config)
    expected = {"postgres": "PostgreSQL 1", "mysql": "MariaDB 1", "sqlite": "SQLite 3"}[db]
    assert answer.startswith(expected), answer


async def test_connection_test_fails_clearly() -> None:
    from plait.errors import PlaitError

    cls = default_types().get("mysql")
    config = default_types().parse(
        "mysql", {"host": "127.0.0.1", "user": "nobody_here", "password": "wrong"}
    )
    with pytest.raises(PlaitError, match="mysql: \\(1045\\) Access denied"):
        await cls().test(config)


async def test_a_workflow_chains_sql_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connections: dict[str, str]
) -> None:
    for key, value in connections.items():
        monkeypatch.setenv(key, value)
    t = table()
    source = f"""
name: sql-chain
inputs:
  who: {{type: string}}
steps:
  - id: create
    uses: sql
    with: {{connection: postgres, query: "CREATE TABLE {t} (id serial, who text)"}}
  - id: insert
    needs: [create]
    uses: sql
    with:
      connection: postgres
      query: "INSERT INTO {t} (who) VALUES (:who) RETURNING id"
      params: {{who: "${{{{ inputs.who }}}}"}}
  - id: copy
    needs: [insert]
    uses: sql
    with:
      connection: sqlite
      query: "SELECT ? AS id, ? AS who"
      params: ["${{{{ steps.insert.outputs.rows[0].id }}}}", "${{{{ inputs.who }}}}"]
outputs:
  id: "${{{{ steps.copy.outputs.rows[0].id }}}}"
  who: "${{{{ steps.copy.outputs.rows[0].who }}}}"
"""
    home = tmp_path / "home"
    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    try:
        plan = load_workflow(source, "wf.yaml", session.registry.input_models()).plan
        who = f"O'Brien; DROP TABLE {t}"
        result = await session.run(plan, source, {"who": who}, workdir=tmp_path)
    finally:
        await session.close()
    assert result.success, result.error or [s.error for s in result.steps]
    assert result.outputs == {"id": 1, "who": f"O'Brien; DROP TABLE {t}"}
    assert result.step("insert").outputs == {
        "rows": [{"id": 1}], "columns": ["id"], "rowcount": 1, "truncated": False
    }  # fmt: skip
