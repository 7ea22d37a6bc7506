"""Placeholder translation of the sql action: one style (``:name`` / ``?``) rewritten for
each driver, never inside strings, identifiers or comments; and values made JSON."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from plait.actions.sql_drivers import _declarable, _names, json_value
from plait.actions.sqlparams import ParamError, Translated, bind, translate


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("postgres", "SELECT * FROM t WHERE a = %(a)s AND b = %(b)s OR a = %(a)s"),
        ("mysql", "SELECT * FROM t WHERE a = %(a)s AND b = %(b)s OR a = %(a)s"),
        ("sqlite", "SELECT * FROM t WHERE a = :a AND b = :b OR a = :a"),
    ],
)
def test_named_placeholders_per_dialect(dialect: str, expected: str) -> None:
    out = translate("SELECT * FROM t WHERE a = :a AND b = :b OR a = :a", dialect)  # type: ignore[arg-type]
    assert out.sql == expected
    assert out.names == ("a", "b", "a")
    assert out.positional == 0


def test_positional_placeholders() -> None:
    assert translate("VALUES (?, ?)", "postgres").sql == "VALUES (%s, %s)"
    assert translate("VALUES (?, ?)", "mysql").positional == 2
    assert translate("VALUES (?, ?)", "sqlite").sql == "VALUES (?, ?)"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ':x ?' , :y",
        "SELECT 'it''s :x ?', :y",
        'SELECT ":x?" , :y',
        "SELECT 1 -- :x ?\n, :y",
        "SELECT /* :x ? */ :y",
    ],
)
@pytest.mark.parametrize("dialect", ["postgres", "mysql", "sqlite"])
def test_placeholders_inside_quotes_and_comments_are_text(sql: str, dialect: str) -> None:
    out = translate(sql, dialect)  # type: ignore[arg-type]
    assert out.names == ("y",)
    assert out.positional == 0


def test_postgres_specifics() -> None:
    # casts, dollar quoting, nested comments, E'' strings with backslash escapes
    out = translate("SELECT :v::int, $$ :no ? $$, $f$ :no $f$, /* a /* :no */ ? */ 1", "postgres")
    assert out.names == ("v",)
    assert out.sql.startswith("SELECT %(v)s::int, $$ :no ? $$")
    assert translate(r"SELECT E'\' :no', :yes", "postgres").names == ("yes",)
    # standard strings: a backslash is just a character
    assert translate(r"SELECT '\', :yes", "postgres").names == ("yes",)
    # identifiers may contain $; a $ after a word is no dollar quote
    assert translate("SELECT a$b$ + :x", "postgres").names == ("x",)


def test_mysql_specifics() -> None:
    # backslash escapes in strings, # comments, backtick identifiers
    assert translate(r"SELECT 'it\'s :no ?', :yes", "mysql").names == ("yes",)
    assert translate("SELECT 1 # :no ?\n, :yes", "mysql").names == ("yes",)
    assert translate("SELECT `:no?` FROM t WHERE x = :yes", "mysql").names == ("yes",)
    # "--" without a space is arithmetic, not a comment
    assert translate("SELECT 1--:x", "mysql").names == ("x",)


def test_sqlite_bracket_identifiers() -> None:
    assert translate("SELECT [:no ?] FROM t WHERE x = :yes", "sqlite").names == ("yes",)


def test_escapes_for_literal_question_mark_and_colon() -> None:
    out = translate("SELECT data ?? 'k', data ??| :keys, \\:notparam", "postgres")
    assert out.sql == "SELECT data ? 'k', data ?| %(keys)s, :notparam"
    with pytest.raises(ParamError, match="no meaning in SQLite"):
        translate("SELECT ??", "sqlite")


def test_slices_and_words_before_colons_are_not_placeholders() -> None:
    assert translate("SELECT arr[lo:hi], a:b FROM t", "postgres").names == ()
    assert translate("SELECT x := 1", "mysql").names == ()


def test_percent_is_doubled_only_when_the_driver_formats() -> None:
    assert translate("SELECT '100%', :x", "postgres").sql == "SELECT '100%%', %(x)s"
    assert translate("SELECT '100%' LIKE 'a%'", "postgres").sql == "SELECT '100%' LIKE 'a%'"
    assert translate("SELECT '100%', ?", "sqlite").sql == "SELECT '100%', ?"


def test_a_placeholder_never_lands_inside_an_unclosed_quote() -> None:
    out = translate("SELECT 'unterminated :x ?", "mysql")
    assert not out.has_placeholders


def test_mixing_kinds_is_refused() -> None:
    with pytest.raises(ParamError, match="mixes"):
        translate("SELECT ?, :a", "postgres")


def test_bind_checks_counts_and_names() -> None:
    named = Translated("…", ("a", "b"), 0)
    assert bind(named, {"a": 1, "b": None}) == {"a": 1, "b": None}
    with pytest.raises(ParamError, match=r"no value in params for :b"):
        bind(named, {"a": 1})
    with pytest.raises(ParamError, match="no placeholder uses: c"):
        bind(named, {"a": 1, "b": 2, "c": 3})
    with pytest.raises(ParamError, match="as a mapping"):
        bind(named, [1, 2])
    positional = Translated("…", (), 2)
    assert bind(positional, [1, "x"]) == (1, "x")
    with pytest.raises(ParamError, match="2 \\? placeholder"):
        bind(positional, [1])
    with pytest.raises(ParamError, match="as a list"):
        bind(positional, {"a": 1})
    assert bind(Translated("SELECT 1"), None) is None
    assert bind(Translated("SELECT 1"), []) is None
    with pytest.raises(ParamError):
        bind(Translated("SELECT 1"), [1])


def test_lists_and_objects_are_bound_as_json_text() -> None:
    out = bind(Translated("…", ("doc",), 0), {"doc": {"a": [1, 2]}})
    assert out == {"doc": '{"a":[1,2]}'}


def test_json_values() -> None:
    assert json_value(Decimal("12")) == 12
    assert json_value(Decimal("12.50")) == 12.5
    assert json_value(Decimal("0.1")) == 0.1
    assert json_value(Decimal("12345678901234567890.123456789")) == "12345678901234567890.123456789"
    assert json_value(Decimal("NaN")) == "NaN"
    assert json_value(float("inf")) == "inf"
    assert json_value(dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)) == "2024-05-01T12:30:00+00:00"
    assert json_value(dt.date(2024, 5, 1)) == "2024-05-01"
    assert json_value(dt.time(8, 15)) == "08:15:00"
    assert json_value(dt.timedelta(minutes=1, seconds=30)) == 90.0
    assert json_value(b"\x00\xff") == "AP8="
    assert json_value(memoryview(b"hi")) == "aGk="
    u = uuid.uuid4()
    assert json_value(u) == str(u)
    assert json_value({"k": [Decimal("1.5"), None, True]}) == {"k": [1.5, None, True]}


def test_repeated_column_names_get_suffixes() -> None:
    assert _names([("a",), ("b",), ("a",), ("a",)]) == ["a", "b", "a_2", "a_3"]


def test_which_postgres_statements_can_run_behind_a_cursor() -> None:
    for sql in ("SELECT 1", "  with x as (select 1) select * from x", "(SELECT 1)",
                "-- c\nVALUES (1)", "/* c */ TABLE t"):  # fmt: skip
        assert _declarable(sql), sql
    for sql in ("SHOW work_mem", "EXPLAIN SELECT 1", "selection", "INSERT INTO t VALUES (1)"):
        assert not _declarable(sql), sql
