"""Core statements compiled once and run straight on the driver's cursor.

SQLAlchemy's execution layer costs tens of microseconds per statement (cache key,
execution context, events, result proxy): more than SQLite itself takes to run a
transition. The hot path (commit, claim, leases, load) therefore compiles its Core
statements once, for the store's dialect, and hands the SQL string and the parameters,
converted by the columns' own type processors (JSON, booleans …), to the DBAPI cursor.
The SQL is still SQLAlchemy's, so there is one code path for both databases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_Proc = Callable[[Any], Any] | None
_MISSING = object()


class Prepared:
    """One statement: its SQL and how to turn a dict of values into driver parameters.

    ``keys`` names the columns an ``INSERT``/``UPDATE`` sets (all of them when
    ``None``). Values not given take the bound literal of the statement.
    """

    def __init__(
        self, stmt: ClauseElement, dialect: Dialect, keys: Sequence[str] | None = None
    ) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if self.positional else list(compiled.binds)
        self._params: list[tuple[str, str, Any, _Proc]] = []
        for name in names:
            bind = compiled.binds[name]
            default = _MISSING if bind.required else bind.value
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            self._params.append((name, compiled.escaped_bind_names.get(name, name), default, proc))
        self._dialect = dialect
        self._types = {c.key: c.type for c in getattr(stmt, "selected_columns", ())}
        self._results: list[_Proc] | None = None
        # The per-call work, precomputed: one C-level lookup of every value in order,
        # the statement's own literals as defaults, and converters only where a column
        # type has one (a commit binds ~50 values; most need none).
        self._defaults = {n: d for n, _, d, _ in self._params if d is not _MISSING}
        self._get = itemgetter(*(p[0] for p in self._params)) if self._params else None
        self._procs = [(i, p[3]) for i, p in enumerate(self._params) if p[3] is not None]
        self._single = len(self._params) == 1

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        if self._get is None:
            return () if self.positional else {}
        if self._defaults:
            values = {**self._defaults, **values}
        try:
            got = self._get(values)
        except KeyError as exc:
            raise KeyError(f"no value for bind parameter {exc.args[0]!r}") from None
        out = [got] if self._single else list(got)
        for i, proc in self._procs:
            value = out[i]
            if value is not None:
                out[i] = proc(value)
        if self.positional:
            return tuple(out)
        return {p[1]: v for p, v in zip(self._params, out, strict=True)}

    def many(self, rows: Iterable[Mapping[str, Any]]) -> list[Any]:
        params = self.params
        return [params(r) for r in rows]

    def _processor(self, name: str, coltype: Any) -> _Proc:
        type_ = self._types.get(name)
        if type_ is None:
            return None
        proc: _Proc = type_.dialect_impl(self._dialect).result_processor(self._dialect, coltype)
        return proc

    def rows(self, cursor: Any) -> list[dict[str, Any]]:
        """The cursor's rows as dicts, values converted by the columns' types."""
        names = [d[0] for d in cursor.description]
        procs = self._results
        if procs is None:  # the driver's column types are known only now
            procs = self._results = [self._processor(d[0], d[1]) for d in cursor.description]
        out = []
        for raw in cursor.fetchall():
            out.append(
                {
                    n: (p(v) if p is not None and v is not None else v)
                    for n, p, v in zip(names, procs, raw, strict=True)
                }
            )
        return out
