"""The log search query language: parsing, its FTS5 form, highlights, since and cursors."""

from __future__ import annotations

import pytest

from plait.ops.logsearch import (
    MARK_END,
    MARK_START,
    QueryError,
    Term,
    fts5,
    highlights,
    parse,
    parse_cursor,
    parse_since,
    prefix_tsquery,
)


def test_terms_and_their_fts5_form() -> None:
    query = parse('deploy "connection refused" fail* timeout OR refused -healthcheck')
    assert query.all_of == (
        (Term("deploy", "word"),),
        (Term("connection refused", "phrase"),),
        (Term("fail", "prefix"),),
        (Term("timeout", "word"), Term("refused", "word")),
    )
    assert query.none_of == (Term("healthcheck", "word"),)
    assert fts5(query) == (
        '("deploy" AND "connection refused" AND "fail" * AND ("timeout" OR "refused")) '
        'NOT "healthcheck"'
    )


def test_user_text_is_never_fts5_syntax() -> None:
    # FTS5 operators, column filters and quotes inside a term stay text
    assert fts5(parse('NEAR(a b) line:x AND a"b')) == (
        '"NEAR(a" AND "b)" AND "line:x" AND "AND" AND "a""b"'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"open', "not closed"),
        ("OR a", "needs a term before"),
        ("a OR OR b", "needs a term before"),
        ("a OR", "at the end"),
        ("a OR -b", "cannot join an excluded"),
        ("-a -b", "nothing to look for"),
        ("", "nothing to look for"),
        ("a -- b", "no letters or digits"),
        ('""', "no letters or digits"),
        ("x " * 33, "at most 32"),
        ("x" * 501, "longer than 500"),
    ],
)
def test_bad_queries_say_why(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse(text)


def test_prefix_terms_for_postgres_keep_only_words() -> None:
    assert prefix_tsquery("Deplo") == "'deplo':*"
    assert prefix_tsquery("api.v1') | !x") == "'api' <-> 'v1' <-> 'x':*"


def test_highlights_are_ranges_of_the_line() -> None:
    line = "Connection refused by db"
    a, b = MARK_START, MARK_END
    marked = f"{a}Connection{b} {a}refused{b} by {a}db{b}"
    assert highlights(marked, line) == [(0, 18), (22, 24)]  # a phrase is one range
    assert line[0:18] == "Connection refused"
    assert highlights("something else", line) == []
    assert highlights(line, line) == []


def test_since_and_cursor() -> None:
    now = 1_700_000_000.0
    assert parse_since("2h", now) == now - 7200
    assert parse_since("2023-11-14T22:13:20Z", now) == 1_700_000_000.0
    assert parse_since("2023-11-14T22:13:20", now) == 1_700_000_000.0  # UTC when naive
    assert parse_since("2023-11-14T23:13:20+01:00", now) == 1_700_000_000.0
    with pytest.raises(QueryError, match="neither a duration"):
        parse_since("last week", now)
    assert parse_cursor(None) is None
    assert parse_cursor("") is None
    assert parse_cursor("42") == 42
    for bad in ("-1", "x", "9" * 20):
        with pytest.raises(QueryError, match="cursor"):
            parse_cursor(bad)
