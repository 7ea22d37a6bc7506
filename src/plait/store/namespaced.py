"""Tables keyed by (namespace, name) whose rows hold a sealed value: secrets and
connections.

Both are written with an upsert that says whether the name was new, read and deleted by
their key (NotFound naming the kind of row), and listed in (namespace, name) order with
an opaque keyset cursor, restricted to the namespaces the caller may see. What differs —
how the value is sealed, which columns a record shows — stays with each store
(:mod:`plait.store.server_secrets`, :mod:`plait.store.server_connections`). The sealed
columns are re-sealed on ``plait secrets rotate-key`` with every other one
(:mod:`plait.store.rekey`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import Column, ColumnElement, Table, and_, or_, select

from plait.errors import NotFound, StoreError
from plait.store.base import Page
from plait.store.server_records import StorePart

Row = Mapping[Any, Any]

#: What every row has beside its value: its key, and who wrote it when.
KEYED = ("namespace", "name", "created_at", "updated_at", "created_by", "updated_by")


def keyed_columns(table: Table) -> tuple[Column[Any], ...]:
    """The :data:`KEYED` columns of ``table``."""
    return tuple(table.c[k] for k in KEYED)


def keyed_fields(row: Row) -> dict[str, Any]:
    """The :data:`KEYED` values of ``row``, as a record's fields."""
    return {k: row[k] for k in KEYED}


class NamespacedPart(StorePart):
    """The statements a store part over a (namespace, name)-keyed table shares."""

    def _stamped(self, namespace: str, name: str, actor: str | None) -> dict[str, Any]:
        """The key and the created/updated stamps of a row written now by ``actor``."""
        now = self._clock()
        return {
            "namespace": namespace,
            "name": name,
            "created_at": now,
            "updated_at": now,
            "created_by": actor,
            "updated_by": actor,
        }

    def _upsert_named(self, table: Table, row: Mapping[str, Any], changed: Iterable[str]) -> bool:
        """Create or replace ``row`` (``changed``: the columns a replace writes, with
        ``updated_at`` and ``updated_by``); True when it was created."""
        stmt = self._insert(table)
        # An upsert, so two first writes of one name race to "last one wins", not a 409.
        stmt = stmt.on_conflict_do_update(
            index_elements=["namespace", "name"],
            set_={k: stmt.excluded[k] for k in (*changed, "updated_at", "updated_by")},
        )
        with self._write() as conn:
            existed = conn.execute(
                select(table.c.name).where(_key(table, row["namespace"], row["name"]))
            ).first()
            conn.execute(stmt, row)
        return existed is None

    def _get_named(
        self, table: Table, columns: Iterable[Column[Any]], namespace: str, name: str, what: str
    ) -> Row:
        """The ``columns`` of ``namespace/name``; NotFound (``what`` … not found) if none."""
        with self._read() as conn:
            row = (
                conn.execute(select(*columns).where(_key(table, namespace, name)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"{what} {namespace}/{name} not found")
        return row

    def _delete_named(self, table: Table, namespace: str, name: str, what: str) -> None:
        with self._write() as conn:
            result = conn.execute(table.delete().where(_key(table, namespace, name)))
            if result.rowcount != 1:
                raise NotFound(f"{what} {namespace}/{name} not found")

    def _list_named(
        self,
        table: Table,
        columns: Iterable[Column[Any]],
        record: Callable[[Row], Any],
        namespace: str | None,
        namespaces: Collection[str] | None,
        cursor: str | None,
        limit: int,
    ) -> Page:
        """Records by (namespace, name), ``limit`` a page; ``namespaces`` restricts to
        those the caller may list (None: all)."""
        if namespaces is not None and not namespaces:
            return Page([], None)
        c = table.c
        query = select(*columns).order_by(c.namespace, c.name).limit(limit + 1)
        if namespace is not None:
            query = query.where(c.namespace == namespace)
        if namespaces is not None:
            query = query.where(c.namespace.in_(sorted(namespaces)))
        if cursor:
            ns, name = _decode(cursor)
            query = query.where(or_(c.namespace > ns, and_(c.namespace == ns, c.name > name)))
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        items = [record(r) for r in rows[:limit]]
        more = len(rows) > limit and items
        return Page(items, _encode(items[-1].namespace, items[-1].name) if more else None)


def _key(table: Table, namespace: str, name: str) -> ColumnElement[bool]:
    return and_(table.c.namespace == namespace, table.c.name == name)


def _encode(namespace: str, name: str) -> str:
    raw = json.dumps([namespace, name], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, str]:
    try:
        ns, name = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(ns), str(name)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise StoreError(f"invalid cursor {cursor!r}") from exc
