"""Reading a consistent snapshot of the store: every row, or what changed since a parent.

Every backup records, besides its data, an **index**: for each row of the indexed
tables, its primary key and a fingerprint of its values. An incremental backup compares
the store with its parent's index instead of trusting timestamps, because timestamps
are not enough: they come from the clocks of many machines in a cluster, some changes
touch old rows in place (``plait runs redact`` rewrites finished runs), and deletions
leave no row to carry a time at all. What each table gets:

* ``runs`` and what hangs off a run (``steps``, ``attempts``, ``logs``, the run's
  ``events``): a run is copied whole — its row and every child row — when it is new,
  when its row changed, when it has not finished (its steps and logs may still move
  without the run row changing), or when it finished less than ten minutes before the
  parent backup (log lines written just after the last commit). A run in the parent's
  index that is gone is recorded as deleted. The child tables themselves are not
  indexed: they are far larger than ``runs`` and only change with their run.
* ``audit_log``: append-only and hash-chained: the entries after the parent's last one.
  The entry the parent ended on must still be there unchanged, or the log is not the
  one the parent saw and the incremental is refused (take a full backup).
* every other table (workflows and their versions, users, tokens, schedules, secrets,
  connections, published events, and any table added later): by the index — new and
  changed rows are copied, and the keys of deleted rows are recorded.

So an incremental backup restores to exactly the rows the store held when it was taken;
``plait backup verify`` checks that by comparing row counts after a test restore.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, select

from plait.engine.state import RunStatus
from plait.ops.backup_errors import BadBackup
from plait.ops.backup_manifest import Manifest
from plait.ops.backup_rows import (
    BATCH,
    RowsWriter,
    TableSpec,
    count_rows,
    digest,
    encode,
    key_of,
    line,
    read_counters,
    select_rows,
    stream,
    table_specs,
)

Mode = Literal["all", "index", "diff"]
ROOT = "runs"
CHILDREN = ("steps", "attempts", "logs", "events")
AUDIT = "audit_log"
#: runs that finished this long before the parent backup are copied again
RECENT = 600.0
_TERMINAL = frozenset(str(s) for s in RunStatus if s.terminal)


class ChainMismatch(BadBackup):
    """The store is not the one the parent backup was taken of (or its audit log was
    rewritten): an incremental backup cannot build on that parent."""


@dataclass
class Parent:
    """What an incremental backup builds on: the parent's manifest and index."""

    manifest: Manifest
    index: dict[str, dict[str, str]]


