"""YAML loading with positions: what the user sees as FILE:LINE:COL."""

from __future__ import annotations

import pytest

from plait.errors import ValidationError
from plait.model.yamlload import load_yaml

DOC = """\
name: demo
steps:
  - id: a
    parallel:
      - id: b
        run: echo b
      - {id: c, run: echo c}
"""


def test_positions_of_keys_and_values_by_path() -> None:
    doc = load_yaml(DOC, "w.yaml")
    pos = doc.positions
    assert pos.keys[("name",)] == (1, 1)
    assert pos.values[("name",)] == (1, 7)
    assert pos.values[("steps", 0)] == (3, 5)
    assert pos.keys[("steps", 0, "parallel", 0, "run")] == (6, 9)
    assert pos.values[("steps", 0, "parallel", 0, "run")] == (6, 14)
    assert pos.keys[("steps", 0, "parallel", 1, "id")] == (7, 10)
    assert pos.values[("steps", 0, "parallel", 1, "run")] == (7, 22)


def test_locate_falls_back_to_the_nearest_known_ancestor() -> None:
    pos = load_yaml(DOC).positions
    assert pos.locate(("steps", 0, "parallel", 0, "needs", 3)) == (5, 9)
    assert pos.locate(("steps", 0, "parallel", 0, "run"), at_key=True) == (6, 9)
    assert pos.locate(("nothing",)) == (1, 1)


def test_keys_are_text_and_only_true_false_are_booleans() -> None:
    doc = load_yaml("on: yes\nx: {a: off, b: true, c: False, d: 1:30, e: 2024-01-02, f: 012}\n")
    assert doc.data == {
        "on": "yes",
        "x": {"a": "off", "b": True, "c": False, "d": "1:30", "e": "2024-01-02", "f": 12},
    }


def test_numbers_null_and_floats() -> None:
    doc = load_yaml("a: 3\nb: 2.5\nc: null\nd: ~\ne: 0x10\nf: -7\n")
    assert doc.data == {"a": 3, "b": 2.5, "c": None, "d": None, "e": 16, "f": -7}


def test_duplicate_keys_are_problems_at_the_second_key() -> None:
    doc = load_yaml("name: a\nsteps: []\nname: b\n", "w.yaml")
    assert [str(p) for p in doc.problems] == ["w.yaml:3:1: duplicate key 'name' (first at line 1)"]
    assert doc.data["name"] == "a"


def test_merge_keys_fill_in_without_duplicates() -> None:
    doc = load_yaml("base: &b {timeout: 5m, run: x}\nstep:\n  <<: *b\n  run: y\n")
    assert doc.data["step"] == {"run": "y", "timeout": "5m"}
    assert doc.problems == []


def test_syntax_error_has_the_marks_position() -> None:
    with pytest.raises(ValidationError) as info:
        load_yaml("name: x\nsteps:\n  - id: a\n    run: [unclosed\n", "bad.yaml")
    (problem,) = info.value.problems
    assert problem.file == "bad.yaml"
    assert problem.line == 5
    assert problem.message.startswith("invalid YAML:")


def test_bad_indentation_is_a_syntax_error_with_position() -> None:
    with pytest.raises(ValidationError) as info:
        load_yaml("name: x\n  steps: 1\n", "bad.yaml")
    assert str(info.value).startswith("bad.yaml:2:8: invalid YAML: mapping values")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "w.yaml:1:1: the file is empty (a workflow needs at least name and steps)"),
        ("# only a comment\n", "w.yaml:1:1: the file is empty"),
        ("- a\n- b\n", "w.yaml:1:1: a workflow must be a mapping of keys like name and steps"),
        ("just text\n", "w.yaml:1:1: a workflow must be a mapping"),
    ],
)
def test_top_level_must_be_a_mapping(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_yaml(text, "w.yaml")
    assert str(info.value).startswith(message)


def test_two_documents_are_refused() -> None:
    with pytest.raises(ValidationError, match="single document"):
        load_yaml("name: a\n---\nname: b\n")


def test_unknown_tags_and_non_text_keys_are_problems() -> None:
    doc = load_yaml("a: !Ref x\n? [1, 2]\n: v\n", "w.yaml")
    messages = [str(p) for p in doc.problems]
    assert messages[0].startswith("w.yaml:1:4: invalid value: could not determine a constructor")
    assert messages[1] == "w.yaml:2:3: a key must be plain text"


def test_recursive_alias_is_a_problem_not_a_hang() -> None:
    doc = load_yaml("a: &x [1, *x]\n")
    assert doc.data == {"a": [1, None]}
    assert "refers to itself" in doc.problems[0].message


def test_alias_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from plait.model import yamlload

    monkeypatch.setattr(yamlload, "MAX_NODES", 1000)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 6)]
    with pytest.raises(ValidationError, match="too large"):
        load_yaml("\n".join(lines) + "\n")


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    with pytest.raises(ValidationError, match=r"nested too deeply"):
        load_yaml("a: " + "[" * 5000 + "]" * 5000 + "\n")
