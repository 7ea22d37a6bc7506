"""Load and validate a workflow file, reporting every problem at once with its position.

:func:`load_workflow` runs three passes and collects the problems of all of them that
can run: YAML (syntax, duplicate keys), shape (the pydantic models of
:mod:`plait.model.spec`) and meaning (:mod:`plait.model.compile`, with the expression
checks of :class:`ExpressionChecker` below). Each problem is placed at the line and
column of the key or value it is about and the list is sorted by position. The meaning
pass needs a well-shaped document, so it runs only when the shape pass found nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path as FilePath
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails

from plait.errors import ExpressionError, Problem, ValidationError
from plait.expr import sandbox
from plait.expr.sandbox import END, START, analyze
from plait.model.plan import STATUS_FUNCTIONS, Plan
from plait.model.spec import (
    INPUT_NAME_PATTERN,
    NAME_PATTERN,
    STEP_ID_PATTERN,
    FieldProblem,
    Path,
    WorkflowSpec,
    did_you_mean,
    format_path,
)
from plait.model.triggers import (
    BrokerTrigger,
    EventTrigger,
    ScheduleTrigger,
    TriggerSpec,
    WebhookTrigger,
)
from plait.model.yamlload import YamlDocument, load_yaml

if TYPE_CHECKING:
    from plait.model.compile import Graph, Node

# --- shape errors ----------------------------------------------------------------------
# pydantic's errors, said in the workflow's words and placed at the value they are about.

_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}
_PATTERN_HINTS = {
    NAME_PATTERN: "lowercase letters, digits, '_' and '-', starting with a letter or digit",
    STEP_ID_PATTERN: "letters, digits, '_' and '-', not starting with '-'",
    INPUT_NAME_PATTERN: "letters, digits, '_' and '-', starting with a letter or '_'",
}
_FIELD_HINTS = {
    "retries": "a number of retries or a policy like {max: 3, backoff: exponential}",
    "needs": "a step id or a list of step ids",
    "if": "an expression or true/false",
    "for_each": "an expression or a list",
}


def _has(data: Any, part: str | int) -> bool:
    if isinstance(data, Mapping):
        return isinstance(part, str) and part in data
    return isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)


def _clean_loc(loc: tuple[str | int, ...], data: Any, missing: bool) -> tuple[Path, str | None]:
    """The part of pydantic's ``loc`` that exists in ``data`` (union and validator tags
    are dropped), and the name of the missing key for ``missing`` errors."""
    path: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        if _has(cur, part):
            cur = cur[part]
            path.append(part)
        elif missing and i == len(loc) - 1:
            return tuple(path), str(part)
    return tuple(path), None


def _model_at(tp: Any, path: Path) -> type[BaseModel] | None:
    """The model class describing the value at ``path`` under type ``tp``."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _model_at(get_args(tp)[0], path)
    if origin in (Union, UnionType):
        for arg in get_args(tp):
            found = _model_at(arg, path)
            if found is not None:
                return found
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if not path:
            return tp
        for name, info in tp.model_fields.items():
            if path[0] in (name, info.alias):
                return _model_at(info.annotation, path[1:])
        return None
    if not path:
        return None
    if origin is list and isinstance(path[0], int):
        return _model_at(get_args(tp)[0], path[1:])
    if origin is dict and isinstance(path[0], str):
        return _model_at(get_args(tp)[1], path[1:])
    return None


def known_keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: ErrorDetails, path: Path, missing: str | None, root: type[BaseModel]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        key = str(path[-1])
        model = _model_at(root, path[:-1])
        hint = did_you_mean(key, known_keys(model)) if model else ""
        return f"unknown key {key!r}{hint}"
    if kind == "missing":
        return f"missing required key {missing!r}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(str(ctx.get("pattern")), f"the pattern {ctx.get('pattern')}")
        return f"{_show(value)} is not allowed (use {hint})"
    if kind == "literal_error":
        return f"{_show(value)} is not allowed (expected {ctx.get('expected')})"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {_show(value)}"
    if kind == "too_short":
        return "needs at least one item"
    if kind in ("greater_than_equal", "greater_than"):
        limit = ctx.get("ge", ctx.get("gt"))
        return f"must be at least {limit}, got {_show(value)}"
    return str(err["msg"])


