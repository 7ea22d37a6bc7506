"""Compile a validated :class:`WorkflowSpec` into the immutable :class:`Plan`.

Compiling checks everything that needs the whole document — one id space for all
phases, ``needs`` that exist and stay in their phase, no cycles, expressions that parse
and refer only to names, inputs and steps that exist (and that can have run before the
referring step), actions that exist with a ``with:`` their input model accepts — and
then resolves every inherited setting (step > enclosing group > ``defaults`` >
built-in) so that the engine never looks at the spec again.

Problems carry the path of the offending value; :mod:`plait.model.validate` turns paths
into line and column, Python-built workflows get the path in the message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from plait.errors import Problem, ValidationError
from plait.expr.sandbox import analyze, contains_expression
from plait.model.plan import (
    DEFAULT_ON_ERROR_RETRY,
    NO_RETRY,
    PHASES,
    STATUS_FUNCTIONS,
    ConcurrencyPlan,
    InputPlan,
    OnError,
    Phase,
    Plan,
    RetryPolicy,
    StepPlan,
)
from plait.model.spec import (
    DEFAULT_QUEUE,
    DefaultsSpec,
    FieldProblem,
    Path,
    RetrySpec,
    StepSpec,
    WorkflowSpec,
    did_you_mean,
    format_path,
)
from plait.model.validate import ExpressionChecker, bare_expression, describe_errors

Locate = Callable[[Path], int]
Actions = Mapping[str, type[BaseModel]]


@dataclass(slots=True, eq=False)
class Node:
    """A step of the spec placed in the graph: where it is and what it waits for."""

    spec: StepSpec
    path: Path
    phase: Phase
    parent: Node | None
    prev: str | None
    children: list[str] = field(default_factory=list)
    deps: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.spec.key


class Graph:
    """Every step of every phase, in definition order, with resolved ``deps``."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.nodes: dict[str, Node] = {}
        self.roots: dict[Phase, list[str]] = {phase: [] for phase in PHASES}
        self.problems: list[FieldProblem] = []
        #: steps whose id was already taken: still checked, never compiled
        self.duplicates: list[Node] = []
        for phase in PHASES:
            steps = {"main": spec.steps, "on_failure": spec.on_failure}.get(phase, spec.finally_)
            key = _phase_key(phase)
            self.roots[phase] = self._add(steps, (key,), phase, None, sequential=True)
        self._resolve_deps()
        self._find_cycles()

    def _add(
        self,
        steps: list[StepSpec],
        path: Path,
        phase: Phase,
        parent: Node | None,
        *,
        sequential: bool,
    ) -> list[str]:
        keys: list[str] = []
        prev: str | None = None
        for i, step in enumerate(steps):
            at = (*path, i)
            if step.key in self.nodes:
                where = format_path(self.nodes[step.key].path)
                message = f"duplicate step id {step.key!r} (also used at {where})"
                self.problems.append(FieldProblem((*at, "id"), f"{format_path(at)}: {message}"))
                self.duplicates.append(Node(step, at, phase, parent, None))
                self._add(step.children, (*at, step.kind), phase, None, sequential=False)
                continue
            node = Node(step, at, phase, parent, prev if sequential else None)
            self.nodes[step.key] = node
            keys.append(step.key)
            if parent is not None:
                parent.children.append(step.key)
            if step.kind != "action":
                sub = (*at, step.kind)
                self._add(step.children, sub, phase, node, sequential=step.kind == "sequence")
            prev = step.key
        return keys

    def _resolve_deps(self) -> None:
        for node in self.nodes.values():
            needs = node.spec.needs
            if needs is None:
                node.deps = (node.prev,) if node.prev else ()
                continue
            names = [needs] if isinstance(needs, str) else needs
            deps: list[str] = []
            for i, name in enumerate(names):
                at = (*node.path, "needs") if isinstance(needs, str) else (*node.path, "needs", i)
                problem = self._need_problem(node, name)
                if problem:
                    self.problems.append(FieldProblem(at, f"{format_path(at)}: {problem}"))
                elif name not in deps:
                    deps.append(name)
            node.deps = tuple(deps)

    def _need_problem(self, node: Node, name: str) -> str | None:
        target = self.nodes.get(name)
        if target is None:
            same = [k for k, n in self.nodes.items() if n.phase == node.phase]
            return f"unknown step {name!r}{did_you_mean(name, same)}"
        if target.phase != node.phase:
            return (
                f"{name!r} is in {_phase_key(target.phase)}, and needs cannot cross "
                f"from {_phase_key(node.phase)}"
            )
        return None

    def ancestors(self, node: Node) -> Iterator[Node]:
        parent = node.parent
        while parent is not None:
            yield parent
            parent = parent.parent

    def descendants(self, key: str) -> Iterator[str]:
        for child in self.nodes[key].children:
            yield child
            yield from self.descendants(child)

    def waits_for(self, node: Node) -> list[str]:
        """What must end before ``node`` ends: its deps, its children, and the deps of
        its enclosing groups (a child starts only once its group has started)."""
        out = [*node.deps, *node.children]
        for group in self.ancestors(node):
            out.extend(group.deps)
        return out

    def _find_cycles(self) -> None:
        state: dict[str, int] = {}  # 1: on the current path, 2: finished
        reported: set[frozenset[str]] = set()
        for start in self.nodes:
            if start in state:
                continue
            trail = [start]
            stack = [iter(self.waits_for(self.nodes[start]))]
            state[start] = 1
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    state[trail.pop()] = 2
                    stack.pop()
                elif nxt not in state:
                    state[nxt] = 1
                    trail.append(nxt)
                    stack.append(iter(self.waits_for(self.nodes[nxt])))
                elif state[nxt] == 1:
                    cycle = trail[trail.index(nxt) :]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        self._report_cycle(cycle)

    def _report_cycle(self, cycle: list[str]) -> None:
        explicit = [k for k in cycle if self.nodes[k].spec.needs is not None] or cycle
        first = min(explicit, key=list(self.nodes).index)
        i = cycle.index(first)
        ordered = cycle[i:] + cycle[:i]
        text = " -> ".join([*ordered, first])
        self.problems.append(
            FieldProblem((*self.nodes[first].path, "needs"), f"needs form a cycle: {text}")
        )

    def ran_before(self, target: str, key: str) -> bool:
        """Whether ``target`` is certain to have ended before ``key`` starts: it is (or
        contains) a dep of ``key``, of a group around it, or of one of those, and so on.
        Walks back from ``key`` and stops at the first proof, so the usual reference to
        a recent step costs O(1)."""
        node = self.nodes[key]
        target_node = self.nodes[target]
        holders = {target, *(g.key for g in self.ancestors(target_node))}
        work = [node, *self.ancestors(node)]
        seen = {n.key for n in work}
        while work:
            for dep in work.pop().deps:
                if dep in holders:
                    return True
                dep_node = self.nodes[dep]
                for more in (dep_node, *self.ancestors(dep_node)):
                    if more.key not in seen:
                        seen.add(more.key)
                        work.append(more)
        return False

    def can_refer(self, key: str, target: str) -> bool:
        """Whether step ``key`` may read ``steps.<target>``."""
        phase, other = self.nodes[key].phase, self.nodes[target].phase
        if phase != other:
            return other == "main" or (phase == "finally" and other == "on_failure")
        return self.ran_before(target, key)