@dataclass
class ScanResult:
    tables: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    audit_head: tuple[int, str] | None = None
    changes: dict[str, dict[str, int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def index_rel(table: str) -> str:
    return f"index/{table}.jsonl.gz"


def rows_rel(table: str) -> str:
    return f"rows/{table}.jsonl.gz"


def deleted_rel(table: str) -> str:
    return f"deleted/{table}.jsonl.gz"


def load_index(folder: Path, manifest: Manifest) -> dict[str, dict[str, str]]:
    """A backup's index, by table (files already checked against the manifest)."""
    out: dict[str, dict[str, str]] = {}
    for entry in manifest.files:
        if not entry.path.startswith("index/"):
            continue
        with gzip.open(folder / entry.path, "rt", encoding="utf-8") as fh:
            header = json.loads(fh.readline())
            out[str(header["table"])] = dict(json.loads(ln) for ln in fh)
    return out


class _Files:
    """The rows, deleted and index files of one backup, opened on first write."""

    def __init__(self, out: Path, result: ScanResult) -> None:
        self.out = out
        self.result = result
        self.writers: dict[str, RowsWriter] = {}

    def writer(self, rel: str, header: dict[str, Any]) -> RowsWriter:
        found = self.writers.get(rel)
        if found is None:
            found = self.writers[rel] = RowsWriter(self.out / rel, header)
            self.result.files.append(rel)
        return found

    def rows(self, spec: TableSpec) -> RowsWriter:
        return self.writer(rows_rel(spec.name), spec.header())

    def index(self, spec: TableSpec) -> RowsWriter:
        return self.writer(index_rel(spec.name), {"table": spec.name, "index": True})

    def deleted(self, spec: TableSpec) -> RowsWriter:
        header = {"table": spec.name, "columns": [c.name for c in spec.key], "deleted": True}
        return self.writer(deleted_rel(spec.name), header)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def _index_filter(spec: TableSpec) -> Any | None:
    """Which rows of a table the index covers: None for tables it does not cover."""
    if spec.name == "events":
        return spec.table.c.run_id.is_(None)  # published events; a run's go with the run
    if spec.name in CHILDREN or spec.name == AUDIT:
        return None
    return True


def scan(conn: Connection, out: Path, mode: Mode, parent: Parent | None = None) -> ScanResult:
    """Read the snapshot ``conn`` is in and write the backup's row files into ``out``:
    ``all`` rows (a logical full backup), only the ``index`` (beside a native copy), or
    the ``diff`` against ``parent`` (an incremental backup)."""
    specs = table_specs(conn)
    result = ScanResult()
    files = _Files(out, result)
    try:
        result.audit_head = audit_head(conn, specs)
        if mode == "diff":
            assert parent is not None
            _check_audit(conn, specs, parent)
        touched: list[str] = []
        for spec in specs:
            if mode == "all":
                _copy_all(conn, spec, files)
            elif mode == "diff" and spec.name == ROOT:
                assert parent is not None
                touched = _diff_runs(conn, spec, files, parent)
                continue
            elif mode == "diff" and spec.name in CHILDREN:
                _copy_children(conn, spec, files, touched)
            elif mode == "diff" and spec.name == AUDIT:
                _copy_audit_tail(conn, spec, files, parent)
            if _index_filter(spec) is not None:
                _index(conn, spec, files, parent if mode == "diff" else None)
        result.tables = {s.name: count_rows(conn, s) for s in specs}
        result.counters = read_counters(conn, specs)
    finally:
        files.close()
    if mode == "diff":
        result.changes = _changes(files)
    return result


def _changes(files: _Files) -> dict[str, dict[str, int]]:
    changes: dict[str, dict[str, int]] = {}
    for rel, writer in files.writers.items():
        kind, _, name = rel.partition("/")
        if kind in ("rows", "deleted"):
            table = name.removesuffix(".jsonl.gz")
            changes.setdefault(table, {"rows": 0, "deleted": 0})[kind] = writer.count
    return changes


def _copy_all(conn: Connection, spec: TableSpec, files: _Files) -> None:
    writer = files.rows(spec)
    for row in stream(conn, select_rows(spec)):
        writer.write(line(encode(spec, row)))


def _index_rows(conn: Connection, spec: TableSpec) -> Iterator[tuple[list[Any], str, str]]:
    """The indexed rows: encoded values, key, JSON line."""
    query = select_rows(spec)
    where = _index_filter(spec)
    if where is not None and where is not True:
        query = query.where(where)
    for row in stream(conn, query):
        values = encode(spec, row)
        yield values, key_of(spec, values), line(values)


def _index(conn: Connection, spec: TableSpec, files: _Files, parent: Parent | None) -> None:
    """Write the table's index; with a parent, also its new, changed and deleted rows."""
    before = dict(parent.index.get(spec.name, {})) if parent is not None else None
    for _values, key, text in _index_rows(conn, spec):
        fingerprint = digest(text)
        files.index(spec).write(line([key, fingerprint]))
        if before is not None and before.pop(key, None) != fingerprint:
            files.rows(spec).write(text)
    if before:
        deleted = files.deleted(spec)
        for key in before:
            deleted.write(key)


def _diff_runs(conn: Connection, spec: TableSpec, files: _Files, parent: Parent) -> list[str]:
    """Index every run; copy the runs an incremental must hold; returns their ids."""
    names = spec.names
    at_status, at_finished = names.index("status"), names.index("finished_at")
    recent = parent.manifest.created_at - RECENT
    before = dict(parent.index.get(spec.name, {}))
    touched: list[str] = []
    for values, key, text in _index_rows(conn, spec):
        fingerprint = digest(text)
        files.index(spec).write(line([key, fingerprint]))
        finished = values[at_finished]
        if (
            before.pop(key, None) != fingerprint
            or values[at_status] not in _TERMINAL
            or finished is None
            or finished >= recent
        ):
            files.rows(spec).write(text)
            touched.append(values[spec.key_positions[0]])
    if before:
        deleted = files.deleted(spec)
        for key in before:
            deleted.write(key)
    return touched


def _copy_children(conn: Connection, spec: TableSpec, files: _Files, run_ids: list[str]) -> None:
    if not run_ids:
        return
    writer = files.rows(spec)
    for start in range(0, len(run_ids), BATCH):
        batch = run_ids[start : start + BATCH]
        query = select_rows(spec).where(spec.table.c.run_id.in_(batch))
        for row in stream(conn, query):
            writer.write(line(encode(spec, row)))


def audit_head(conn: Connection, specs: list[TableSpec]) -> tuple[int, str] | None:
    spec = next((s for s in specs if s.name == AUDIT), None)
    if spec is None:
        return None
    c = spec.table.c
    row = conn.execute(select(c.seq, c.hash).order_by(c.seq.desc()).limit(1)).first()
    return None if row is None else (int(row[0]), str(row[1]))


def _check_audit(conn: Connection, specs: list[TableSpec], parent: Parent) -> None:
    head = parent.manifest.audit_head
    spec = next((s for s in specs if s.name == AUDIT), None)
    if head is None or spec is None:
        return
    c = spec.table.c
    found = conn.execute(select(c.hash).where(c.seq == head[0])).scalar()
    if found != head[1]:
        raise ChainMismatch(
            f"the audit log does not continue the one backup {parent.manifest.id} saw (entry "
            f"{head[0]} is {'missing' if found is None else 'different'}): this is another "
            "store, or its audit log was rewritten; take a full backup"
        )


def _copy_audit_tail(
    conn: Connection, spec: TableSpec, files: _Files, parent: Parent | None
) -> None:
    after = parent.manifest.audit_head[0] if parent and parent.manifest.audit_head else 0
    for row in stream(conn, select_rows(spec).where(spec.table.c.seq > after)):
        files.rows(spec).write(line(encode(spec, row)))
