"""A small JSONPath subset, to pick values out of JSON responses (``http`` ``extract:``).

Supported: ``$`` (the document), ``.name`` and ``['name']`` (a key of an object),
``[n]`` and ``[-n]`` (an element of a list, counted from the end when negative), ``[*]``
and ``.*`` (every element or value), and ``..name`` / ``..[…]`` / ``..*`` (recursive
descent: the same, at any depth). Filters, slices, unions and script expressions are
not: they are where JSONPath libraries differ and where evaluation stops being
obviously safe. A path is parsed once into segments and evaluated by walking plain
dicts and lists — no ``eval``, no regular expression built from user text, and the work
is bounded by the size of the document.

A path without ``*`` or ``..`` is *definite*: it names at most one value. Other paths
give the list of everything they match, in document order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from plait.errors import PlaitError

#: longer paths are refused: nobody writes one, and it bounds the parser's work
MAX_PATH_CHARS = 1000
_NAME = re.compile(r"[^.\[\]\s'\"*]+")
_INDEX = re.compile(r"-?\d{1,9}")


class JsonPathError(PlaitError):
    """A path that is not in the supported subset; the message names it and where."""


@dataclass(frozen=True, slots=True)
class Segment:
    kind: Literal["key", "index", "all"]
    value: str | int | None = None
    #: ``..``: applies at any depth below the current values, not only to them
    recursive: bool = False


@dataclass(frozen=True, slots=True)
class JsonPath:
    text: str
    segments: tuple[Segment, ...]

    @property
    def definite(self) -> bool:
        """Whether the path names at most one value (no ``*``, no ``..``)."""
        return not any(s.kind == "all" or s.recursive for s in self.segments)

    def find(self, document: Any) -> list[Any]:
        """Every value the path matches, in document order (empty when none)."""
        nodes = [document]
        for segment in self.segments:
            targets = _descendants(nodes) if segment.recursive else nodes
            nodes = [found for node in targets for found in _apply(segment, node)]
        return nodes


def compile_path(text: str) -> JsonPath:
    """Parse ``text``; :class:`JsonPathError` says what is wrong and at which character."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.pos = 0

    def fail(self, expected: str) -> JsonPathError:
        if self.pos >= len(self.text):
            return JsonPathError(f"JSONPath {self.text!r}: {expected} at the end")
        found = self.text[self.pos]
        return JsonPathError(
            f"JSONPath {self.text!r}: {expected} at position {self.pos + 1}, found {found!r}"
        )

    def parse(self) -> JsonPath:
        text = self.text
        if len(text) > MAX_PATH_CHARS:
            raise JsonPathError(f"JSONPath is longer than {MAX_PATH_CHARS} characters")
        if not text.startswith("$"):
            raise self.fail("expected '$' (the document) first")
        self.pos = 1
        segments: list[Segment] = []
        while self.pos < len(text):
            segments.append(self.segment())
        return JsonPath(text, tuple(segments))

    def segment(self) -> Segment:
        text = self.text
        if text[self.pos] == "[":
            return self.bracket(recursive=False)
        if text[self.pos] != ".":
            raise self.fail("expected '.' or '['")
        recursive = text.startswith("..", self.pos)
        self.pos += 2 if recursive else 1
        if recursive and self.pos < len(text) and text[self.pos] == "[":
            return self.bracket(recursive=True)
        if self.pos < len(text) and text[self.pos] == "*":
            self.pos += 1
            return Segment("all", recursive=recursive)
        match = _NAME.match(text, self.pos)
        if match is None:
            raise self.fail("expected a name after '.'")
        self.pos = match.end()
        return Segment("key", match.group(), recursive)

    def bracket(self, *, recursive: bool) -> Segment:
        self.pos += 1  # the "["
        self.spaces()
        text = self.text
        if self.pos < len(text) and text[self.pos] in "'\"":
            segment = Segment("key", self.quoted(), recursive)
        elif self.pos < len(text) and text[self.pos] == "*":
            self.pos += 1
            segment = Segment("all", recursive=recursive)
        elif match := _INDEX.match(text, self.pos):
            self.pos = match.end()
            segment = Segment("index", int(match.group()), recursive)
        else:
            raise self.fail("expected a quoted name, a whole number or '*' inside [ ]")
        self.spaces()
        if self.pos >= len(text) or text[self.pos] != "]":
            raise self.fail("expected ']'")
        self.pos += 1
        return segment

    def quoted(self) -> str:
        text = self.text
        quote = text[self.pos]
        self.pos += 1
        out: list[str] = []
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\" and self.pos + 1 < len(text):
                out.append(text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                return "".join(out)
            out.append(char)
        raise self.fail(f"expected the closing {quote}")

    def spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1


def _apply(segment: Segment, node: Any) -> list[Any]:
    if segment.kind == "all":
        if isinstance(node, dict):
            return list(node.values())
        return list(node) if isinstance(node, list) else []
    if segment.kind == "key":
        if isinstance(node, dict) and segment.value in node:
            return [node[segment.value]]
        return []
    index = segment.value
    if isinstance(node, list) and isinstance(index, int) and -len(node) <= index < len(node):
        return [node[index]]
    return []


def _descendants(nodes: list[Any]) -> list[Any]:
    """Each node and everything inside it, depth first in document order (iterative:
    a deeply nested document must not exhaust the stack)."""
    out: list[Any] = []
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, dict):
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return out
