"""Sandboxed evaluation of ``${{ ... }}`` templates and bare ``if:`` conditions.

Built on Jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment` with ``${{ }}`` as the
only delimiter: block and comment syntax are switched off, so shell text such as
``${#array[@]}`` or ``{% raw %}`` passes through untouched. On top of Jinja's sandbox:

* attribute access reaches only mapping keys and a short list of harmless ``str``,
  ``list`` and ``dict`` methods — never into Python objects;
* ``*`` and ``**`` are checked so an expression cannot build a huge value, and a
  rendered string longer than :data:`MAX_OUTPUT` is refused; with no loops in the
  syntax and ``range`` capped by the sandbox, evaluation time is bounded;
* undefined names raise with a message naming what was missing and what was there.

Compiled templates are cached by source text, so rendering the same step twice costs
microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

START, END = "${{", "}}"
MAX_OUTPUT = 1_000_000
MAX_SEQUENCE = 100_000
MAX_EXPONENT = 1_000
MAX_INT_BITS = 100_000

_WHOLE = re.compile(r"^\s*\$\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)
_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        [
            "startswith",
            "endswith",
            "lower",
            "upper",
            "strip",
            "lstrip",
            "rstrip",
            "split",
            "rsplit",
            "replace",
            "title",
            "capitalize",
            "splitlines",
            "isdigit",
            "isalpha",
            "count",
            "find",
        ]
    ),
    dict: frozenset({"get", "keys", "values", "items"}),
    list: frozenset({"index", "count"}),
}
# Never-matching delimiters switch block and comment syntax off.
_OFF = "\x00\x01off"


#: The functions an expression may call besides the scope's (the environment's globals).
GLOBAL_FUNCTIONS = frozenset({"range", "fromjson", "tojson", "min", "max", "len"})


def has_expression(value: str) -> bool:
    return START in value


def environment() -> Any:
    """The sandboxed Jinja2 environment (imports Jinja2 on first use)."""
    from plait.expr import jinja_env

    return jinja_env.ENV


@dataclass(frozen=True, slots=True)
class Analysis:
    """What an expression refers to, found without evaluating it.

    ``paths`` are the dotted/constant-subscript chains rooted at a name, e.g.
    ``("steps", "deploy", "outputs", "url")``; ``calls`` are the names of functions
    called directly (``success``, ``failure`` …).
    """

    paths: tuple[tuple[str | int, ...], ...] = ()
    names: frozenset[str] = frozenset()
    calls: frozenset[str] = field(default_factory=frozenset)

    def steps_referenced(self) -> set[str]:
        return {str(p[1]) for p in self.paths if len(p) >= 2 and p[0] == "steps"}


def analyze(source: str, *, bare: bool = False) -> Analysis:
    """Parse ``source`` (a bare expression, or a string with ``${{ }}`` parts)."""
    from plait.expr import jinja_env

    return jinja_env.analyze(source, bare=bare)


def evaluate(source: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate a bare expression (an ``if:`` condition) and return its native value."""
    from plait.expr import jinja_env

    return jinja_env.evaluate(source, scope)


def render_string(source: str, scope: Mapping[str, Any]) -> Any:
    """Render one string. A string that is exactly one ``${{ }}`` keeps the value's type."""
    if START not in source:
        return source
    whole = _WHOLE.match(source)
    if whole and START not in whole.group("expr"):
        return evaluate(whole.group("expr").strip(), scope)
    from plait.expr import jinja_env

    return jinja_env.render_template(source, scope)


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (dicts and lists are walked recursively)."""
    if isinstance(value, str):
        return render_string(value, scope)
    if isinstance(value, Mapping):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, scope) for v in value]
    return value


def contains_expression(value: Any) -> bool:
    """Whether any string inside ``value`` holds a ``${{ }}`` template."""
    if isinstance(value, str):
        return START in value
    if isinstance(value, Mapping):
        return any(contains_expression(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_expression(v) for v in value)
    return False


def analyze_value(value: Any) -> list[tuple[str, Analysis]]:
    """Every template string inside ``value`` with its analysis (for validation)."""
    found: list[tuple[str, Analysis]] = []
    if isinstance(value, str):
        if START in value:
            found.append((value, analyze(value)))
    elif isinstance(value, Mapping):
        for v in value.values():
            found.extend(analyze_value(v))
    elif isinstance(value, list | tuple):
        for v in value:
            found.extend(analyze_value(v))
    return found