def describe_errors(
    errors: Sequence[ErrorDetails], data: Any, root: type[BaseModel], prefix: Path = ()
) -> list[FieldProblem]:
    """Readable problems for pydantic ``errors`` raised validating ``data`` as ``root``.

    Paths are prefixed with ``prefix`` (e.g. a step's ``with``); when a union field fails
    in every branch, the branches' type errors become one message.
    """
    cleaned = [(*_clean_loc(e["loc"], data, e["type"] == "missing"), e) for e in errors]
    deeper = {path[:n] for path, _, _ in cleaned for n in range(len(path))}
    merged: dict[Path, list[str]] = {}
    out: list[FieldProblem] = []
    for path, missing, err in cleaned:
        if err["type"] in _TYPE_WORDS:
            if path in deeper:  # a union branch matched better deeper down
                continue
            merged.setdefault(path, []).append(_TYPE_WORDS[err["type"]])
            if len(merged[path]) > 1:
                continue
        message = _message(err, path, missing, root)
        at_key = err["type"] == "extra_forbidden" or "[key]" in err["loc"]
        out.append(FieldProblem(prefix + path, message, err["type"], at_key))
    return [_merge_types(p, merged, data, prefix) for p in out]


def _merge_types(
    problem: FieldProblem, merged: dict[Path, list[str]], data: Any, prefix: Path
) -> FieldProblem:
    path = problem.path[len(prefix) :]
    words = list(dict.fromkeys(merged.get(path, [])))
    message = problem.message
    hinted = words and path and str(path[-1]) in _FIELD_HINTS
    if problem.kind in _TYPE_WORDS and (len(words) > 1 or hinted):
        field = str(path[-1]) if path else ""
        want = _FIELD_HINTS.get(field) or " or ".join(words)
        message = f"expected {want}, got {_show(_value_at(data, path))}"
    where = format_path(problem.path[:-1] if problem.at_key else problem.path)
    return FieldProblem(
        problem.path, f"{where}: {message}" if where else message, problem.kind, problem.at_key
    )


