"""Connections: named, typed credential sets that steps refer to by name.

A row holds the connection's type, its public config (host, port, user …) as JSON and
its credential fields as one JSON object sealed with the store's sealer — the keyring
that seals secret values (:mod:`plait.store.server_secrets`), so the database never
holds a password in plain text and ``plait secrets rotate-key`` re-seals credentials
with everything else. The names of the credentials that are set are kept in the clear
(``secret_fields``): listings say *which* are set without unsealing anything.

Lookup for a run follows the secrets' rule: a workflow in namespace ``ops`` naming
``warehouse`` gets ``ops/warehouse`` if it exists, else ``*/warehouse`` (global).
:class:`StoreConnections` is that lookup as a
:class:`~plait.actions.connections.ConnectionSource` for the runtime.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from plait.store.base import Page
from plait.store.codec import seal_json, unseal_json
from plait.store.namespaced import NamespacedPart, keyed_columns, keyed_fields
from plait.store.server_records import GLOBAL_NAMESPACE
from plait.store.tables import connections

if TYPE_CHECKING:
    from plait.actions.connections import Connection, ConnectionTypes


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """A stored connection without its credentials: ``secret_fields`` names those set."""

    namespace: str
    name: str
    type: str
    config: Mapping[str, Any]
    secret_fields: tuple[str, ...]
    created_at: float
    updated_at: float
    created_by: str | None = None
    updated_by: str | None = None


@dataclass(frozen=True, slots=True)
class SealedConnection:
    """A stored connection with its credentials unsealed (only for runs and tests)."""

    record: ConnectionRecord
    secrets: Mapping[str, str] = field(repr=False)


class ConnectionStore(NamespacedPart):
    """Connections by (namespace, name); see the module docstring."""

    def put_connection(
        self,
        namespace: str,
        name: str,
        type_name: str,
        config: Mapping[str, Any],
        secrets: Mapping[str, str],
        actor: str | None,
    ) -> bool:
        """Create or replace a connection (``config`` public, ``secrets`` sealed here);
        True when it was created. Validation is the caller's: the store keeps what it
        is given."""
        sealed = seal_json(dict(secrets), self._sealer, f"connection {namespace}/{name}")
        assert sealed is not None
        row = self._stamped(namespace, name, actor)
        row.update(
            type=type_name,
            config=dict(config),
            secret_fields=sorted(secrets),
            sealed_secrets=sealed,
        )
        changed = ("type", "config", "secret_fields", "sealed_secrets")
        return self._upsert_named(connections, row, changed)

    def get_connection(self, namespace: str, name: str) -> ConnectionRecord:
        """A connection without its credentials; NotFound if there is none."""
        return _record(self._get_named(connections, _META, namespace, name, "connection"))

    def unsealed_connection(self, namespace: str, name: str) -> SealedConnection:
        """Exactly ``namespace/name`` with its credentials; NotFound if there is none."""
        columns = (*_META, connections.c.sealed_secrets)
        return self._unsealed(self._get_named(connections, columns, namespace, name, "connection"))

    def resolve_connection(self, namespace: str, name: str) -> SealedConnection | None:
        """The connection ``name`` for a workflow in ``namespace``: its own, else the
        global one (``*``); None if neither exists."""
        c = connections.c
        query = select(*_META, c.sealed_secrets).where(
            c.namespace.in_([namespace, GLOBAL_NAMESPACE]), c.name == name
        )
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        if not rows:
            return None
        own = [r for r in rows if r["namespace"] == namespace]
        return self._unsealed(own[0] if own else rows[0])

    def delete_connection(self, namespace: str, name: str) -> None:
        self._delete_named(connections, namespace, name, "connection")

    def list_connections(
        self,
        namespace: str | None = None,
        *,
        namespaces: Collection[str] | None = None,
        cursor: str | None = None,
        limit: int = 200,
    ) -> Page:
        """Connections (without credentials) by (namespace, name); ``namespaces``
        restricts to those the caller may list (None: all)."""
        return self._list_named(connections, _META, _record, namespace, namespaces, cursor, limit)

    def _unsealed(self, row: Mapping[Any, Any]) -> SealedConnection:
        where = f"connection {row['namespace']}/{row['name']}"
        opened = unseal_json(bytes(row["sealed_secrets"]), self._sealer, where) or {}
        return SealedConnection(_record(row), {str(k): str(v) for k, v in opened.items()})


class StoreConnections:
    """The runtime's :class:`~plait.actions.connections.ConnectionSource` over the
    store: the run's namespace, then the global one, credentials unsealed."""

    def __init__(self, store: ConnectionStore, types: ConnectionTypes | None = None) -> None:
        self._store = store
        self._types = types

    def get(self, namespace: str, name: str) -> Connection:
        from plait.actions.connections import UnknownConnection, make_connection

        found = self._store.resolve_connection(namespace, name)
        if found is None:
            raise UnknownConnection(
                f"no connection named {name!r} in namespace {namespace!r} or the global "
                f"namespace (create it with `plait connections set {namespace} {name}`)"
            )
        record = found.record
        return make_connection(name, record.type, record.config, found.secrets)


_META = (
    *keyed_columns(connections),
    connections.c.type,
    connections.c.config,
    connections.c.secret_fields,
)


def _record(row: Mapping[Any, Any]) -> ConnectionRecord:
    return ConnectionRecord(
        type=row["type"],
        config=dict(row["config"] or {}),
        secret_fields=tuple(row["secret_fields"] or ()),
        **keyed_fields(row),
    )


__all__ = ["ConnectionRecord", "ConnectionStore", "SealedConnection", "StoreConnections"]
