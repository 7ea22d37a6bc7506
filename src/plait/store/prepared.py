"""Core statements compiled once and run straight on the driver's cursor.

SQLAlchemy's execution layer costs tens of microseconds per statement (cache key,
execution context, events, result proxy): more than SQLite itself takes to run a
transition. The hot path (commit, claim, leases, load) therefore compiles its Core
statements once, for the store's dialect, and hands the SQL string and the parameters,
converted by the columns' own type processors (JSON, booleans …), to the DBAPI cursor.
The SQL is still SQLAlchemy's, so there is one code path for both databases.

For SQLite the compiled form is also kept in the package (:mod:`plait.store.lite`):
``plait run`` then starts without importing SQLAlchemy at all. :meth:`Prepared.spec`
describes a statement (its SQL and a named *kind* for each converter) and
:meth:`Prepared.from_spec` rebuilds it; a test checks the kept form against a fresh
compilation, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from plait import fastjson

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql import ClauseElement

_Proc = Callable[[Any], Any] | None
_MISSING = object()


def _strict_int_bool(value: Any) -> int:
    # SQLAlchemy's Boolean on a dialect without a native boolean: only bools, 0 and 1.
    if value not in (True, False):
        raise TypeError(f"not a boolean value: {value!r}")
    return int(value)


def _json_result(value: Any) -> Any:
    # SQLite's JSON functions may hand back numbers as such (SQLAlchemy does the same).
    try:
        return json.loads(value)
    except TypeError:
        if isinstance(value, numbers.Number):
            return value
        raise


#: The converters a kept statement may name, by kind (SQLite's, as SQLAlchemy makes them).
BIND_KINDS: dict[str, Callable[[Any], Any]] = {
    "float": float,
    "json": fastjson.dumps,
    "bool": _strict_int_bool,
    "binary": memoryview,
}
RESULT_KINDS: dict[str, Callable[[Any], Any]] = {"json": _json_result, "bool": bool}
#: SQLAlchemy's processor functions (by qualified name) and the kind each one is.
_SA_BIND = {
    "to_float": "float",
    "JSON._make_bind_processor.<locals>.process": "json",
    "Boolean.bind_processor.<locals>.process": "bool",
    "_Binary.bind_processor.<locals>.process": "binary",
}
_SA_RESULT = {
    "int_to_boolean": "bool",
    "_SQliteJson.result_processor.<locals>.process": "json",
    "JSON.result_processor.<locals>.process": "json",
}


def _kind(proc: Any, table: dict[str, str]) -> str | None:
    if proc is None:
        return None
    name = getattr(proc, "__qualname__", repr(proc))
    if name not in table:
        raise ValueError(f"no kept form for the SQLAlchemy processor {name}")
    return table[name]


class Prepared:
    """One statement: its SQL and how to turn a dict of values into driver parameters.

    ``keys`` names the columns an ``INSERT``/``UPDATE`` sets (all of them when
    ``None``). Values not given take the bound literal of the statement.
    """

    def __init__(
        self,
        sql: str,
        positional: bool,
        params: Sequence[tuple[str, str, Any, _Proc]],
        results: Callable[[str, Any], _Proc] | Mapping[str, _Proc],
    ) -> None:
        self.sql = sql
        self.positional = positional
        self._params = list(params)
        self._result_procs = results
        self._results: list[_Proc] | None = None
        # The per-call work, precomputed: one C-level lookup of every value in order,
        # the statement's own literals as defaults, and converters only where a column
        # type has one (a commit binds ~50 values; most need none).
        self._defaults = {n: d for n, _, d, _ in self._params if d is not _MISSING}
        self._get = itemgetter(*(p[0] for p in self._params)) if self._params else None
        self._procs = [(i, p[3]) for i, p in enumerate(self._params) if p[3] is not None]
        self._single = len(self._params) == 1
        self._types: dict[str, Any] = {}  # SQLAlchemy types of the columns (compile)
        self._dialect: Any = None

    @classmethod
    def compile(
        cls, stmt: ClauseElement, dialect: Dialect, keys: Sequence[str] | None = None
    ) -> Prepared:
        """Compile a Core statement for ``dialect``. ``keys`` names the columns an
        ``INSERT``/``UPDATE`` sets (all of them when ``None``); values not given take
        the bound literal of the statement."""
        from sqlalchemy.sql.compiler import SQLCompiler

        compiled = stmt.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        assert isinstance(compiled, SQLCompiler)
        positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if positional else list(compiled.binds)
        params: list[tuple[str, str, Any, _Proc]] = []
        for name in names:
            bind = compiled.binds[name]
            default = _MISSING if bind.required else bind.value
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            params.append((name, compiled.escaped_bind_names.get(name, name), default, proc))
        types = {c.key: c.type for c in getattr(stmt, "selected_columns", ())}

        def result(name: str, coltype: Any) -> _Proc:
            type_ = types.get(name)
            if type_ is None:
                return None
            proc: _Proc = type_.dialect_impl(dialect).result_processor(dialect, coltype)
            return proc

        prepared = cls(compiled.string, positional, params, result)
        prepared._types = types
        prepared._dialect = dialect
        return prepared

    def spec(self) -> dict[str, Any]:
        """The statement as plain data (see the module docstring); SQLite only: its
        converters do not depend on the driver's column types."""
        results = {}
        for name, type_ in self._types.items():
            proc = type_.dialect_impl(self._dialect).result_processor(self._dialect, None)
            kind = _kind(proc, _SA_RESULT)
            if kind is not None:
                results[name] = kind
        return {
            "sql": self.sql,
            "positional": self.positional,
            "params": [
                [name, escaped, None if d is _MISSING else d, d is _MISSING, _kind(p, _SA_BIND)]
                for name, escaped, d, p in self._params
            ],
            "results": results,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Prepared:
        params = [
            (name, escaped, _MISSING if required else default, kind and BIND_KINDS[kind])
            for name, escaped, default, required, kind in spec["params"]
        ]
        results = {name: RESULT_KINDS[kind] for name, kind in spec["results"].items()}
        return cls(spec["sql"], spec["positional"], params, results)

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
        found = self._result_procs
        if callable(found):
            return found(name, coltype)
        return found.get(name)

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