def _value_at(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


# --- expressions -----------------------------------------------------------------------

_WORKFLOW_NAMES = frozenset({"inputs", "env", "run", "trigger", "secrets"})
_STEP_NAMES = _WORKFLOW_NAMES | {"steps"}
_ELSEWHERE = {
    "item": "only in a step with for_each",
    "index": "only in a step with for_each",
    "result": "only in a step's outputs",
    "steps": "only in steps, workflow outputs and notify messages",
    "event": "only in an event trigger's if",
}
_STEP_FIELDS = ("outputs", "status")
_WHOLE = re.compile(r"^\s*\$\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


# The sandbox's own environment: its global functions, filters and tests are what an
# expression may use besides the scope's names.
_FUNCTIONS = sandbox.GLOBAL_FUNCTIONS | STATUS_FUNCTIONS


def bare_expression(value: str) -> str | None:
    """The condition in an ``if:`` — a bare expression or the inside of exactly one
    ``${{ }}`` — or None when the text mixes templates and plain text."""
    if START not in value:
        return value
    whole = _WHOLE.match(value)
    if whole and START not in whole["expr"] and not whole["expr"].rstrip().endswith(END):
        return whole["expr"].strip()
    return None


@dataclass(frozen=True, slots=True)
class _Scope:
    """What an expression at some place may use. ``step`` is the referring step: the
    steps it reads must have run before it; None lets it read every step."""

    names: frozenset[str]
    step: str | None = None


class ExpressionChecker:
    """Checks every ``${{ }}`` and ``if:`` of a spec: syntax, names, inputs, steps."""

    def __init__(self, spec: WorkflowSpec, graph: Graph) -> None:
        self.spec = spec
        self.graph = graph
        self.problems: list[FieldProblem] = []
        self.secrets: set[str] = set()

    def check_all(self) -> None:
        self._workflow()
        for node in self.graph.nodes.values():
            self._step(node, node.key)
        for node in self.graph.duplicates:
            self._step(node, None)

    def _add(self, path: Path, message: str) -> None:
        self.problems.append(FieldProblem(path, f"{format_path(path)}: {message}"))

    def walk(self, value: Any, path: Path, scope: _Scope) -> None:
        if isinstance(value, str):
            if START in value:
                self.check(value, path, scope)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self.walk(item, (*path, key), scope)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                self.walk(item, (*path, i), scope)

    def condition(self, value: str, path: Path, scope: _Scope) -> None:
        source = bare_expression(value)
        if source is None:
            self._add(path, "write the condition as a bare expression or as one ${{ }}")
        else:
            self.check(source, path, scope, bare=True)

    def check(self, source: str, path: Path, scope: _Scope, *, bare: bool = False) -> None:
        try:
            analysis = analyze(source, bare=bare)
        except ExpressionError as exc:
            self._add(path, str(exc))
            return
        for name in sorted(analysis.names - scope.names - _FUNCTIONS):
            self._add(path, self._name_problem(name, scope))
        for call in sorted(analysis.calls - _FUNCTIONS):
            self._add(path, f"unknown function {call!r}{did_you_mean(call, sorted(_FUNCTIONS))}")
        if "|" in source or " is " in source:
            self._filters(f"{START} {source} {END}" if bare else source, path)
        for ref in analysis.paths:
            if ref[0] in scope.names and len(ref) >= 2:
                self._reference(ref, path, scope)

    def _filters(self, text: str, path: Path) -> None:
        from jinja2 import nodes  # only for expressions with a filter or test

        env = sandbox.environment()
        tree = env.parse(text)  # analyze() parsed it already, so this cannot fail
        for node in tree.find_all((nodes.Filter, nodes.Test)):
            known = env.filters if isinstance(node, nodes.Filter) else env.tests
            if node.name not in known:
                kind = "filter" if isinstance(node, nodes.Filter) else "test"
                hint = did_you_mean(node.name, sorted(known))
                self._add(path, f"unknown {kind} {node.name!r}{hint}")

    def _name_problem(self, name: str, scope: _Scope) -> str:
        if name in _ELSEWHERE:
            return f"{name!r} is available {_ELSEWHERE[name]}"
        names = sorted(scope.names)
        return f"unknown name {name!r}{did_you_mean(name, names)} (known: {', '.join(names)})"

    def _reference(self, ref: tuple[str | int, ...], path: Path, scope: _Scope) -> None:
        root, key = ref[0], str(ref[1])
        if root == "inputs" and key not in self.spec.inputs:
            self._add(path, f"unknown input {key!r}{did_you_mean(key, list(self.spec.inputs))}")
        elif root == "secrets":
            self.secrets.add(key)
        elif root == "steps":
            problem = self._step_problem(key, ref[2:], scope)
            if problem:
                self._add(path, problem)

    def _step_problem(self, key: str, rest: tuple[str | int, ...], scope: _Scope) -> str | None:
        if key not in self.graph.nodes:
            return f"unknown step {key!r}{did_you_mean(key, list(self.graph.nodes))}"
        if key == scope.step:
            return f"step {key!r} cannot read its own steps.{key} (use result in outputs:)"
        if scope.step is not None and not self.graph.can_refer(scope.step, key):
            return (
                f"steps.{key} cannot have run before step {scope.step!r} "
                f"(add {key!r} to its needs, or move it earlier)"
            )
        if rest and rest[0] not in _STEP_FIELDS:
            return f"steps.{key}.{rest[0]}: a step has only outputs and status"
        return None

    def _step(self, node: Node, key: str | None) -> None:
        spec, at = node.spec, node.path
        base = _Scope(_STEP_NAMES, step=key)
        each = replace(base, names=base.names | {"item", "index"}) if spec.for_each else base
        for key, value in (("name", spec.name), ("run", spec.run), ("with", spec.with_)):
            self.walk(value, (*at, key), each)
        self.walk(spec.env, (*at, "env"), each)
        self.walk(spec.outputs, (*at, "outputs"), replace(each, names=each.names | {"result"}))
        if isinstance(spec.for_each, str):
            self.check(spec.for_each, (*at, "for_each"), base, bare=START not in spec.for_each)
        else:
            self.walk(spec.for_each, (*at, "for_each"), base)
        if isinstance(spec.if_, str):
            self.condition(spec.if_, (*at, "if"), base)

    def _workflow(self) -> None:
        spec = self.spec
        workflow = _Scope(_WORKFLOW_NAMES)
        self.walk(spec.env, ("env",), workflow)
        if spec.defaults is not None:
            self.walk(spec.defaults.env, ("defaults", "env"), workflow)
        if spec.concurrency is not None:
            self.walk(spec.concurrency.key, ("concurrency", "key"), workflow)
        for i, trigger in enumerate(spec.triggers):
            self._trigger(trigger, ("triggers", i, trigger.kind))
        every_step = _Scope(_STEP_NAMES)
        self.walk(spec.outputs, ("outputs",), every_step)
        for i, notify in enumerate(spec.notify):
            self.walk(notify.message, ("notify", i, "message"), every_step)

    def _trigger(self, trigger: TriggerSpec, at: Path) -> None:
        body = getattr(trigger, trigger.kind)
        outside = _Scope(frozenset({"env", "secrets"}))
        if isinstance(body, WebhookTrigger):
            self.walk(body.secret, (*at, "secret"), outside)
        elif isinstance(body, ScheduleTrigger):
            for name in body.inputs:
                if name not in self.spec.inputs:
                    hint = did_you_mean(name, list(self.spec.inputs))
                    self._add((*at, "inputs", name), f"unknown input {name!r}{hint}")
            self.walk(body.inputs, (*at, "inputs"), outside)
        elif isinstance(body, EventTrigger) and body.if_ is not None:
            scope = replace(outside, names=outside.names | {"event"})
            self.condition(body.if_, (*at, "if"), scope)
        elif isinstance(body, BrokerTrigger):
            # a broker message's inputs and dedup key see the message, never secrets:
            # what they render is stored with the run in plain text
            message = _Scope(frozenset({"env", "trigger"}))
            for name in body.inputs:
                if name not in self.spec.inputs:
                    hint = did_you_mean(name, list(self.spec.inputs))
                    self._add((*at, "inputs", name), f"unknown input {name!r}{hint}")
            self.walk(body.inputs, (*at, "inputs"), message)
            self.walk(body.dedup_key, (*at, "dedup_key"), message)
            self.walk(body.url, (*at, "url"), outside)


# --- loading ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedWorkflow:
    """A validated workflow file: its spec, compiled plan, source text and checksum."""

    spec: WorkflowSpec
    plan: Plan
    source: str
    checksum: str


def _place(found: Iterable[FieldProblem], doc: YamlDocument, filename: str) -> list[Problem]:
    out = []
    for p in found:
        line, col = doc.positions.locate(p.path, at_key=p.at_key)
        out.append(Problem(p.message, filename, line, col, p.path))
    return out


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line == 0, p.line, p.col))