def _phase_key(phase: Phase) -> str:
    return "steps" if phase == "main" else phase


# --- actions ----------------------------------------------------------------------------


def check_action(node: Node, actions: Actions) -> list[FieldProblem]:
    """``uses`` names a known action and ``with`` fits its input model; values that hold
    ``${{ }}`` are left to run time."""
    spec = node.spec
    if spec.kind != "action":
        return []
    name = "shell" if spec.run is not None else spec.uses or ""
    model = actions.get(name)
    if model is None:
        if spec.run is not None:
            return []
        at = (*node.path, "uses")
        hint = did_you_mean(name, sorted(actions))
        return [FieldProblem(at, f"{format_path(at)}: unknown action {name!r}{hint}")]
    data = dict(spec.with_ or {})
    if spec.run is not None:
        data["command"] = spec.run
    try:
        model.model_validate(data)
    except PydanticValidationError as exc:
        found = describe_errors(exc.errors(), data, model, prefix=(*node.path, "with"))
        return [_relocate(p, node) for p in found if not _run_time(p, data, node)]
    return []


def _run_time(problem: FieldProblem, data: Mapping[str, Any], node: Node) -> bool:
    if problem.kind in ("missing", "extra_forbidden"):
        return False
    value: Any = data
    for part in problem.path[len(node.path) + 1 :]:
        if isinstance(value, str):
            break
        value = value[part]
    return contains_expression(value)


