"""The audit log table: appending sealed entries in one linear chain, and reading them.

The hash chain (:mod:`plait.security.audit`) is only verifiable if entries are appended
one at a time, each after the one it links to. The append therefore reads the last
entry and inserts the next inside one write transaction that excludes every other
appender: on SQLite ``BEGIN IMMEDIATE`` of the store's single writer does that (across
processes too); on PostgreSQL a transaction-level advisory lock does, and the primary
key on ``seq`` is the backstop if anything ever bypassed the lock.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import RowMapping, select, text

from plait.errors import StoreError
from plait.security.audit import AuditEntry, AuditEvent, seal_entry
from plait.store.lite import StoreHooks as Hooks
from plait.store.tables import audit_log

# Any constant shared by every Plait process; "plaitaud" in ASCII, as a signed bigint.
_CHAIN_LOCK_KEY = 0x706C616974617564
_EXPORT_BATCH = 1000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which entries a listing returns; every field left ``None`` matches everything.

    ``action`` matches a prefix (``POST /api/v1/workflows`` also finds deploys of every
    workflow path below it); the others match exactly. ``since`` and ``until`` are epoch
    seconds, ``since`` inclusive and ``until`` exclusive.
    """

    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(key: int) -> str:
    """An opaque cursor for an integer sort key (clients must not build their own)."""
    return base64.urlsafe_b64encode(f"k{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The sort key inside a cursor; a cursor that was not made here is a StoreError."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("k"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise StoreError(f"invalid cursor {cursor!r}") from exc


def _entry(row: RowMapping) -> AuditEntry:
    return AuditEntry(
        seq=int(row["seq"]),
        at=float(row["at"]),
        actor=row["actor"],
        action=row["action"],
        resource=row["resource"],
        outcome=row["outcome"],
        source_ip=row["source_ip"],
        request_id=row["request_id"],
        details=dict(row["details"] or {}),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def _row(entry: AuditEntry) -> dict[str, Any]:
    fields = entry.fields()
    fields["prev_hash"] = entry.prev_hash
    fields["hash"] = entry.hash
    return fields


class AuditLog:
    """Append-only access to ``audit_log``; nothing here updates or deletes a row."""

    def __init__(self, hooks: Hooks, key: bytes | None = None) -> None:
        self._hooks = hooks
        self._key = key

    def append(self, event: AuditEvent) -> AuditEntry:
        """Seal ``event`` after the current last entry and store it; returns the entry."""
        with self._hooks.write() as conn:
            if self._hooks.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK_KEY})
            last = (
                conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(1))
                .mappings()
                .first()
            )
            entry = seal_entry(None if last is None else _entry(last), event, self._key)
            conn.execute(audit_log.insert(), _row(entry))
        return entry

    def entries(self, filter: AuditFilter, cursor: str | None, limit: int) -> Page[AuditEntry]:
        """Matching entries, newest first, ``limit`` per page."""
        c = audit_log.c
        query = select(audit_log).order_by(c.seq.desc()).limit(limit + 1)
        if filter.actor is not None:
            query = query.where(c.actor == filter.actor)
        if filter.action is not None:
            query = query.where(c.action.startswith(filter.action, autoescape=True))
        if filter.outcome is not None:
            query = query.where(c.outcome == filter.outcome)
        if filter.since is not None:
            query = query.where(c.at >= filter.since)
        if filter.until is not None:
            query = query.where(c.at < filter.until)
        if cursor:
            query = query.where(c.seq < decode_cursor(cursor))
        with self._hooks.read() as conn:
            rows = conn.execute(query).mappings().all()
        items = [_entry(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1].seq) if more and items else None)

    def export(self, after_seq: int = 0) -> Iterator[AuditEntry]:
        """Every entry after ``after_seq`` in chain order, read in batches so memory does
        not grow with the log (for JSON-lines export and ``verify_chain``)."""
        c = audit_log.c
        while True:
            query = select(audit_log).where(c.seq > after_seq).order_by(c.seq)
            with self._hooks.read() as conn:
                rows = conn.execute(query.limit(_EXPORT_BATCH)).mappings().all()
            for row in rows:
                yield _entry(row)
            if len(rows) < _EXPORT_BATCH:
                return
            after_seq = int(rows[-1]["seq"])