def load_workflow(
    text: str, filename: str = "<workflow>", actions: Mapping[str, type[BaseModel]] | None = None
) -> LoadedWorkflow:
    """Parse, validate and compile a workflow document.

    ``actions`` maps action names to their input models; when given, ``uses`` must name
    one of them and ``with`` must fit it (values holding ``${{ }}`` are checked at run
    time). Raises :class:`ValidationError` listing every problem as FILE:LINE:COL.
    """
    from plait.model.compile import build_plan  # compile imports this module's checker

    doc = load_yaml(text, filename)
    problems = list(doc.problems)
    try:
        spec = WorkflowSpec.model_validate(doc.data, by_name=False)
    except PydanticValidationError as exc:
        found = describe_errors(exc.errors(), doc.data, WorkflowSpec)
        raise ValidationError(_sorted([*problems, *_place(found, doc, filename)])) from None
    plan, found = build_plan(spec, actions, doc.positions.line)
    problems.extend(_place(found, doc, filename))
    if problems or plan is None:
        raise ValidationError(_sorted(problems))
    checksum = hashlib.sha256(text.encode()).hexdigest()
    return LoadedWorkflow(spec, plan, text, checksum)


def load_file(
    path: str | FilePath, actions: Mapping[str, type[BaseModel]] | None = None
) -> LoadedWorkflow:
    """:func:`load_workflow` on a file; an unreadable file is a ValidationError too."""
    try:
        text = FilePath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError([Problem(f"cannot read: {exc.strerror}", str(path))]) from exc
    except UnicodeDecodeError as exc:
        raise ValidationError([Problem(f"not UTF-8 text: {exc.reason}", str(path))]) from exc
    return load_workflow(text, str(path), actions)


def parse_spec(data: Mapping[str, Any], filename: str = "<python>") -> WorkflowSpec:
    """Validate workflow ``data`` (YAML keys) into a spec; no positions are known."""
    try:
        return WorkflowSpec.model_validate(data)
    except PydanticValidationError as exc:
        found = describe_errors(exc.errors(), data, WorkflowSpec)
        raise ValidationError([Problem(p.message, filename, path=p.path) for p in found]) from None