def _relocate(problem: FieldProblem, node: Node) -> FieldProblem:
    if node.spec.run is not None and problem.path[len(node.path) + 1 :][:1] == ("command",):
        path = (*node.path, "run")
        message = problem.message.replace(format_path((*node.path, "with", "command")), "run")
        return FieldProblem(path, message, problem.kind, problem.at_key)
    return problem


# --- settings and the plan ----------------------------------------------------------------


def _retry(retries: int | RetrySpec | None, on_error: str) -> RetryPolicy:
    if retries is None:
        return DEFAULT_ON_ERROR_RETRY if on_error == "retry" else NO_RETRY
    if isinstance(retries, int):
        return RetryPolicy(max=retries)
    return RetryPolicy(
        max=retries.max,
        backoff=retries.backoff,
        initial=retries.initial,
        factor=retries.factor,
        max_delay=retries.max_delay,
        jitter=retries.jitter,
    )


class _PlanBuilder:
    def __init__(
        self, spec: WorkflowSpec, graph: Graph, locate: Locate | None, secrets: set[str]
    ) -> None:
        self.spec = spec
        self.graph = graph
        self.locate = locate
        self.secrets = secrets
        self.defaults = spec.defaults or DefaultsSpec()

    def _chain(self, node: Node) -> list[StepSpec | DefaultsSpec]:
        return [node.spec, *(g.spec for g in self.graph.ancestors(node)), self.defaults]

    def _env(self, node: Node) -> dict[str, str]:
        env: dict[str, str] = {}
        for layer in reversed(self._chain(node)):
            env.update(layer.env or {})
        return env

    def step(self, node: Node) -> StepPlan:
        spec, chain = node.spec, self._chain(node)
        on_error: OnError = next((c.on_error for c in chain if c.on_error), "fail")
        is_group = spec.kind != "action"
        if_, checks_status = _condition(spec.if_)
        return StepPlan(
            key=node.key,
            kind=spec.kind,
            phase=node.phase,
            name=spec.name or node.key,
            parent=node.parent.key if node.parent else None,
            children=tuple(node.children),
            deps=node.deps,
            uses=None if is_group else ("shell" if spec.run is not None else spec.uses),
            with_=_with(spec),
            env=self._env(node),
            if_=if_,
            if_checks_status=checks_status,
            timeout=spec.timeout if is_group else _first_timeout(chain),
            retry=NO_RETRY if is_group else _retry(_first_retries(chain), on_error),
            on_error="fail" if is_group and on_error == "retry" else on_error,
            outputs=spec.outputs,
            for_each=_for_each(spec.for_each),
            max_parallel=spec.max_parallel,
            queue=next((c.queue for c in chain if c.queue is not None), DEFAULT_QUEUE),
            runs_on=dict(next((c.runs_on for c in chain if c.runs_on is not None), {})),
            priority=next((c.priority for c in chain if c.priority is not None), 0),
            line=self.locate(node.path) if self.locate else 0,
        )

    def build(self) -> Plan:
        spec = self.spec
        nodes = {key: self.step(node) for key, node in self.graph.nodes.items()}
        dependents: dict[str, list[str]] = {key: [] for key in nodes}
        for node in nodes.values():
            for dep in node.deps:
                dependents[dep].append(node.key)
        return Plan(
            name=spec.name,
            nodes=nodes,
            roots={phase: tuple(keys) for phase, keys in self.graph.roots.items()},
            dependents={key: tuple(keys) for key, keys in dependents.items()},
            namespace=spec.namespace,
            description=spec.description,
            labels=dict(spec.labels),
            inputs=_inputs(spec),
            env=dict(spec.env),
            timeout=spec.timeout,
            concurrency=_concurrency(spec),
            triggers=tuple(_trigger(t) for t in spec.triggers),
            notify=tuple(n.model_dump(by_alias=True) for n in spec.notify),
            outputs=dict(spec.outputs),
            secret_names=frozenset(self.secrets),
        )


