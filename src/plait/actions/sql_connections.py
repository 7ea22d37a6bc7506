"""The connection types of ``uses: sql``: ``postgres``, ``mysql`` (MariaDB too) and
``sqlite`` — what a connection of each holds, and how ``plait connections test`` checks it
(``SELECT 1`` and the server's version, through :mod:`plait.actions.sql_drivers`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from plait.actions.connections import ConnectionConfig, ConnectionType
from plait.actions.sql_drivers import check_connection
from plait.actions.sqlparams import Dialect


class PostgresConfig(ConnectionConfig):
    url: SecretStr | None = Field(
        None, description="postgresql://user:password@host:port/db?sslmode=… (a credential)"
    )
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    database: str | None = None
    user: str | None = None
    password: SecretStr | None = None
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        None
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: SecretStr | None) -> SecretStr | None:
        text = value.get_secret_value() if value is not None else ""
        if "://" in text and not text.startswith(("postgresql://", "postgres://")):
            raise ValueError("url must start with postgresql:// (or be key=value pairs)")
        return value


class MySqlConfig(ConnectionConfig):
    host: str = "localhost"
    port: int = Field(3306, ge=1, le=65535)
    database: str | None = None
    user: str | None = None
    password: SecretStr | None = None
    unix_socket: str | None = Field(None, description="A socket path instead of host/port.")
    ssl: bool = Field(False, description="Use TLS.")
    ssl_ca: str | None = Field(None, description="CA bundle (PEM file) to verify the server.")
    ssl_verify: bool = Field(True, description="Verify the server's certificate and name.")


class SqliteConfig(ConnectionConfig):
    path: str = Field(
        description="The database file; a relative path is in each run's work directory. "
        "`:memory:` is a fresh empty database per step."
    )
    create: bool = Field(False, description="Create the file when it does not exist.")
    read_only: bool = Field(False, description="Open the file read-only.")


class _SqlConnection(ConnectionType):
    """A database that ``plait connections test`` reaches with ``SELECT 1``."""

    dialect: ClassVar[Dialect]

    async def test(self, config: Any) -> str:
        return await asyncio.to_thread(check_connection, self.dialect, config, Path.cwd())


class PostgresConnection(_SqlConnection):
    name = dialect = "postgres"
    description = "A PostgreSQL database (url, or host/port/database/user/password)."
    Config = PostgresConfig


class MySqlConnection(_SqlConnection):
    name = dialect = "mysql"
    description = "A MariaDB or MySQL database."
    Config = MySqlConfig


class SqliteConnection(_SqlConnection):
    name = dialect = "sqlite"
    description = "An SQLite database file."
    Config = SqliteConfig

    async def test(self, config: SqliteConfig) -> str:
        if config.path != ":memory:" and not Path(config.path).is_absolute():
            import sqlite3

            return (
                f"SQLite {sqlite3.sqlite_version}; {config.path} is relative to each run's "
                "work directory (not opened here)"
            )
        return await super().test(config)
