"""``uses: sql`` — run one statement on a PostgreSQL, MariaDB/MySQL or SQLite connection.

The step names a connection (``postgres``, ``mysql`` or ``sqlite``) and gives the query
with ``:name`` or ``?`` placeholders (see :mod:`plait.actions.sqlparams`): parameters
always travel to the driver separately, never into the text. Rows come back as JSON
objects, at most ``max_rows`` of them (``truncated`` says when there were more);
``mode: query`` reads in a read-only transaction and takes no more than that from the
server (a server-side cursor, an unbuffered result), so a big table stays where it is.

The connection types are in :mod:`plait.actions.sql_connections`; how a statement runs on
each driver (in a thread, bounded by the step's deadline, cancelled on the server when
the step is) is in :mod:`plait.actions.sql_drivers`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.actions.connections import Connection

# The connection types are registered (plait.actions.connections) under this module's name.
from plait.actions.sql_connections import MySqlConnection as MySqlConnection
from plait.actions.sql_connections import PostgresConnection as PostgresConnection
from plait.actions.sql_connections import SqliteConnection as SqliteConnection
from plait.actions.sql_drivers import Job, run_statement
from plait.actions.sql_drivers import json_value as json_value
from plait.actions.sqlparams import Dialect, ParamError, bind, translate
from plait.errors import PlaitError
from plait.model.durations import parse_duration

#: what ``max_rows`` may be at most: rows are a step's outputs, kept in the store
MAX_ROWS = 10_000
DEFAULT_MAX_ROWS = 1000
_DIALECTS: dict[str, Dialect] = {"postgres": "postgres", "mysql": "mysql", "sqlite": "sqlite"}


class SqlInput(ActionInput):
    connection: str = Field(description="Name of a postgres, mysql or sqlite connection.")
    query: str = Field(description="One statement; :name or ? placeholders.")
    params: list[Any] | dict[str, Any] | None = Field(
        None, description="Values for the placeholders: a list for ?, a mapping for :name."
    )
    mode: Literal["auto", "query", "execute"] = Field(
        "auto",
        description="query: read-only, at most max_rows fetched; execute: rows ignored, committed; "
        "auto (default): rows if the statement returns any, committed.",
    )
    max_rows: int = Field(DEFAULT_MAX_ROWS, ge=1, le=MAX_ROWS)
    timeout: str | float = Field("60s", description="Time allowed for the statement.")
    transaction: bool = Field(
        True, description="Run in a transaction (false for VACUUM, CREATE DATABASE …)."
    )

    @field_validator("timeout")
    @classmethod
    def _valid_timeout(cls, value: str | float) -> str | float:
        if parse_duration(value) <= 0:
            raise ValueError("timeout must be more than 0")
        return value

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is empty")
        return value


class SqlOutput(BaseModel):
    rows: list[dict[str, Any]]
    columns: list[str]
    rowcount: int
    truncated: bool


class SqlAction(Action):
    name = "sql"
    version = "1"
    description = "Run a query or statement on a PostgreSQL, MariaDB/MySQL or SQLite connection."
    Input = SqlInput
    Output = SqlOutput

    async def execute(self, ctx: ActionContext, input: SqlInput) -> ActionResult:
        conn = ctx.connection(input.connection)
        dialect = _DIALECTS.get(conn.type)
        if dialect is None:
            raise ActionFailed(
                f"connection {conn.name!r} is of type {conn.type!r}; sql needs a postgres, "
                "mysql or sqlite connection",
                retryable=False,
            )
        config = _config(conn)
        try:
            translated = translate(input.query, dialect)
            params = bind(translated, input.params)
        except ParamError as exc:
            raise ActionFailed(f"sql: {exc}", retryable=False) from None
        job = Job(
            translated.sql, params, input.mode, input.transaction, input.max_rows,
            _time_left(ctx, parse_duration(input.timeout)), ctx.workdir,
        )  # fmt: skip
        ctx.log("system", f"sql: {input.mode} on {conn.name} ({conn.type})")
        outcome = await run_statement(dialect, config, job, conn.name)
        if outcome.truncated:
            ctx.log("system", f"sql: more than {input.max_rows} rows; the rest were left out")
        return ActionResult(
            outputs={
                "rows": outcome.rows,
                "columns": outcome.columns,
                "rowcount": outcome.rowcount,
                "truncated": outcome.truncated,
            }
        )


def _config(conn: Connection) -> Any:
    try:
        return conn.model()
    except PlaitError as exc:
        raise ActionFailed(f"connection {conn.name!r}: {exc}", retryable=False) from None


def _time_left(ctx: ActionContext, timeout: float) -> float:
    if ctx.deadline is None:
        return timeout
    left = ctx.deadline - time.time()
    if left <= 0:
        raise ActionFailed("sql: no time left before the step's deadline")
    return min(timeout, left)
