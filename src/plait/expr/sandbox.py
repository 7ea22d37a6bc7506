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

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment, safe_range
from jinja2.utils import missing

from plait.errors import ExpressionError

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


def has_expression(value: str) -> bool:
    return START in value


class _Undefined(StrictUndefined):
    """StrictUndefined with messages that say which name was missing and what exists."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        name = self._undefined_name
        obj = self._undefined_obj
        if obj is missing:  # a plain missing variable
            return f"{name!r} is undefined"
        if isinstance(obj, Mapping):
            known = ", ".join(sorted(str(k) for k in obj)) or "nothing"
            return f"no {name!r} here (available: {known})"
        return f"{type(obj).__name__} value has no {name!r}"


def _finalize(value: Any) -> Any:
    """How a value looks when rendered into a string: JSON for data, ``true``/``false``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, separators=(",", ":"))
    return value


def _fromjson(value: str) -> Any:
    return json.loads(value)


def _tojson(value: Any) -> str:
    return json.dumps(value, default=str)


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Undefined):  # report the first missing name, not the last
            return obj
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        allowed = _SAFE_METHODS.get(type(obj))
        if allowed and attribute in allowed:
            return getattr(obj, attribute)
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Undefined):
            return obj
        if isinstance(obj, Mapping | list | tuple | str):
            try:
                return obj[argument]
            except (KeyError, IndexError, TypeError):
                pass
        return self.undefined(obj=obj, name=argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is too large")
            ints = isinstance(left, int) and isinstance(right, int)
            if ints and left.bit_length() * max(right, 0) > MAX_INT_BITS:
                raise SecurityError("the power would be too large a number")
            return left**right
        # operator == "*": bound repetition of strings and lists
        for seq, n in ((left, right), (right, left)):
            sized = isinstance(seq, str | list | tuple) and isinstance(n, int)
            if sized and len(seq) * n > MAX_SEQUENCE:
                raise SecurityError("repetition would build a value that is too large")
        return left * right


def _make_env() -> _Sandbox:
    env = _Sandbox(
        variable_start_string=START,
        variable_end_string=END,
        block_start_string=_OFF + "b<",
        block_end_string=_OFF + "b>",
        comment_start_string=_OFF + "c<",
        comment_end_string=_OFF + "c>",
        undefined=_Undefined,
        finalize=_finalize,
        autoescape=False,
        keep_trailing_newline=True,
        cache_size=0,
    )
    env.filters["fromjson"] = _fromjson
    env.filters["tojson"] = _tojson
    env.globals.clear()
    env.globals["range"] = safe_range
    env.globals["fromjson"] = _fromjson
    env.globals["tojson"] = _tojson
    env.globals["min"] = min
    env.globals["max"] = max
    env.globals["len"] = len
    return env


_ENV = _make_env()


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


def _chain(node: nodes.Node) -> tuple[str | int, ...] | None:
    """The static path of a Getattr/Getitem chain, or None when it is not static."""
    parts: list[str | int] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if not isinstance(node.arg.value, str | int):
                return None
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None


def _analyze_tree(tree: nodes.Node) -> Analysis:
    paths: list[tuple[str | int, ...]] = []
    names: set[str] = set()
    calls: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Call)):
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
            calls.add(node.node.name)
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            names.add(node.name)
        elif isinstance(node, nodes.Getattr | nodes.Getitem):
            path = _chain(node)
            if path is not None:
                paths.append(path)
    # Keep only the longest chains: ``steps.a.outputs.x`` also visits ``steps.a``.
    longest = [p for p in paths if not any(q != p and q[: len(p)] == p for q in paths)]
    return Analysis(tuple(dict.fromkeys(longest)), frozenset(names - calls), frozenset(calls))


def _syntax_error(source: str, exc: TemplateSyntaxError) -> ExpressionError:
    return ExpressionError(source, f"syntax error: {exc.message}")


@lru_cache(maxsize=4096)
def _compiled_expression(source: str) -> Callable[..., Any]:
    try:
        return _ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise _syntax_error(source, exc) from exc


@lru_cache(maxsize=4096)
def _compiled_template(source: str) -> Any:
    try:
        return _ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise _syntax_error(source, exc) from exc


@lru_cache(maxsize=4096)
def analyze(source: str, *, bare: bool = False) -> Analysis:
    """Parse ``source`` (a bare expression, or a string with ``${{ }}`` parts)."""
    text = f"{START} {source} {END}" if bare else source
    try:
        tree = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise _syntax_error(source, exc) from exc
    return _analyze_tree(tree)


def _check_result(source: str, value: Any) -> Any:
    if isinstance(value, StrictUndefined):
        try:
            str(value)
        except UndefinedError as exc:
            raise ExpressionError(source, exc.message or "undefined") from None
    if isinstance(value, float) and not math.isfinite(value):
        return value
    return value


def evaluate(source: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate a bare expression (an ``if:`` condition) and return its native value."""
    fn = _compiled_expression(source)
    try:
        return _check_result(source, fn(**scope))
    except ExpressionError:
        raise
    except UndefinedError as exc:
        raise ExpressionError(source, exc.message or "undefined") from None
    except SecurityError as exc:
        raise ExpressionError(source, f"not allowed: {exc}") from None
    except Exception as exc:  # user expressions may raise anything (1/0, bad filter args)
        raise ExpressionError(source, f"{type(exc).__name__}: {exc}") from None


def render_string(source: str, scope: Mapping[str, Any]) -> Any:
    """Render one string. A string that is exactly one ``${{ }}`` keeps the value's type."""
    if START not in source:
        return source
    whole = _WHOLE.match(source)
    if whole and START not in whole.group("expr"):
        return evaluate(whole.group("expr").strip(), scope)
    template = _compiled_template(source)
    try:
        out: str = template.render(scope)
    except UndefinedError as exc:
        raise ExpressionError(source, exc.message or "undefined") from None
    except SecurityError as exc:
        raise ExpressionError(source, f"not allowed: {exc}") from None
    except Exception as exc:
        raise ExpressionError(source, f"{type(exc).__name__}: {exc}") from None
    if len(out) > MAX_OUTPUT:
        raise ExpressionError(source, f"result is longer than {MAX_OUTPUT} characters")
    return out


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
