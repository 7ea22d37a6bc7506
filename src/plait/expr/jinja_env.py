"""The Jinja2 half of :mod:`plait.expr.sandbox`, imported on first use.

A workflow without ``${{ }}`` and without ``if:`` never needs Jinja2, so ``plait run``
of such a file does not pay for importing it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment, safe_range
from jinja2.utils import missing

from plait.errors import ExpressionError
from plait.expr.sandbox import (
    _OFF,
    _SAFE_METHODS,
    END,
    GLOBAL_FUNCTIONS,
    MAX_EXPONENT,
    MAX_INT_BITS,
    MAX_OUTPUT,
    MAX_SEQUENCE,
    START,
    Analysis,
)


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


ENV = _make_env()


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
        return ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise _syntax_error(source, exc) from exc


@lru_cache(maxsize=4096)
def _compiled_template(source: str) -> Any:
    try:
        return ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise _syntax_error(source, exc) from exc


@lru_cache(maxsize=4096)
def analyze(source: str, *, bare: bool = False) -> Analysis:
    text = f"{START} {source} {END}" if bare else source
    try:
        tree = ENV.parse(text)
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


def render_template(source: str, scope: Mapping[str, Any]) -> Any:
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


if frozenset(ENV.globals) != GLOBAL_FUNCTIONS:  # validation names them without Jinja2
    raise RuntimeError("plait.expr.sandbox.GLOBAL_FUNCTIONS is out of date")
