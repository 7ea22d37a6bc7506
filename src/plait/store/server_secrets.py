"""Secrets: written, listed by name, never read back through the API.

Values are sealed with the SQL store's sealer (AES-256-GCM under the keyring) before
they reach the database, so the database file never holds one in plain text. Only
:meth:`SecretStore.secret_values` unseals, for the runs that reference them.

Lookup order: a workflow in namespace ``ops`` asking for ``secrets.TOKEN`` gets
``ops/TOKEN`` if it exists, else ``*/TOKEN`` — the global namespace, for credentials
every namespace shares. Writing to ``*`` needs a global role binding.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import select

from plait.errors import StoreError
from plait.store.base import Page
from plait.store.namespaced import NamespacedPart, keyed_columns, keyed_fields
from plait.store.server_records import GLOBAL_NAMESPACE, SecretRecord
from plait.store.tables import secrets


class SecretStore(NamespacedPart):
    """Sealed secret values by (namespace, name); see the module docstring."""

    def put_secret(self, namespace: str, name: str, value: str, actor: str | None) -> bool:
        """Create or replace a secret; True when it was created."""
        if self._sealer is None:
            raise StoreError("the store has no key to encrypt secrets with")
        row = self._stamped(namespace, name, actor)
        row["sealed_value"] = self._sealer.seal(value.encode())
        return self._upsert_named(secrets, row, ["sealed_value"])

    def get_secret(self, namespace: str, name: str) -> SecretRecord:
        """A secret's metadata (never its value); NotFound if there is none."""
        return _secret(self._get_named(secrets, _META, namespace, name, "secret"))

    def delete_secret(self, namespace: str, name: str) -> None:
        self._delete_named(secrets, namespace, name, "secret")

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
        return self._list_named(secrets, _META, _secret, namespace, namespaces, cursor, limit)

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


_META = keyed_columns(secrets)


def _secret(row: Mapping[Any, Any]) -> SecretRecord:
    return SecretRecord(**keyed_fields(row))
