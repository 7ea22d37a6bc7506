"""Connections: named, typed credential sets that actions refer to by name.

A connection type is a class with a ``name``, a ``description``, a pydantic ``Config``
model (fields typed ``SecretStr`` are credentials: stored sealed, never shown back, and
masked in every log) and ``async test(config) -> str`` that proves the connection works
(a ``SELECT 1``, an SMTP ``NOOP``, a broker handshake) and says what it reached.
Built-in types are listed in :data:`BUILTIN_TYPES` and imported on first use;
third-party packages register more under the ``plait.connections`` entry point group.

A step names a connection in its ``with:`` (``connection: warehouse``); the action asks
``ctx.connection("warehouse")`` and gets a :class:`Connection` whose ``config`` holds
plain values (credentials revealed — the runtime has already added them to the run's
masking). Where connections come from is a :class:`ConnectionSource`: the server's
encrypted store, or for ``plait run`` the local home store and ``PLAIT_CONNECTION_<NAME>``
environment variables holding JSON (``{"type": "postgres", "url": "..."}``).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from plait.errors import PlaitError

ENTRY_POINT_GROUP = "plait.connections"

#: type name -> "module:Class", imported on first use
BUILTIN_TYPES: dict[str, str] = {
    "http": "plait.actions.http:HttpConnection",
    "smtp": "plait.actions.email:SmtpConnection",
    "postgres": "plait.actions.sql_connections:PostgresConnection",
    "mysql": "plait.actions.sql_connections:MySqlConnection",
    "sqlite": "plait.actions.sql_connections:SqliteConnection",
    "git": "plait.actions.git:GitConnection",
    "s3": "plait.actions.s3:S3Connection",
    "rabbitmq": "plait.actions.brokers:RabbitMqConnection",
    "redis": "plait.actions.brokers:RedisConnection",
    "nats": "plait.actions.brokers:NatsConnection",
    "mqtt": "plait.actions.brokers:MqttConnection",
    "llm": "plait.actions.llm:LlmConnection",
}


class ConnectionConfig(BaseModel):
    """Base for connection configs: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ConnectionType:
    """Base class of connection types."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[BaseModel]] = ConnectionConfig

    async def test(self, config: Any) -> str:
        """Reach the other side with ``config`` (an instance of ``Config``); return a
        short description of what answered; raise with a clear message if it fails."""
        raise NotImplementedError

    @classmethod
    def schema(cls) -> dict[str, Any]:
        return cls.Config.model_json_schema()

    @classmethod
    def secret_fields(cls) -> list[str]:
        return [
            name
            for name, info in cls.Config.model_fields.items()
            if info.annotation is SecretStr or info.annotation == (SecretStr | None)
        ]


@dataclass(frozen=True)
class Connection:
    """A resolved connection: ``config`` holds plain values (secrets revealed)."""

    name: str
    type: str
    config: Mapping[str, Any]
    #: the values of the credential fields (what the runtime masks)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def model(self, types: ConnectionTypes | None = None) -> Any:
        """``config`` validated into its type's ``Config`` model."""
        return (types or default_types()).parse(self.type, dict(self.config))


class ConnectionSource(Protocol):
    def get(self, namespace: str, name: str) -> Connection:
        """The connection ``name`` of ``namespace`` (falling back to the global ``*``);
        :class:`UnknownConnection` if there is none."""
        ...


class UnknownConnection(PlaitError):
    pass


class ConnectionTypes:
    """Connection type classes by name (built-ins imported on first use)."""

    def __init__(self, *, entry_point_group: str | None = ENTRY_POINT_GROUP) -> None:
        self._lazy = dict(BUILTIN_TYPES)
        self._classes: dict[str, type[ConnectionType]] = {}
        self._group = entry_point_group
        self._loaded = entry_point_group is None

    def get(self, name: str) -> type[ConnectionType]:
        cls = self._classes.get(name)
        if cls is not None:
            return cls
        if name in self._lazy:
            module, _, attr = self._lazy[name].partition(":")
            found: type[ConnectionType] = getattr(importlib.import_module(module), attr)
            self._classes[name] = found
            del self._lazy[name]  # only now: a failed import stays known, and says why
            return found
        if not self._loaded:
            self._load_entry_points()
            if name in self._classes:
                return self._classes[name]
        raise PlaitError(f"unknown connection type {name!r} (known: {', '.join(self.names())})")

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted({*self._lazy, *self._classes})

    def register(self, cls: type[ConnectionType]) -> None:
        self._lazy.pop(cls.name, None)
        self._classes[cls.name] = cls

    def parse(self, type_name: str, config: Mapping[str, Any]) -> Any:
        """Validate ``config`` for ``type_name``; PlaitError naming every bad field."""
        cls = self.get(type_name)
        try:
            return cls.Config.model_validate(dict(config))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                for e in exc.errors()
            )
            raise PlaitError(f"invalid {type_name} connection: {problems}") from None

    def split(
        self, type_name: str, config: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """``config`` validated and split into public fields and credential fields."""
        model = self.parse(type_name, config)
        secret_names = set(self.get(type_name).secret_fields())
        public: dict[str, Any] = {}
        secret: dict[str, str] = {}
        for key, value in model.model_dump(exclude_none=True, mode="json").items():
            if key in secret_names:
                raw = getattr(model, key)
                secret[key] = raw.get_secret_value() if isinstance(raw, SecretStr) else str(raw)
            else:
                public[key] = value
        return public, secret

    def _load_entry_points(self) -> None:
        if self._loaded or self._group is None:
            return
        self._loaded = True
        for entry_point in metadata.entry_points(group=self._group):
            if entry_point.name in self._lazy or entry_point.name in self._classes:
                continue
            try:
                cls = entry_point.load()
            except Exception:  # a broken plugin must not break the others
                continue
            if isinstance(cls, type) and issubclass(cls, ConnectionType):
                self._classes[entry_point.name] = cls


_DEFAULT: ConnectionTypes | None = None


def default_types() -> ConnectionTypes:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ConnectionTypes()
    return _DEFAULT


def make_connection(
    name: str, type_name: str, public: Mapping[str, Any], secret: Mapping[str, str]
) -> Connection:
    return Connection(
        name=name,
        type=type_name,
        config={**public, **secret},
        secrets=tuple(v for v in secret.values() if v),
    )


class EnvConnections:
    """Connections from ``PLAIT_CONNECTION_<NAME>`` variables holding JSON with a
    ``type`` key (the name upper-cased, ``-`` and ``.`` as ``_``)."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, types: ConnectionTypes | None = None
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._types = types

    def get(self, namespace: str, name: str) -> Connection:
        var = "PLAIT_CONNECTION_" + name.upper().replace("-", "_").replace(".", "_")
        raw = self._environ.get(var)
        if raw is None:
            raise UnknownConnection(
                f"no connection named {name!r} (create it with `plait connections set` "
                f"or set {var})"
            )
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise PlaitError(f"{var} is not JSON: {exc.msg}") from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise PlaitError(f'{var} must be a JSON object with a "type"')
        type_name = data.pop("type")
        public, secret = (self._types or default_types()).split(type_name, data)
        return make_connection(name, type_name, public, secret)


class ChainedConnections:
    """The first source that knows the name wins."""

    def __init__(self, *sources: ConnectionSource) -> None:
        self._sources = sources

    def get(self, namespace: str, name: str) -> Connection:
        last: UnknownConnection | None = None
        for source in self._sources:
            try:
                return source.get(namespace, name)
            except UnknownConnection as exc:
                last = exc
        raise last or UnknownConnection(f"no connection named {name!r}")
