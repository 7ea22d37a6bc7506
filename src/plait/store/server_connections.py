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

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select

from plait.errors import NotFound, StoreError
from plait.store.base import Page
from plait.store.codec import seal_json, unseal_json
from plait.store.server_records import GLOBAL_NAMESPACE, StorePart
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


class ConnectionStore(StorePart):
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
        now = self._clock()
        row = {
            "namespace": namespace,
            "name": name,
            "type": type_name,
            "config": dict(config),
            "secret_fields": sorted(secrets),
            "sealed_secrets": sealed,
            "created_at": now,
            "updated_at": now,
            "created_by": actor,
            "updated_by": actor,
        }
        stmt = self._insert(connections)
        # An upsert, so two first writes of one name race to "last one wins", not a 409.
        changed = ("type", "config", "secret_fields", "sealed_secrets", "updated_at", "updated_by")
        stmt = stmt.on_conflict_do_update(
            index_elements=["namespace", "name"], set_={k: stmt.excluded[k] for k in changed}
        )
        c = connections.c
        with self._write() as conn:
            existed = conn.execute(
                select(c.name).where(c.namespace == namespace, c.name == name)
            ).first()
            conn.execute(stmt, row)
        return existed is None

    def get_connection(self, namespace: str, name: str) -> ConnectionRecord:
        """A connection without its credentials; NotFound if there is none."""
        c = connections.c
        with self._read() as conn:
            row = (
                conn.execute(select(*_META).where(c.namespace == namespace, c.name == name))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"connection {namespace}/{name} not found")
        return _record(row)

    def unsealed_connection(self, namespace: str, name: str) -> SealedConnection:
        """Exactly ``namespace/name`` with its credentials; NotFound if there is none."""
        c = connections.c
        with self._read() as conn:
            row = (
                conn.execute(
                    select(*_META, c.sealed_secrets).where(c.namespace == namespace, c.name == name)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"connection {namespace}/{name} not found")
        return self._unsealed(row)

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
        c = connections.c
        with self._write() as conn:
            result = conn.execute(
                connections.delete().where(c.namespace == namespace, c.name == name)
            )
            if result.rowcount != 1:
                raise NotFound(f"connection {namespace}/{name} not found")

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
        if namespaces is not None and not namespaces:
            return Page([], None)
        c = connections.c
        query = select(*_META).order_by(c.namespace, c.name).limit(limit + 1)
        if namespace is not None:
            query = query.where(c.namespace == namespace)
        if namespaces is not None:
            query = query.where(c.namespace.in_(sorted(namespaces)))
        if cursor:
            ns, name = _decode(cursor)
            query = query.where(or_(c.namespace > ns, and_(c.namespace == ns, c.name > name)))
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        items = [_record(r) for r in rows[:limit]]
        more = len(rows) > limit and items
        return Page(items, _encode(items[-1].namespace, items[-1].name) if more else None)

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
    connections.c.namespace,
    connections.c.name,
    connections.c.type,
    connections.c.config,
    connections.c.secret_fields,
    connections.c.created_at,
    connections.c.updated_at,
    connections.c.created_by,
    connections.c.updated_by,
)


def _record(row: Mapping[Any, Any]) -> ConnectionRecord:
    return ConnectionRecord(
        namespace=row["namespace"],
        name=row["name"],
        type=row["type"],
        config=dict(row["config"] or {}),
        secret_fields=tuple(row["secret_fields"] or ()),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        created_by=row["created_by"],
        updated_by=row["updated_by"],
    )


def _encode(namespace: str, name: str) -> str:
    raw = json.dumps([namespace, name], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, str]:
    try:
        ns, name = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(ns), str(name)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise StoreError(f"invalid cursor {cursor!r}") from exc


__all__ = ["ConnectionRecord", "ConnectionStore", "SealedConnection", "StoreConnections"]
