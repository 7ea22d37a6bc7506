"""Rows of the store as portable JSON lines, and back: the logical half of backups.

A logical backup (and every incremental one) holds the rows of Plait's tables as
gzipped JSON lines, one file per table: a header line naming the columns and how each
is encoded, then one JSON array per row. The same files restore into SQLite or
PostgreSQL, whatever the source was, so a backup taken on one can move a store to the
other.

The columns come from the database itself (reflection), not from the current
:mod:`plait.store.tables`: a backup of a store at an older schema revision holds that
revision's columns and restores into a database migrated to that revision first.
Only the tables Plait's schema defines are copied (never ``alembic_version``, which the
migrations write, nor tables another program added to the database).

Encodings, chosen so a value comes back exactly as it was stored:

* ``json`` columns travel as their JSON text (``CAST(col AS TEXT)``), which keeps SQL
  NULL and a JSON ``null`` apart — SQLAlchemy's JSON type reads both as ``None``;
* ``bytes`` (sealed values) as base64;
* numbers, booleans and strings as themselves (a float's ``repr`` round-trips exactly);
* anything else as the database's text form, cast back on the way in.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Select,
    String,
    Table,
    Text,
    bindparam,
    cast,
    func,
    inspect,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite

from plait.ops.backup_errors import BadBackup
from plait.store.tables import metadata as plait_metadata

Kind = Literal["plain", "json", "bytes", "text"]
#: rows per statement when writing, and ids per ``IN (…)`` when reading by key
BATCH = 500
#: a row's fingerprint in an index: 16 hex digits of BLAKE2b (collisions are 2**-64)
DIGEST_BYTES = 8


class RowsError(BadBackup):
    """A rows file does not match the database it is restored into, or is malformed."""


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One table as reflected from a database: its columns, their encodings, its key."""

    table: Table
    kinds: tuple[Kind, ...]

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def columns(self) -> list[Column[Any]]:
        return [c for c in self.table.columns if c.computed is None]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def key(self) -> list[Column[Any]]:
        return list(self.table.primary_key.columns)

    @property
    def key_positions(self) -> list[int]:
        names = self.names
        return [names.index(c.name) for c in self.key]

    def header(self) -> dict[str, Any]:
        return {"table": self.name, "columns": self.names, "kinds": list(self.kinds)}


def _kind(column: Column[Any]) -> Kind:
    t = column.type
    if isinstance(t, JSON):
        return "json"
    if isinstance(t, LargeBinary):
        return "bytes"
    if isinstance(t, Integer | String | Boolean):
        return "plain"
    if isinstance(t, Float) or (isinstance(t, Numeric) and not t.asdecimal):
        return "plain"
    return "text"


def table_specs(conn: Connection) -> list[TableSpec]:
    """Plait's tables present in this database, parents before children, as reflected."""
    present = set(inspect(conn).get_table_names())
    names = [t.name for t in plait_metadata.sorted_tables if t.name in present]
    reflected = MetaData()
    reflected.reflect(bind=conn, only=names)
    specs = []
    for name in names:
        table = reflected.tables[name]
        if not table.primary_key.columns:
            raise RowsError(f"table {name} has no primary key: it cannot be backed up by row")
        cols = [c for c in table.columns if c.computed is None]
        specs.append(TableSpec(table, tuple(_kind(c) for c in cols)))
    return specs


# -- reading -----------------------------------------------------------------------------
def select_rows(spec: TableSpec) -> Select[Any]:
    """Every column in its portable form, in key order."""
    cols: list[Any] = []
    for column, kind in zip(spec.columns, spec.kinds, strict=True):
        cols.append(cast(column, Text).label(column.name) if kind in ("json", "text") else column)
    return select(*cols).select_from(spec.table).order_by(*spec.key)


def where_keys(spec: TableSpec, column: str, values: list[Any]) -> Any:
    return spec.table.c[column].in_(values)


