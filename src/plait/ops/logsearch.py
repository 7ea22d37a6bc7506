"""The query language of log search, the same on SQLite and PostgreSQL.

``deploy failed`` — lines with both words (in any order, any case);
``"connection refused"`` — the words next to each other, in this order;
``deplo*`` — a word that starts with ``deplo``;
``timeout OR refused`` — either word (``OR`` in capitals, between two terms);
``-healthcheck`` — lines without the word (only next to something to look for).

A *word* is what the database's tokenizer makes of the text: letters and digits, with
punctuation as a separator (``api.example.com`` is found as the phrase ``api example
com`` on SQLite, as one host name on PostgreSQL — typing it as written works on both).
Matching is case-insensitive; words are not stemmed (``fail`` does not find
``failed``: use ``fail*``).

:func:`parse` turns the text into a :class:`Query` (or raises :class:`QueryError` with
what is wrong); :func:`fts5` renders it as an SQLite FTS5 ``MATCH`` expression, and
:mod:`plait.store.server_logs` renders it as a PostgreSQL ``tsquery``. Highlights come
back from the database as the line with :data:`MARK_START`/:data:`MARK_END` around
each match; :func:`highlights` turns that into character ranges of the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from plait.errors import PlaitError

MAX_LENGTH = 500
MAX_TERMS = 32
#: private-use characters that never appear in a log line worth highlighting
MARK_START, MARK_END = "\ue000", "\ue001"

TermKind = Literal["word", "phrase", "prefix"]
_TOKEN = re.compile(r'(-?)(?:"([^"]*)(")?|(\S+))')
_WORDY = re.compile(r"\w")


class QueryError(PlaitError):
    """A search text that is not a query (the message says where and why)."""


@dataclass(frozen=True, slots=True)
class Term:
    text: str
    kind: TermKind


@dataclass(frozen=True, slots=True)
class Query:
    """``all_of`` clauses must all match, each by one of its alternatives (``OR``);
    no line that matches a term of ``none_of`` is found."""

    all_of: tuple[tuple[Term, ...], ...]
    none_of: tuple[Term, ...] = ()


def parse(text: str) -> Query:
    """The query in ``text`` (see the module docstring)."""
    if len(text) > MAX_LENGTH:
        raise QueryError(f"the query is longer than {MAX_LENGTH} characters")
    check_text("the query", text)
    clauses: list[list[Term]] = []
    excluded: list[Term] = []
    joining = False  # the last token was OR
    count = 0
    for match in _TOKEN.finditer(text):
        negated, quoted, closed, bare = match.groups()
        if bare == "OR" and not negated:
            if not clauses or joining:
                raise QueryError(f"OR at character {match.start() + 1} needs a term before it")
            joining = True
            continue
        term = _term(quoted, closed, bare, match.start())
        count += 1
        if count > MAX_TERMS:
            raise QueryError(f"a query has at most {MAX_TERMS} terms")
        if negated:
            if joining:
                raise QueryError(f"OR cannot join an excluded term (character {match.start() + 1})")
            excluded.append(term)
        elif joining:
            clauses[-1].append(term)
        else:
            clauses.append([term])
        joining = False
    if joining:
        raise QueryError("OR at the end of the query needs a term after it")
    if not clauses:
        raise QueryError('the query has nothing to look for (a word, a "phrase" or a prefix*)')
    return Query(tuple(tuple(c) for c in clauses), tuple(excluded))


def _term(quoted: str | None, closed: str | None, bare: str | None, at: int) -> Term:
    if quoted is not None:
        if closed is None:
            raise QueryError(f"the quote at character {at + 1} is not closed")
        term = Term(quoted.strip(), "phrase")
    else:
        word = bare or ""
        term = Term(word.rstrip("*"), "prefix") if word.endswith("*") else Term(word, "word")
    if not _WORDY.search(term.text):
        shown = quoted if quoted is not None else bare
        raise QueryError(f"{shown!r} (character {at + 1}) has no letters or digits to look for")
    return term


def fts5(query: Query) -> str:
    """The query as an FTS5 ``MATCH`` expression (every term quoted: the user's text
    is never FTS5 syntax)."""
    clauses = [_alternatives(c) for c in query.all_of]
    found = " AND ".join(clauses)
    if query.none_of:
        found = f"({found}) NOT {_alternatives(query.none_of)}"
    return found


def _alternatives(terms: tuple[Term, ...]) -> str:
    rendered = [_fts5_term(t) for t in terms]
    return rendered[0] if len(rendered) == 1 else "(" + " OR ".join(rendered) + ")"


def _fts5_term(term: Term) -> str:
    quoted = '"' + term.text.replace('"', '""') + '"'
    return quoted + " *" if term.kind == "prefix" else quoted


def prefix_tsquery(text: str) -> str:
    """A prefix term as ``to_tsquery`` text: its words in sequence, the last one a
    prefix (only letters, digits and ``_`` pass, so nothing is tsquery syntax)."""
    words = re.findall(r"\w+", text.lower())
    return " <-> ".join(f"'{w}'" for w in words) + ":*"


def highlights(marked: str, line: str) -> list[tuple[int, int]]:
    """``[start, end)`` character ranges of the matches in ``line``, from the line as
    the database marked it; matches separated only by spaces (a phrase) become one
    range. Empty if the marked text is not the line (a line holding the marks itself)."""
    ranges: list[tuple[int, int]] = []
    plain: list[str] = []
    start: int | None = None
    for char in marked:
        if char == MARK_START:
            start = len(plain)
        elif char == MARK_END and start is not None:
            ranges.append((start, len(plain)))
            start = None
        else:
            plain.append(char)
    text = "".join(plain)
    if text != line:
        return []
    merged: list[tuple[int, int]] = []
    for begin, end in ranges:
        if merged and not text[merged[-1][1] : begin].strip():
            merged[-1] = (merged[-1][0], end)
        elif end > begin:
            merged.append((begin, end))
    return merged


def parse_since(text: str, now: float) -> float:
    """``since=``: a duration back from ``now`` (``15m``, ``2h``, ``7d``) or a time in
    ISO 8601 (``2026-05-01``, ``2026-05-01T12:00:00Z``; UTC when no offset is given)."""
    import datetime as dt

    from plait.model.durations import parse_duration

    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            f"since {text!r} is neither a duration (15m, 2h, 7d) nor an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def parse_cursor(text: str | None) -> int | None:
    """The ``next_cursor`` of a page (the id its last line had)."""
    if not text:
        return None
    if not text.isdigit() or len(text) > 19 or int(text) >= 2**63:
        raise QueryError(f"cursor {text!r} is not one this search returned")
    return int(text)


def check_text(what: str, text: str | None) -> None:
    """Refuse control characters no log line search needs (PostgreSQL refuses NUL in
    any text, so it must never reach the database)."""
    if text is not None and any(ord(c) < 32 and c not in "\t" for c in text):
        raise QueryError(f"{what} contains a control character")


__all__ = [
    "MARK_END",
    "MARK_START",
    "Query",
    "QueryError",
    "Term",
    "check_text",
    "fts5",
    "highlights",
    "parse",
    "parse_cursor",
    "parse_since",
    "prefix_tsquery",
]