def _first_timeout(chain: list[StepSpec | DefaultsSpec]) -> float | None:
    return next((c.timeout for c in chain if c.timeout is not None), None)


def _first_retries(chain: list[StepSpec | DefaultsSpec]) -> int | RetrySpec | None:
    return next((c.retries for c in chain if c.retries is not None), None)


def _with(spec: StepSpec) -> dict[str, Any]:
    if spec.run is not None:
        return {**(spec.with_ or {}), "command": spec.run}
    return dict(spec.with_ or {})


def _condition(value: str | bool | None) -> tuple[str | None, bool]:
    if value is None or value is True:
        return None, False
    if value is False:
        return "false", False
    source = bare_expression(value) or value
    return source, bool(analyze(source, bare=True).calls & STATUS_FUNCTIONS)


def _for_each(value: str | list[Any] | None) -> Any:
    if isinstance(value, str) and "${{" not in value:
        return "${{ " + value + " }}"
    return value


def _inputs(spec: WorkflowSpec) -> dict[str, InputPlan]:
    return {
        name: InputPlan(
            name=name,
            type=i.type,
            required=i.required,
            default=i.default,
            has_default="default" in i.model_fields_set,
            enum=tuple(i.enum) if i.enum is not None else None,
            secret=i.secret,
            description=i.description,
        )
        for name, i in spec.inputs.items()
    }


def _concurrency(spec: WorkflowSpec) -> ConcurrencyPlan | None:
    c = spec.concurrency
    return ConcurrencyPlan(c.key or spec.name, c.limit, c.on_conflict) if c else None


def _trigger(trigger: Any) -> dict[str, Any]:
    kind = trigger.kind
    body = getattr(trigger, kind)
    return {"kind": kind, **(body.model_dump(by_alias=True) if body is not None else {})}


# --- entry points --------------------------------------------------------------------------


def build_plan(
    spec: WorkflowSpec, actions: Actions | None = None, locate: Locate | None = None
) -> tuple[Plan | None, list[FieldProblem]]:
    """The plan of ``spec``, or ``None`` and every problem found."""
    graph = Graph(spec)
    checker = ExpressionChecker(spec, graph)
    checker.check_all()
    problems = [*graph.problems, *checker.problems]
    if actions is not None:
        for node in [*graph.nodes.values(), *graph.duplicates]:
            problems.extend(check_action(node, actions))
    if problems:
        return None, problems
    return _PlanBuilder(spec, graph, locate, checker.secrets).build(), []


def compile_spec(spec: WorkflowSpec, actions: Actions | None = None) -> Plan:
    """Compile ``spec`` (from YAML or the Python API) into a :class:`Plan`.

    ``actions`` maps action names to their input models; when given, ``uses`` and
    ``with`` are checked against them. Raises :class:`ValidationError` with every
    problem; positions are not known here, so each message names its path.
    """
    plan, problems = build_plan(spec, actions)
    if plan is None:
        raise ValidationError([Problem(p.message, path=p.path) for p in problems])
    return plan