def encode(spec: TableSpec, row: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for value, kind in zip(row, spec.kinds, strict=True):
        if value is not None and kind == "bytes":
            value = base64.b64encode(bytes(value)).decode("ascii")
        out.append(value)
    return out


def line(values: list[Any]) -> str:
    """One row as a canonical JSON line (its bytes are what the index fingerprints)."""
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def digest(text_line: str) -> str:
    return hashlib.blake2b(text_line.encode(), digest_size=DIGEST_BYTES).hexdigest()


def key_of(spec: TableSpec, values: list[Any]) -> str:
    """The row's primary key as a JSON string: how indexes and deletions name a row."""
    return line([values[i] for i in spec.key_positions])


def stream(conn: Connection, query: Select[Any]) -> Iterator[Any]:
    """Rows of a query without loading them all (a server-side cursor on PostgreSQL)."""
    result = conn.execution_options(stream_results=True, yield_per=2000).execute(query)
    yield from result


def count_rows(conn: Connection, spec: TableSpec) -> int:
    return int(conn.execute(select(func.count()).select_from(spec.table)).scalar_one())


# -- files -------------------------------------------------------------------------------
class RowsWriter:
    """A gzipped JSON-lines file of one table's rows (or keys), header first."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.count = 0
        raw = open(path, "xb")  # noqa: SIM115 - closed in close()
        self._gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
        self._raw = raw
        self._out = io.TextIOWrapper(self._gz, encoding="utf-8", newline="\n")
        self._out.write(json.dumps(header, separators=(",", ":")) + "\n")

    def write(self, text_line: str) -> None:
        self._out.write(text_line + "\n")
        self.count += 1

    def close(self) -> None:
        self._out.close()
        self._raw.close()


def read_rows(path: Path) -> tuple[dict[str, Any], Iterator[list[Any]]]:
    """The header of a rows file and an iterator over its rows."""
    fh: IO[str] = gzip.open(path, "rt", encoding="utf-8")  # noqa: SIM115 - closed by the iterator
    try:
        header = json.loads(fh.readline())
    except (OSError, ValueError, EOFError) as exc:
        fh.close()
        raise RowsError(f"{path.name}: not a rows file ({exc})") from None
    if not isinstance(header, dict) or "columns" not in header:
        fh.close()
        raise RowsError(f"{path.name}: no header line")

    def rows() -> Iterator[list[Any]]:
        with fh:
            for number, raw in enumerate(fh, start=2):
                try:
                    values = json.loads(raw)
                except ValueError as exc:
                    raise RowsError(f"{path.name}:{number}: not JSON ({exc})") from None
                if not isinstance(values, list):
                    raise RowsError(f"{path.name}:{number}: a row must be a JSON array")
                yield values

    return header, rows()


# -- writing -----------------------------------------------------------------------------
def _bind(column: Column[Any], kind: Kind, name: str, dialect: str) -> Any:
    if kind == "bytes":
        return bindparam(name, type_=LargeBinary)
    if kind in ("json", "text"):
        param = bindparam(name, type_=Text)
        # SQLite stores the text as given (what the store itself writes); PostgreSQL
        # needs the text turned back into jsonb or whatever the column's type is.
        return cast(param, column.type) if dialect == "postgresql" else param
    return bindparam(name, type_=column.type)


def _params(spec: TableSpec, columns: list[str], values: list[Any]) -> dict[str, Any]:
    if len(values) != len(columns):
        raise RowsError(f"{spec.name}: a row has {len(values)} values for {len(columns)} columns")
    out: dict[str, Any] = {}
    for i, (name, value) in enumerate(zip(columns, values, strict=True)):
        kind = spec.kinds[spec.names.index(name)]
        if value is not None and kind == "bytes":
            value = base64.b64decode(value)
        out[f"p{i}"] = value
    return out


def insert_statement(spec: TableSpec, columns: list[str], dialect: str, *, upsert: bool) -> Any:
    """``INSERT`` of the file's columns; ``upsert``: on a key conflict, update the row
    in place (never delete and re-insert: that would cascade to its children)."""
    missing = [n for n in columns if n not in spec.names]
    if missing:
        raise RowsError(
            f"{spec.name}: the backup has column(s) {', '.join(missing)} that the database "
            "does not (was it migrated to the backup's revision?)"
        )
    kinds = dict(zip(spec.names, spec.kinds, strict=True))
    values = {n: _bind(spec.table.c[n], kinds[n], f"p{i}", dialect) for i, n in enumerate(columns)}
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(spec.table).values(values)
    if not upsert:
        return stmt
    keys = [c.name for c in spec.key]
    update = {n: stmt.excluded[n] for n in columns if n not in keys}
    if not update:
        return stmt.on_conflict_do_nothing(index_elements=keys)
    return stmt.on_conflict_do_update(index_elements=keys, set_=update)


def write_rows(
    conn: Connection, spec: TableSpec, path: Path, dialect: str, *, upsert: bool = False
) -> int:
    """Insert (or upsert) every row of a rows file; returns how many."""
    header, rows = read_rows(path)
    columns = list(header["columns"])
    stmt = insert_statement(spec, columns, dialect, upsert=upsert)
    total = 0
    batch: list[dict[str, Any]] = []
    for values in rows:
        batch.append(_params(spec, columns, values))
        if len(batch) >= BATCH:
            conn.execute(stmt, batch)
            total += len(batch)
            batch = []
    if batch:
        conn.execute(stmt, batch)
        total += len(batch)
    return total


def delete_keys(conn: Connection, spec: TableSpec, keys: Iterable[list[Any]]) -> int:
    """Delete the rows with these primary keys (as written by :func:`key_of`)."""
    cols = spec.key
    kinds = [spec.kinds[i] for i in spec.key_positions]
    total = 0
    batch: list[tuple[Any, ...]] = []

    def flush() -> int:
        single = len(cols) == 1
        where = cols[0].in_([k[0] for k in batch]) if single else tuple_(*cols).in_(batch)
        return max(conn.execute(spec.table.delete().where(where)).rowcount, 0)

    for key in keys:
        decoded = tuple(
            base64.b64decode(v) if k == "bytes" and v is not None else v
            for v, k in zip(key, kinds, strict=True)
        )
        batch.append(decoded)
        if len(batch) >= BATCH:
            total += flush()
            batch = []
    if batch:
        total += flush()
    return total


# -- id counters -------------------------------------------------------------------------
def counter_columns(specs: list[TableSpec]) -> dict[str, str]:
    """Tables whose single integer key the database assigns (a sequence on PostgreSQL,
    the rowid on SQLite): their counters are carried over so ids are never reused."""
    out: dict[str, str] = {}
    for spec in specs:
        own = plait_metadata.tables.get(spec.name)
        if own is None or len(own.primary_key.columns) != 1:
            continue
        col = next(iter(own.primary_key.columns))
        if isinstance(col.type, Integer) and col.autoincrement is not False:
            out[spec.name] = col.name
    return out


def read_counters(conn: Connection, specs: list[TableSpec]) -> dict[str, int]:
    """The highest id each counter has handed out (at least the highest id present)."""
    dialect = conn.dialect.name
    seen: dict[str, int] = {}
    if dialect == "sqlite" and _has_sequences(conn):
        rows = conn.execute(text("SELECT name, seq FROM sqlite_sequence"))
        seen = {r[0]: int(r[1]) for r in rows}
    out: dict[str, int] = {}
    for spec in specs:
        column = counter_columns([spec]).get(spec.name)
        if column is None:
            continue
        top = conn.execute(select(func.max(spec.table.c[column]))).scalar() or 0
        value = max(int(top), seen.get(spec.name, 0))
        if dialect == "postgresql":
            seq = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": spec.name, "c": column}
            ).scalar()
            if seq:
                row = conn.execute(text(f"SELECT last_value, is_called FROM {seq}")).one()
                value = max(value, int(row[0]) if row[1] else 0)
        out[spec.name] = value
    return out


def apply_counters(conn: Connection, specs: list[TableSpec], counters: dict[str, int]) -> None:
    """Set each counter to at least the recorded value (and the highest id present)."""
    dialect = conn.dialect.name
    columns = counter_columns(specs)
    current = read_counters(conn, specs)
    for name, column in columns.items():
        value = max(counters.get(name, 0), current.get(name, 0))
        if value <= 0:
            continue
        if dialect == "postgresql":
            seq = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": name, "c": column}
            ).scalar()
            if seq:
                conn.execute(
                    text("SELECT setval(CAST(:s AS regclass), :v, true)"), {"s": seq, "v": value}
                )
        elif dialect == "sqlite":
            found = None
            if _has_sequences(conn):
                found = conn.execute(
                    text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": name}
                ).first()
            if found is not None and int(found[0]) < value:
                conn.execute(
                    text("UPDATE sqlite_sequence SET seq = :v WHERE name = :t"),
                    {"v": value, "t": name},
                )
            elif found is None and _autoincrement(name):
                conn.execute(
                    text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :v)"),
                    {"v": value, "t": name},
                )


def _has_sequences(conn: Connection) -> bool:
    query = text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'")
    return conn.execute(query).first() is not None


def _autoincrement(name: str) -> bool:
    """Whether SQLite keeps a never-reused counter for the table (AUTOINCREMENT)."""
    table = plait_metadata.tables.get(name)
    return bool(table is not None and table.kwargs.get("sqlite_autoincrement"))
