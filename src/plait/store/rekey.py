"""Re-encrypting every sealed value of the store under the keyring's current key.

After ``plait secrets rotate-key`` adds a key, values sealed under older keys stay
readable (every key of the ring unseals) but are still protected only by the old key.
:func:`reseal` rewrites each of them under the current key, in small batches, while
other processes keep working:

* **Every sealed column** is found from the schema: by convention every ``LargeBinary``
  column of :mod:`plait.store.tables` holds sealed values (``runs.sealed_inputs``,
  ``steps.sealed_outputs``, ``secrets.sealed_value``, ``connections.sealed_secrets``
  and any added later), so a new sealed column is covered without changing this
  module. Empty values (``b""``: an
  empty mapping, which needs no key) and NULL are left alone.
* **Only stale values are read**: the key id is in the clear header of a sealed value,
  so the database selects the values whose header is not the current key's. A second
  run, or a run after an interruption, therefore continues where the last one stopped:
  the progress is the data itself, no bookkeeping is needed.
* **No lost update**: each value is written back with compare-and-set on its old bytes,
  so a row that a worker rewrote meanwhile is left as the worker wrote it (and picked
  up by the next pass if it is still stale).

:class:`ReloadingKeyring` lets running processes learn a key added by another process
without a restart (see its docstring).
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Column, LargeBinary, Table, and_, func, inspect, literal, select, tuple_

from plait.errors import PlaitError
from plait.security.crypto import FORMAT_VERSION, CryptoError, Keyring
from plait.store.sql import SqlStore
from plait.store.tables import metadata

logger = logging.getLogger(__name__)

BATCH = 500
MAX_PASSES = 3
#: The longest possible header (format byte, length byte, 255 bytes of key id).
_MAX_HEADER = 257


class RekeyError(PlaitError):
    """A rotation step cannot proceed (for example, retiring a key still in use)."""


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """A column of sealed values and the primary key that addresses its rows."""

    table: Table
    column: Column[Any]

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.column.name}"

    @property
    def key_columns(self) -> list[Column[Any]]:
        return list(self.table.primary_key.columns)


@dataclass(slots=True)
class ColumnReport:
    """What :func:`reseal` did to one column."""

    resealed: int = 0
    changed_meanwhile: int = 0
    failed: list[str] = field(default_factory=list)
    remaining: int = 0


@dataclass(slots=True)
class ResealReport:
    key_id: str
    columns: dict[str, ColumnReport] = field(default_factory=dict)

    @property
    def resealed(self) -> int:
        return sum(c.resealed for c in self.columns.values())

    @property
    def remaining(self) -> int:
        return sum(c.remaining for c in self.columns.values())

    @property
    def failed(self) -> list[str]:
        return [f for c in self.columns.values() for f in c.failed]


def header(key_id: str) -> bytes:
    """The clear header every value sealed under ``key_id`` starts with."""
    encoded = key_id.encode("utf-8")
    return bytes([FORMAT_VERSION, len(encoded)]) + encoded


def sealed_columns(store: SqlStore) -> list[SealedColumn]:
    """Every ``LargeBinary`` column of the schema whose table exists in this database."""
    with store._hooks.read() as conn:
        present = set(inspect(conn).get_table_names())
    return [
        SealedColumn(table, column)
        for table in metadata.sorted_tables
        if table.name in present
        for column in table.columns
        if isinstance(column.type, LargeBinary)
    ]


def _prefix(col: Column[Any], size: int) -> Any:
    return func.substr(col, 1, size, type_=LargeBinary)


def _sealed(col: Column[Any]) -> Any:
    return and_(col.is_not(None), func.length(col) > 0)


def _stale(col: Column[Any], key_id: str) -> Any:
    current = header(key_id)
    return and_(_sealed(col), _prefix(col, len(current)) != literal(current, LargeBinary))


def key_usage(store: SqlStore, keyring: Keyring) -> dict[str, dict[str, int]]:
    """How many sealed values each key id of the ring seals, per column; values under a
    key the ring does not know are counted under ``"?"``."""
    usage: dict[str, dict[str, int]] = {}
    with store._hooks.read() as conn:
        for sc in sealed_columns(store):
            col = sc.column
            total = conn.execute(select(func.count()).where(_sealed(col))).scalar_one()
            counts: dict[str, int] = {}
            for key_id in keyring.key_ids:
                h = header(key_id)
                query = select(func.count()).where(
                    _sealed(col), _prefix(col, len(h)) == literal(h, LargeBinary)
                )
                counts[key_id] = int(conn.execute(query).scalar_one())
            unknown = int(total) - sum(counts.values())
            if unknown:
                counts["?"] = unknown
            usage[sc.name] = {k: v for k, v in counts.items() if v}
    return usage


def reseal(
    store: SqlStore,
    keyring: Keyring,
    *,
    batch: int = BATCH,
    progress: Callable[[str, int], None] | None = None,
) -> ResealReport:
    """Re-encrypt every value not sealed under ``keyring.current_key_id``.

    Passes repeat (up to :data:`MAX_PASSES`) while a pass found work, so values that
    processes still sealing under an old key wrote meanwhile are caught; what is left
    is counted in ``remaining`` and a later call continues."""
    report = ResealReport(key_id=keyring.current_key_id)
    for sc in sealed_columns(store):
        col_report = ColumnReport()
        report.columns[sc.name] = col_report
        for _ in range(MAX_PASSES):
            before = col_report.resealed + col_report.changed_meanwhile
            _reseal_pass(store, keyring, sc, col_report, batch, progress)
            if col_report.resealed + col_report.changed_meanwhile == before:
                break
        col_report.remaining = _count_stale(store, sc, keyring.current_key_id)
    return report


def _count_stale(store: SqlStore, sc: SealedColumn, key_id: str) -> int:
    with store._hooks.read() as conn:
        query = select(func.count()).select_from(sc.table).where(_stale(sc.column, key_id))
        return int(conn.execute(query).scalar_one())


def _reseal_pass(
    store: SqlStore,
    keyring: Keyring,
    sc: SealedColumn,
    report: ColumnReport,
    batch: int,
    progress: Callable[[str, int], None] | None,
) -> None:
    failed: set[str] = set(report.failed)
    for rows in _stale_batches(store, sc, keyring.current_key_id, batch):
        updates: list[tuple[tuple[Any, ...], bytes, bytes]] = []
        for *pk, old in rows:
            where = f"{sc.name} {tuple(pk)!r}"
            try:
                new = keyring.seal(keyring.unseal(bytes(old)))
            except CryptoError as exc:
                if where not in failed:
                    failed.add(where)
                    report.failed.append(f"{where}: {exc}")
                continue
            updates.append((tuple(pk), bytes(old), new))
        done = _write_back(store, sc, updates)
        report.resealed += done
        report.changed_meanwhile += len(updates) - done
        if progress is not None and done:
            progress(sc.name, done)


def _stale_batches(
    store: SqlStore, sc: SealedColumn, key_id: str, batch: int
) -> Iterator[list[tuple[Any, ...]]]:
    """Stale rows as ``(*primary key, sealed)`` in key order, ``batch`` at a time."""
    keys = sc.key_columns
    last: tuple[Any, ...] | None = None
    while True:
        query = select(*keys, sc.column).where(_stale(sc.column, key_id))
        if last is not None:
            query = query.where(tuple_(*keys) > tuple_(*[literal(v) for v in last]))
        query = query.order_by(*keys).limit(batch)
        with store._hooks.read() as conn:
            rows = [tuple(r) for r in conn.execute(query).all()]
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        last = rows[-1][: len(keys)]


def _write_back(
    store: SqlStore, sc: SealedColumn, updates: list[tuple[tuple[Any, ...], bytes, bytes]]
) -> int:
    """Write each new value where the old one is still in place; returns how many."""
    if not updates:
        return 0
    keys = sc.key_columns
    done = 0
    with store._hooks.write() as conn:
        for pk, old, new in updates:
            match = [k == v for k, v in zip(keys, pk, strict=True)]
            stmt = (
                sc.table.update()
                .where(*match, sc.column == literal(old, LargeBinary))
                .values({sc.column.name: new})
            )
            done += conn.execute(stmt).rowcount
    return done


def retire_old_keys(store: SqlStore, keyring: Keyring) -> list[str]:
    """Drop every key but the current one from the key file, once no value uses them.

    The dropped keys are kept in ``secret.key.retired-<time>`` next to the key file (a
    process that was not restarted may still seal under them for a while); destroy that
    file when every process runs with the new key file. Returns the dropped ids."""
    if keyring.from_env or keyring.path is None:
        raise RekeyError(
            "the keys come from PLAIT_SECRET_KEY: remove the old `id:base64` items there "
            "and restart every process"
        )
    current = keyring.current_key_id
    in_use: dict[str, int] = {}
    for counts in key_usage(store, keyring).values():
        for key_id, n in counts.items():
            if key_id != current:
                in_use[key_id] = in_use.get(key_id, 0) + n
    if in_use:
        used = ", ".join(f"key {k}: {n} value(s)" for k, n in sorted(in_use.items()))
        raise RekeyError(
            f"old keys still seal values ({used}); run `plait secrets rotate-key "
            "--reseal-only` (after restarting processes that still seal with them)"
        )
    old = [k for k in keyring.key_ids if k != current]
    if not old:
        return []
    raw = _raw_keys(keyring)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    retired = Keyring({k: raw[k] for k in old})
    retired.save(keyring.path.with_name(f"{keyring.path.name}.retired-{stamp}"))
    Keyring({current: raw[current]}).save(keyring.path)
    return old


def _raw_keys(keyring: Keyring) -> dict[str, bytes]:
    """The keys by id, from their documented ``id:base64`` text form."""
    pairs = (item.rpartition(":") for item in keyring.to_text().split(","))
    return {key_id: base64.b64decode(encoded) for key_id, _, encoded in pairs}


class ReloadingKeyring(Keyring):
    """A file keyring that picks up keys another process added to the key file.

    * Unsealing a value under a key id it does not know re-reads the key file first, so
      a value re-sealed by ``plait secrets rotate-key`` stays readable by every running
      process: the rotation needs no restart and causes no downtime.
    * Sealing checks the key file's modification time at most every ``interval``
      seconds, so a running process starts sealing with the new key soon after a
      rotation (and the re-seal converges).

    Keys are only ever added, never dropped: a retired key stays in memory until the
    process restarts. Keys from ``PLAIT_SECRET_KEY`` are never reloaded.
    """

    interval = 5.0

    def __init__(self, keys: Mapping[str, bytes], *, path: Path | None = None) -> None:
        super().__init__(keys, path=path)
        self._reload_lock = threading.Lock()
        self._checked = time.monotonic()
        self._mtime = _mtime(path)

    def seal(self, plaintext: bytes) -> bytes:
        if time.monotonic() - self._checked > self.interval:
            self._checked = time.monotonic()
            if _mtime(self.path) != self._mtime:
                self.reload()
        return super().seal(plaintext)

    def unseal(self, sealed: bytes) -> bytes:
        try:
            return super().unseal(sealed)
        except CryptoError:
            if self.key_id_of(sealed) in self.key_ids or not self.reload():
                raise
        return super().unseal(sealed)

    def reload(self) -> bool:
        """Add the keys of the key file this ring lacks; True if it added any."""
        if self.from_env or self.path is None:
            return False
        with self._reload_lock:
            self._mtime = _mtime(self.path)
            try:
                fresh = _raw_keys(Keyring.from_file(self.path))
            except CryptoError as exc:
                logger.warning("cannot reload the key file: %s", exc)
                return False
            added = [k for k in fresh if k not in self.key_ids]
            for key_id in added:
                self._add(key_id, fresh[key_id])
        if added:
            logger.info("loaded key(s) %s from %s", ", ".join(added), self.path)
        return bool(added)


def _mtime(path: Path | None) -> float | None:
    try:
        return None if path is None else os.stat(path).st_mtime
    except OSError:
        return None
