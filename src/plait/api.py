"""Build workflows in Python: the same model as YAML, compiled to the same plan.

::

    from plait import Workflow, Step, parallel

    wf = Workflow("deployment", steps=[
        parallel(
            Step("backup", function=backup_database, timeout="5m", retries=2),
            Step("health-check", uses="http", with_={"url": URL}, retries=3),
            id="pre-deployment",
        ),
        Step("deploy", run="./deploy.sh", on_error="fail"),
    ])
    result = wf.run(inputs={"version": "1.4.2"})

A Python function becomes a ``uses: python`` step whose ``with`` names it as
``"module:qualname"``; the function must be importable from that name (module level).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from plait.errors import Problem, ValidationError
from plait.model.plan import Plan, RetryPolicy
from plait.model.spec import StepSpec, WorkflowSpec

_ALIASES = {"with_": "with", "if_": "if", "finally_": "finally"}


def function_ref(function: Callable[..., Any] | str) -> str:
    """``"module:qualname"`` for a function (or the string itself)."""
    if isinstance(function, str):
        return function
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        message = f"function {function!r} cannot be imported by name; define it at module level"
        raise ValidationError([Problem(message, "<python>")])
    return f"{module}:{qualname}"


def _plain(value: Any) -> Any:
    """Python values as the YAML document would hold them."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, RetryPolicy):
        return dataclasses.asdict(value)
    if isinstance(value, Step | Group):
        return value.to_dict()
    if isinstance(value, StepSpec | WorkflowSpec) or hasattr(value, "model_dump"):
        return value.model_dump(by_alias=True, exclude_none=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _keys(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {_ALIASES.get(k, k): _plain(v) for k, v in settings.items() if v is not None}


@dataclass(frozen=True)
class Step:
    """An action step: ``run`` (shell), ``uses`` with ``with_``, or a Python ``function``."""

    id: str | None = None
    name: str | None = None
    run: str | None = None
    uses: str | None = None
    with_: Mapping[str, Any] | None = None
    function: Callable[..., Any] | str | None = None
    args: Mapping[str, Any] | None = None
    env: Mapping[str, Any] | None = None
    if_: str | bool | None = None
    needs: str | Sequence[str] | None = None
    timeout: str | float | timedelta | None = None
    retries: int | Mapping[str, Any] | RetryPolicy | None = None
    on_error: Literal["fail", "continue", "retry"] | None = None
    outputs: Mapping[str, Any] | None = None
    for_each: str | Sequence[Any] | None = None
    max_parallel: int | None = None
    queue: str | None = None
    runs_on: Mapping[str, Any] | None = None
    priority: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The step as its YAML mapping."""
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        function, args = settings.pop("function"), settings.pop("args")
        if function is not None:
            if self.uses not in (None, "python"):
                step = self.id or self.name
                message = f"step {step!r}: function= means uses='python', not {self.uses!r}"
                raise ValidationError([Problem(message, "<python>")])
            settings["uses"] = "python"
            settings["with_"] = {
                **(self.with_ or {}),
                "function": function_ref(function),
                "args": args or {},
            }
        return _keys(settings)


@dataclass(frozen=True)
class Group:
    """A ``parallel`` or ``sequence`` group of steps (made by :func:`parallel` or
    :func:`sequence`); ``settings`` are inherited by its steps."""

    kind: Literal["parallel", "sequence"]
    steps: tuple[StepLike, ...]
    id: str | None = None
    name: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        head = _keys({"id": self.id, "name": self.name})
        return {**head, **_keys(self.settings), self.kind: [_plain(s) for s in self.steps]}


StepLike = Step | Group | StepSpec | Mapping[str, Any]


def parallel(
    *steps: StepLike, id: str | None = None, name: str | None = None, **settings: Any
) -> Group:
    """Steps that run at the same time (``max_parallel=`` bounds how many)."""
    return Group("parallel", steps, id, name, settings)


def sequence(
    *steps: StepLike, id: str | None = None, name: str | None = None, **settings: Any
) -> Group:
    """Steps that run one after another."""
    return Group("sequence", steps, id, name, settings)


@dataclass
class Workflow:
    """A workflow built in Python; ``spec()``, ``plan()``, ``to_yaml()`` and ``run()``."""

    name: str
    steps: Sequence[StepLike] = ()
    inputs: Mapping[str, Any] | None = None
    env: Mapping[str, Any] | None = None
    on_failure: Sequence[StepLike] | None = None
    finally_: Sequence[StepLike] | None = None
    outputs: Mapping[str, Any] | None = None
    defaults: Mapping[str, Any] | None = None
    timeout: str | float | timedelta | None = None
    description: str = ""
    namespace: str = "default"
    labels: Mapping[str, str] | None = None
    triggers: Sequence[Mapping[str, Any]] | None = None
    concurrency: Mapping[str, Any] | None = None
    notify: Sequence[Mapping[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The workflow as its YAML document (before validation)."""
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        settings["inputs"] = {
            k: {"type": v} if isinstance(v, str) else v for k, v in (self.inputs or {}).items()
        }
        data = _keys(settings)
        data["steps"] = [_plain(s) for s in self.steps]
        return {k: v for k, v in data.items() if v not in ("", {}, [])}

    def spec(self) -> WorkflowSpec:
        """The validated spec; raises :class:`ValidationError` naming each bad field."""
        from plait.model.validate import parse_spec

        return parse_spec(self.to_dict(), f"<workflow {self.name}>")

    def plan(self, actions: Mapping[str, Any] | None = None) -> Plan:
        """The compiled plan (``actions`` maps action names to input models to check)."""
        from plait.model.compile import compile_spec

        return compile_spec(self.spec(), actions)

    def to_yaml(self) -> str:
        """The workflow as a YAML document that :func:`plait.model.load_workflow` reads."""
        import yaml

        data = self.spec().model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude_defaults=True
        )
        text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        return text

    def run(self, inputs: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        """Run to completion in this process on the embedded store; returns the
        runtime's ``RunResult``. Keyword arguments go to ``run_plan``."""
        local = importlib.import_module("plait.local")
        return local.run_plan(self.plan(), inputs, source=self.to_yaml(), **kw)
