"""Log search across runs: the database's full-text index of log lines (migration 0008).

SQLite answers from ``logs_fts`` (FTS5, external content over ``logs``), PostgreSQL
from the GIN index on ``to_tsvector('simple', line)``; both are driven by one parsed
query (:mod:`plait.ops.logsearch`) and return the newest matching lines first, a page
at a time (``before`` is the last id of the page before). Lines are stored masked, so
a search never finds, and a highlight never shows, a secret.

A caller's namespaces (``namespaces``; None: all) restrict the runs whose lines it can
find, by a join on ``runs`` that also gives each line its workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    bindparam,
    column,
    func,
    literal,
    literal_column,
    select,
    table,
)
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from plait.errors import StoreError
from plait.ops.logsearch import MARK_END, MARK_START, Query, Term, fts5, highlights, prefix_tsquery
from plait.store.server_records import StorePart
from plait.store.tables import logs, runs

_FTS = table("logs_fts", column("rowid"))
_CONFIG: ColumnElement[Any] = literal_column("'simple'::regconfig")
#: ts_headline options: the whole line (not a fragment), matches between the marks
_HEADLINE = f'StartSel="{MARK_START}", StopSel="{MARK_END}", HighlightAll=true'


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What else a found line must satisfy besides the query."""

    run_id: str | None = None
    workflow: str | None = None
    step: str | None = None
    since: float | None = None
    namespaces: frozenset[str] | None = None
    before: int | None = None


@dataclass(frozen=True, slots=True)
class LogHit:
    id: int
    run_id: str
    workflow: str
    namespace: str
    step: str | None
    attempt: int
    stream: str
    at: float
    line: str
    #: ``[start, end)`` character ranges of the matches in ``line``
    highlight: tuple[tuple[int, int], ...]


class LogSearchStore(StorePart):
    """Full-text search of log lines (see the module docstring)."""

    def search_logs(self, query: Query, where: LogFilter, limit: int = 100) -> list[LogHit]:
        """Matching lines, newest first, at most ``limit``."""
        if where.namespaces is not None and not where.namespaces:
            return []
        dialect = self._hooks.name
        if dialect == "sqlite":  # FTS5 pages by its own rowid (logs.id), newest first
            statement, key = self._sqlite(query), _FTS.c.rowid
        elif dialect == "postgresql":
            statement, key = _postgres(query), logs.c.id
        else:  # pragma: no cover - the store supports these two
            raise StoreError(f"log search is not available on {dialect}")
        statement = statement.where(*_filters(where, key)).order_by(key.desc()).limit(limit)
        with self._read() as conn:
            rows = conn.execute(statement).all()
        return [_hit(row) for row in rows]

    def _sqlite(self, query: Query) -> Any:
        with self._read() as conn:
            indexed = conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name = 'logs_fts'"
            ).first()
        if indexed is None:
            raise StoreError("log search needs SQLite with FTS5, which this Python's lacks")
        marked = func.highlight(
            literal_column("logs_fts"), 0, literal(MARK_START), literal(MARK_END)
        )
        return (
            _columns(marked)
            .select_from(_FTS.join(logs, logs.c.id == _FTS.c.rowid).join(runs, _on_run()))
            .where(literal_column("logs_fts").op("MATCH")(bindparam("match", fts5(query))))
        )


def _postgres(query: Query) -> Any:
    tsquery = _tsquery(query)
    vector = func.to_tsvector(_CONFIG, logs.c.line)
    marked = func.ts_headline(_CONFIG, logs.c.line, tsquery, literal(_HEADLINE))
    return _columns(marked).select_from(logs.join(runs, _on_run())).where(vector.op("@@")(tsquery))


def _tsquery(query: Query) -> ColumnElement[Any]:
    """``(a && (b || c)) && !!(d || e)`` from PostgreSQL's own functions, so each term
    is split into words by the same parser that built the index."""
    found = _all(_any(clause) for clause in query.all_of)
    if query.none_of:
        negated = UnaryExpression(
            _any(query.none_of), operator=operators.custom_op("!!"), type_=TSQUERY
        )
        found = found.op("&&", return_type=TSQUERY)(negated)
    return found


def _any(terms: tuple[Term, ...]) -> ColumnElement[Any]:
    found = _term(terms[0])
    for term in terms[1:]:
        found = found.op("||", return_type=TSQUERY)(_term(term))
    return found.self_group()


def _all(clauses: Any) -> ColumnElement[Any]:
    found: ColumnElement[Any] | None = None
    for clause in clauses:
        found = clause if found is None else found.op("&&", return_type=TSQUERY)(clause)
    assert found is not None  # a parsed query has a clause
    return found.self_group()


def _term(term: Term) -> ColumnElement[Any]:
    if term.kind == "prefix":
        return func.to_tsquery(_CONFIG, literal(prefix_tsquery(term.text)), type_=TSQUERY)
    if term.kind == "phrase":
        return func.phraseto_tsquery(_CONFIG, literal(term.text), type_=TSQUERY)
    return func.plainto_tsquery(_CONFIG, literal(term.text), type_=TSQUERY)


def _columns(marked: Any) -> Any:
    c = logs.c
    return select(
        c.id,
        c.run_id,
        runs.c.workflow,
        runs.c.namespace,
        c.step,
        c.attempt,
        c.stream,
        c.at,
        c.line,
        marked.label("marked"),
    )


def _on_run() -> Any:
    return runs.c.id == logs.c.run_id


def _filters(where: LogFilter, key: Any) -> list[Any]:
    found: list[Any] = []
    if where.run_id is not None:
        found.append(logs.c.run_id == where.run_id)
    if where.workflow is not None:
        found.append(runs.c.workflow == where.workflow)
    if where.step is not None:
        found.append(logs.c.step == where.step)
    if where.since is not None:
        found.append(logs.c.at >= where.since)
    if where.namespaces is not None:
        found.append(runs.c.namespace.in_(sorted(where.namespaces)))
    if where.before is not None:
        found.append(key < where.before)
    return found


def _hit(row: Any) -> LogHit:
    return LogHit(
        id=int(row.id),
        run_id=row.run_id,
        workflow=row.workflow,
        namespace=row.namespace,
        step=row.step,
        attempt=int(row.attempt),
        stream=row.stream,
        at=float(row.at),
        line=row.line,
        highlight=tuple(highlights(row.marked or "", row.line)),
    )


__all__ = ["LogFilter", "LogHit", "LogSearchStore"]
