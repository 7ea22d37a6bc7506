"""One placeholder style for every database: ``:name`` or ``?``, bound by the driver.

A ``sql`` step writes the same query text on PostgreSQL, MariaDB/MySQL and SQLite:
``:name`` placeholders with a mapping of parameters, or ``?`` placeholders with a list
(one kind per query). The query is scanned once and the placeholders are rewritten into
the driver's own style (``%(name)s`` / ``%s`` for psycopg and PyMySQL, unchanged for
sqlite3); values always travel separately to the driver, never into the text.

The scanner knows each dialect's quoting — strings (with MySQL's backslash escapes and
PostgreSQL's ``E''`` strings), quoted identifiers, ``$tag$`` dollar quoting, ``--``,
``#`` and ``/* */`` comments — so a ``?`` or ``:x`` inside them is left alone, and it
errs toward "inside": a misread quote leaves a placeholder untranslated (the driver then
reports a parameter count mismatch), never the reverse. PostgreSQL's ``::`` casts are not
placeholders; ``??`` writes a literal ``?`` (PostgreSQL's JSON operators) and ``\\:`` a
literal colon. ``%`` is doubled where the driver formats the text (only when parameters
are passed: a query without placeholders reaches the driver exactly as written).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Dialect = Literal["postgres", "mysql", "sqlite"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


class ParamError(ValueError):
    """The query's placeholders and the given parameters do not fit together."""


@dataclass(frozen=True, slots=True)
class Translated:
    """A query in the driver's style: ``names`` (named, in order, may repeat) or
    ``positional`` (how many ``?``); both empty when the query has no placeholders."""

    sql: str
    names: tuple[str, ...] = ()
    positional: int = 0

    @property
    def has_placeholders(self) -> bool:
        return bool(self.names) or self.positional > 0


def translate(sql: str, dialect: Dialect) -> Translated:
    """Rewrite ``:name`` / ``?`` placeholders of ``sql`` for ``dialect``'s driver.

    Raises :class:`ParamError` when one query mixes both kinds.
    """
    pieces = _scan(sql, dialect)
    names = tuple(p[1] for p in pieces if p[0] == "named")
    positional = sum(1 for p in pieces if p[0] == "positional")
    if names and positional:
        raise ParamError("the query mixes ? and :name placeholders; use one kind")
    formatted = dialect != "sqlite" and (bool(names) or positional > 0)
    out: list[str] = []
    for kind, text in pieces:
        if kind == "text":
            out.append(text.replace("%", "%%") if formatted else text)
        elif kind == "named":
            out.append(f":{text}" if dialect == "sqlite" else f"%({text})s")
        elif kind == "positional":
            out.append("?" if dialect == "sqlite" else "%s")
        elif dialect == "sqlite" and text == "?":  # a literal "?" (written ??)
            raise ParamError("?? (a literal ?) has no meaning in SQLite")
        else:  # an escaped literal
            out.append(text)
    return Translated("".join(out), names, positional)


def bind(translated: Translated, params: Sequence[Any] | Mapping[str, Any] | None) -> Any:
    """The parameters in the shape the driver wants for ``translated`` (None when the
    query has no placeholders and no parameters were given).

    Values are JSON scalars; a list or an object is bound as its JSON text (cast it in
    SQL: ``:doc::jsonb``), the same on every database.
    """
    if isinstance(params, Mapping):
        return _bind_named(translated, params)
    given = list(params or [])
    if translated.names:
        raise ParamError("the query uses :name placeholders; give params as a mapping")
    if len(given) != translated.positional:
        raise ParamError(
            f"the query has {translated.positional} ? placeholder(s) but params has "
            f"{len(given)} value(s)"
        )
    if not translated.has_placeholders:
        return None  # the text was not rewritten for the driver's formatting
    return tuple(_value(v) for v in given)


