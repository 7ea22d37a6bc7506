"""YAML loading that remembers where every key and value is.

PyYAML composes the document into nodes (with the C parser when libyaml is available);
this module turns the nodes into plain Python data and records the 1-based line and
column of every key and value by path, e.g. ``("steps", 0, "parallel", 1, "id")``, so
that every later problem can be reported as ``FILE:LINE:COL: message``.

Decisions that differ from PyYAML's defaults:

* mapping keys are always text (``on:`` is the key ``"on"``, not ``True``);
* only ``true``/``false`` are booleans (YAML 1.2): ``yes``, ``no``, ``on``, ``off`` stay
  text, and ``1:30`` stays text instead of becoming the sexagesimal number 90;
* dates and timestamps stay text, so every value is JSON-serialisable;
* a duplicate key is an error, not "last one wins".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from plait.errors import Problem, ValidationError
from plait.model.spec import Path

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Pos = tuple[int, int]

_TAG = "tag:yaml.org,2002:"
_DECIMAL = re.compile(r"[-+]?[0-9]+")
#: Alias expansion bound: a "billion laughs" document stops here instead of eating memory.
MAX_NODES = 200_000


@dataclass(slots=True)
class Positions:
    """Where each key and value of a document is (1-based line and column)."""

    keys: dict[Path, Pos] = field(default_factory=dict)
    values: dict[Path, Pos] = field(default_factory=dict)

    def locate(self, path: Path, *, at_key: bool = False) -> Pos:
        """The position of ``path`` (its key when ``at_key``), else of its nearest
        ancestor that has one, else ``(1, 1)``."""
        if at_key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values:
                return self.values[path]
            if path in self.keys:
                return self.keys[path]
            path = path[:-1]
        return self.values.get((), (1, 1))

    def line(self, path: Path) -> int:
        return self.locate(path)[0]


@dataclass(slots=True)
class YamlDocument:
    """A loaded document: its data, positions, and non-fatal problems (duplicate keys)."""

    data: dict[str, Any]
    positions: Positions
    problems: list[Problem]


def _pos(node: yaml.Node) -> Pos:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, loader: Any, filename: str) -> None:
        self.loader = loader
        self.filename = filename
        self.positions = Positions()
        self.problems: list[Problem] = []
        self.active: set[int] = set()
        self.count = 0

    def problem(self, node: yaml.Node, message: str, path: Path) -> None:
        line, col = _pos(node)
        self.problems.append(Problem(message, self.filename, line, col, path))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.positions.values[path] = _pos(node)
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge(node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            self.problem(node, "an alias refers to itself", path)
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        tag, text = node.tag, node.value
        if tag == _TAG + "str" or tag == _TAG + "timestamp":
            return text
        if tag == _TAG + "bool":
            return text.lower() == "true" if text.lower() in ("true", "false") else text
        if tag == _TAG + "int":
            if _DECIMAL.fullmatch(text):
                return int(text)
            if ":" in text:
                return text
        if tag == _TAG + "float" and ":" in text:
            return text
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problem(node, f"invalid value: {getattr(exc, 'problem', exc)}", path)
            return None

    def mapping(self, node: yaml.Node, path: Path) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        result: dict[str, Any] = {}
        pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
        for key_node, value_node in pairs:
            if key_node.tag == _TAG + "merge":
                merged.update(self.merge(value_node, path))
        for key_node, value_node in pairs:
            if key_node.tag == _TAG + "merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, "a key must be plain text", path)
                continue
            key = key_node.value
            if key in result:
                first = self.positions.keys[(*path, key)][0]
                self.problem(
                    key_node, f"duplicate key {key!r} (first at line {first})", (*path, key)
                )
                continue
            self.positions.keys[(*path, key)] = _pos(key_node)
            result[key] = self.build(value_node, (*path, key))
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def merge(self, node: yaml.Node, path: Path) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):  # earlier sources win, as in YAML's merge key
            if not isinstance(source, yaml.MappingNode):
                self.problem(source, "'<<' merges only mappings", path)
                continue
            merged.update(self.mapping(source, path))
        return merged


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _kind(node: yaml.Node) -> str:
    return "a list" if isinstance(node, yaml.SequenceNode) else "a single value"


def load_yaml(text: str, filename: str = "<workflow>") -> YamlDocument:
    """Load one YAML document whose top level is a mapping.

    Raises :class:`ValidationError` for syntax errors, an empty document or a top level
    that is not a mapping; duplicate keys and bad scalars are returned as problems.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        builder = _Builder(loader, filename)
        if node is None:
            message = "the file is empty (a workflow needs at least name and steps)"
            raise ValidationError([Problem(message, filename, 1, 1)])
        if not isinstance(node, yaml.MappingNode):
            line, col = _pos(node)
            message = f"a workflow must be a mapping of keys like name and steps, not {_kind(node)}"
            raise ValidationError([Problem(message, filename, line, col)])
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        raise ValidationError([_syntax_problem(exc, filename)]) from None
    except yaml.YAMLError as exc:
        raise ValidationError([Problem(f"invalid YAML: {exc}", filename)]) from None
    except RecursionError:
        message = "the document is nested too deeply"
        raise ValidationError([Problem(message, filename, 1, 1)]) from None
    except _TooLarge as exc:
        line, col = _pos(exc.node)
        message = "the document is too large (aliases expand to too many values)"
        raise ValidationError([Problem(message, filename, line, col)]) from None
    finally:
        loader.dispose()
    return YamlDocument(data, builder.positions, builder.problems)


def _syntax_problem(exc: yaml.MarkedYAMLError, filename: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    reason = exc.problem or "syntax error"
    if exc.context and exc.problem_mark is not None:
        reason = f"{reason} ({exc.context})"
    if mark is None:
        return Problem(f"invalid YAML: {reason}", filename)
    return Problem(f"invalid YAML: {reason}", filename, mark.line + 1, mark.column + 1)
