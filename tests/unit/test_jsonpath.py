"""The JSONPath subset of ``http`` ``extract:``: what it finds, and how it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.actions.jsonpath import JsonPathError, compile_path

DOC: dict[str, Any] = {
    "data": {
        "items": [
            {"id": 7, "name": "a", "tags": ["x", "y"]},
            {"id": 8, "name": "b", "tags": []},
            {"id": 9, "name": "c", "meta": {"id": 99}},
        ],
        "total": 3,
        "odd key": True,
        "quote's": "q",
    },
    "next": None,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", [DOC]),
        ("$.data.total", [3]),
        ("$.data.items[0].id", [7]),
        ("$.data.items[-1].name", ["c"]),
        ("$['data']['odd key']", [True]),
        ('$["data"].total', [3]),
        ("$['data']['quote\\'s']", ["q"]),
        ("$.data.items[*].id", [7, 8, 9]),
        ("$.data.items.*.name", ["a", "b", "c"]),
        ("$..id", [7, 8, 9, 99]),
        ("$.data..tags[0]", ["x"]),
        ("$..['total']", [3]),
        ("$.next", [None]),  # a null is a match: the key is there
        ("$.data.items[ 1 ].name", ["b"]),
    ],
)
def test_paths_find_what_they_name(path: str, expected: list[Any]) -> None:
    assert compile_path(path).find(DOC) == expected


@pytest.mark.parametrize(
    "path",
    ["$.missing", "$.data.items[3]", "$.data.items[-4]", "$.data.total.x", "$.data[0]"],
)
def test_paths_that_match_nothing_give_nothing(path: str) -> None:
    assert compile_path(path).find(DOC) == []


def test_definite_paths_are_those_without_wildcards() -> None:
    assert compile_path("$.a[0]['b']").definite
    assert not compile_path("$.a[*]").definite
    assert not compile_path("$..a").definite
    assert not compile_path("$.*").definite


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("data.id", r"expected '\$' \(the document\) first at position 1, found 'd'"),
        ("$.", r"expected a name after '\.' at the end"),
        ("$.a[", r"expected a quoted name, a whole number or '\*' inside \[ \] at the end"),
        ("$.a[1", r"expected '\]' at the end"),
        ("$.a['b", r"expected the closing ' at the end"),
        ("$.a[?(@.x)]", r"inside \[ \] at position 5, found '\?'"),
        ("$.a[0:2]", r"expected '\]' at position 6, found ':'"),
        ("$a", r"expected '\.' or '\[' at position 2, found 'a'"),
    ],
)
def test_malformed_paths_say_what_and_where(path: str, message: str) -> None:
    with pytest.raises(JsonPathError, match=message) as e:
        compile_path(path)
    assert repr(path) in str(e.value)


def test_very_long_paths_are_refused() -> None:
    with pytest.raises(JsonPathError, match="longer than"):
        compile_path("$" + ".a" * 600)


def test_deep_documents_do_not_exhaust_the_stack() -> None:
    doc: Any = {"id": 0}
    for _ in range(5000):
        doc = {"child": doc}
    assert compile_path("$..id").find(doc) == [0]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "id"]), inner, max_size=3)
    ),
    max_leaves=20,
)


@given(doc=json_values)
def test_recursive_wildcard_visits_every_value_once(doc: Any) -> None:
    def count(value: Any) -> int:
        if isinstance(value, dict):
            return len(value) + sum(count(v) for v in value.values())
        if isinstance(value, list):
            return len(value) + sum(count(v) for v in value)
        return 0

    assert len(compile_path("$..*").find(doc)) == count(doc)
