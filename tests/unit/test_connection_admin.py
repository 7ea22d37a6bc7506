"""Managing connections without I/O: validation, kept credentials, masked and bounded
tests, and what is shown instead of credential values."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from plait.actions.connection_admin import (
    ConnectionConfigError,
    check_connection,
    describe_types,
    prepare,
    secret_status,
)
from plait.actions.connections import ConnectionConfig, ConnectionType, ConnectionTypes


class DbConfig(ConnectionConfig):
    host: str
    port: int = 5432
    password: SecretStr | None = None
    token: SecretStr | None = None


class Db(ConnectionType):
    name = "db"
    description = "A database (test type)."
    Config = DbConfig

    async def test(self, config: DbConfig) -> str:
        secret = config.password.get_secret_value() if config.password else ""
        if config.host == "refuses":
            raise PermissionError(f"password {secret} refused")
        if config.host == "hangs":
            await asyncio.sleep(30)
        return f"{config.host}:{config.port} answered"


@pytest.fixture
def types() -> ConnectionTypes:
    found = ConnectionTypes(entry_point_group=None)
    found.register(Db)
    return found


def test_prepare_splits_and_converts(types: ConnectionTypes) -> None:
    public, secret = prepare(types, "db", {"host": "h", "port": "6543", "password": "pw-1"})
    assert public == {"host": "h", "port": 6543}
    assert secret == {"password": "pw-1"}


def test_left_out_credentials_are_kept_and_null_clears(types: ConnectionTypes) -> None:
    stored = {"password": "pw-1", "token": "tok-1"}
    public, secret = prepare(types, "db", {"host": "new", "token": None}, "db", stored)
    assert public == {"host": "new", "port": 5432}
    assert secret == {"password": "pw-1"}
    _, other = prepare(types, "db", {"host": "new"}, "another-type", stored)
    assert other == {}


def test_every_bad_field_is_named_without_its_value(types: ConnectionTypes) -> None:
    with pytest.raises(ConnectionConfigError) as caught:
        prepare(types, "db", {"port": "x", "password": ["s3cr3t-list"], "colour": 1})
    locs = {tuple(p["loc"]) for p in caught.value.problems}
    assert locs == {("host",), ("port",), ("password",), ("colour",)}
    assert "s3cr3t-list" not in str(caught.value)
    assert str(caught.value).startswith("invalid db connection: ")


def test_check_answers_masks_and_is_bounded(types: ConnectionTypes) -> None:
    ok = asyncio.run(check_connection(types, "db", {"host": "h", "port": 1}, {}))
    assert (ok.ok, ok.message) == (True, "h:1 answered")
    refused = asyncio.run(
        check_connection(types, "db", {"host": "refuses"}, {"password": "pw-secret"})
    )
    assert (refused.ok, refused.message) == (False, "password *** refused")
    hung = asyncio.run(check_connection(types, "db", {"host": "hangs"}, {}, within=0.2))
    assert (hung.ok, hung.message) == (False, "no answer within 0.2s")
    unknown = asyncio.run(check_connection(types, "nope", {}, {}))
    assert unknown.ok is False
    assert "unknown connection type 'nope'" in unknown.message


def test_types_are_described_and_secrets_shown_as_set_or_not(types: ConnectionTypes) -> None:
    found, _ = describe_types(types)
    db = next(t for t in found if t["name"] == "db")
    assert db["secret_fields"] == ["password", "token"]
    assert set(db["schema"]["properties"]) == {"host", "port", "password", "token"}
    assert secret_status(types, "db", ["password"]) == {"password": True, "token": False}
    assert secret_status(types, "gone", ["key"]) == {"key": True}
