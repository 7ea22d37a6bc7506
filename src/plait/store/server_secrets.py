"""Secrets: written, listed by name, never read back through the API.

Values are sealed with the SQL store's sealer (AES-256-GCM under the keyring) before
they reach the database, so the database file never holds one in plain text. Only
:meth:`SecretStore.secret_values` unseals, for the runs that reference them.

Lookup order: a workflow in namespace ``ops`` asking for ``secrets.TOKEN`` gets
``ops/TOKEN`` if it exists, else ``*/TOKEN`` — the global namespace, for credentials
every namespace shares. Writing to ``*`` needs a global role binding.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import and_, or_, select

from plait.errors import NotFound, StoreError
from plait.store.base import Page
from plait.store.server_records import GLOBAL_NAMESPACE, SecretRecord, StorePart
from plait.store.tables import secrets


class SecretStore(StorePart):
    """Sealed secret values by (namespace, name); see the module docstring."""

    def put_secret(self, namespace: str, name: str, value: str, actor: str | None) -> bool:
        """Create or replace a secret; True when it was created."""
        if self._sealer is None:
            raise StoreError("the store has no key to encrypt secrets with")
        sealed = self._sealer.seal(value.encode())
        now = self._clock()
        c = secrets.c
        row = {
            "namespace": namespace,
            "name": name,
            "sealed_value": sealed,
            "created_at": now,
            "updated_at": now,
            "created_by": actor,
            "updated_by": actor,
        }
        stmt = self._insert(secrets)
        # An upsert, so two first writes of one name race to "last one wins", not a 409.
        stmt = stmt.on_conflict_do_update(
            index_elements=["namespace", "name"],
            set_={k: stmt.excluded[k] for k in ("sealed_value", "updated_at", "updated_by")},
        )
        with self._write() as conn:
            existed = conn.execute(
                select(c.name).where(c.namespace == namespace, c.name == name)
            ).first()
            conn.execute(stmt, row)
        return existed is None

    def get_secret(self, namespace: str, name: str) -> SecretRecord:
        """A secret's metadata (never its value); NotFound if there is none."""
        c = secrets.c
        with self._read() as conn:
            row = (
                conn.execute(select(*_META).where(c.namespace == namespace, c.name == name))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"secret {namespace}/{name} not found")
        return _secret(row)

    def delete_secret(self, namespace: str, name: str) -> None:
        c = secrets.c
        with self._write() as conn:
            result = conn.execute(secrets.delete().where(c.namespace == namespace, c.name == name))
            if result.rowcount != 1:
                raise NotFound(f"secret {namespace}/{name} not found")

    def list_secrets(
        self,
        namespace: str | None = None,
        *,
        namespaces: Collection[str] | None = None,
        cursor: str | None = None,
        limit: int = 200,
    ) -> Page:
        """Secret names and metadata by (namespace, name); ``namespaces`` restricts to
        those the caller may list (None: all)."""
        if namespaces is not None and not namespaces:
            return Page([], None)
        c = secrets.c
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
        items = [_secret(r) for r in rows[:limit]]
        more = len(rows) > limit and items
        return Page(items, _encode(items[-1].namespace, items[-1].name) if more else None)

    def secret_values(self, namespace: str, names: Iterable[str]) -> dict[str, str]:
        """The values of ``names`` for a workflow in ``namespace``: its own namespace
        first, then the global one (``*``). Names with no secret are left out."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        c = secrets.c
        query = select(c.namespace, c.name, c.sealed_value).where(
            c.namespace.in_([namespace, GLOBAL_NAMESPACE]), c.name.in_(wanted)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        if rows and self._sealer is None:
            raise StoreError("secrets are encrypted but the store has no key")
        found: dict[str, str] = {}
        # Global first, so the namespace's own value overwrites it.
        for ns, name, sealed in sorted(rows, key=lambda r: r[0] != GLOBAL_NAMESPACE):
            found[name] = self._unseal(ns, name, sealed)
        return found

    def _unseal(self, namespace: str, name: str, sealed: bytes) -> str:
        assert self._sealer is not None
        try:
            return self._sealer.unseal(bytes(sealed)).decode()
        except Exception as exc:  # wrong key or corrupt data: the sealer's own errors
            raise StoreError(f"cannot decrypt secret {namespace}/{name}: {exc}") from exc


_META = (
    secrets.c.namespace,
    secrets.c.name,
    secrets.c.created_at,
    secrets.c.updated_at,
    secrets.c.created_by,
    secrets.c.updated_by,
)


def _secret(row: Mapping[Any, Any]) -> SecretRecord:
    return SecretRecord(
        namespace=row["namespace"],
        name=row["name"],
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