def _bind_named(translated: Translated, params: Mapping[str, Any]) -> dict[str, Any] | None:
    if translated.positional:
        raise ParamError("the query uses ? placeholders; give params as a list")
    wanted = set(translated.names)
    missing = sorted(wanted - set(params))
    if missing:
        raise ParamError(f"no value in params for :{', :'.join(missing)}")
    unused = sorted(set(params) - wanted)
    if unused:
        raise ParamError(f"params has values no placeholder uses: {', '.join(unused)}")
    if not translated.has_placeholders:
        return None
    return {k: _value(v) for k, v in params.items()}


def _value(value: Any) -> Any:
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, separators=(",", ":"), default=str)
    return value


Piece = tuple[Literal["text", "named", "positional", "literal"], str]


def _scan(sql: str, dialect: Dialect) -> list[Piece]:
    """``sql`` cut into text, placeholders and escaped literals."""
    pieces: list[Piece] = []
    start = i = 0
    n = len(sql)

    def flush(upto: int) -> None:
        if upto > start:
            pieces.append(("text", sql[start:upto]))

    while i < n:
        end = _skip_quoted(sql, i, dialect)
        if end != i:
            i = end
            continue
        c = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        if c == "?":
            flush(i)
            if nxt == "?":
                pieces.append(("literal", "?"))
                i += 2
            else:
                pieces.append(("positional", "?"))
                i += 1
            start = i
        elif c == ":" and nxt == ":":
            i += 2  # a PostgreSQL cast
        elif c == ":" and (i == 0 or not _is_word(sql[i - 1])) and (m := _NAME.match(sql, i + 1)):
            flush(i)
            pieces.append(("named", m.group()))
            i = start = m.end()
        elif c == "\\" and nxt == ":":
            flush(i)
            pieces.append(("literal", ":"))
            i = start = i + 2
        else:
            i += 1
    flush(n)
    return pieces


def _is_word(c: str) -> bool:
    return c.isalnum() or c in "_$"


def _skip_quoted(sql: str, i: int, dialect: Dialect) -> int:
    """The index after the string, quoted identifier or comment starting at ``i`` (the
    end of the text when it is not closed), or ``i`` when none starts there."""
    c = sql[i]
    nxt = sql[i + 1] if i + 1 < len(sql) else ""
    if c == "'":
        escapes = dialect == "mysql" or (
            dialect == "postgres"
            and i > 0
            and sql[i - 1] in "eE"
            and (i < 2 or not _is_word(sql[i - 2]))
        )
        return _close_quote(sql, i, "'", escapes)
    if c == '"':
        return _close_quote(sql, i, '"', dialect == "mysql")
    if c == "`" and dialect != "postgres":
        return _close_quote(sql, i, "`", False)
    if c == "[" and dialect == "sqlite":
        end = sql.find("]", i + 1)
        return len(sql) if end < 0 else end + 1
    if c == "-" and nxt == "-":
        if dialect == "mysql" and i + 2 < len(sql) and not sql[i + 2].isspace():
            return i  # MySQL: "--" starts a comment only before whitespace (1--1 is math)
        return _line_end(sql, i)
    if c == "#" and dialect == "mysql":
        return _line_end(sql, i)
    if c == "/" and nxt == "*":
        return _close_block_comment(sql, i, nested=dialect == "postgres")
    if c == "$" and dialect == "postgres" and (i == 0 or not _is_word(sql[i - 1])):
        m = _DOLLAR_TAG.match(sql, i)
        if m:
            end = sql.find(m.group(), m.end())
            return len(sql) if end < 0 else end + len(m.group())
    return i


def _close_quote(sql: str, i: int, quote: str, backslash: bool) -> int:
    j = i + 1
    n = len(sql)
    while j < n:
        c = sql[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:  # a doubled quote stays inside
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _line_end(sql: str, i: int) -> int:
    end = sql.find("\n", i)
    return len(sql) if end < 0 else end + 1


def _close_block_comment(sql: str, i: int, *, nested: bool) -> int:
    depth = 0
    j = i
    n = len(sql)
    while j < n:
        if sql.startswith("/*", j):
            depth = depth + 1 if nested or depth == 0 else depth
            j += 2
        elif sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return n
