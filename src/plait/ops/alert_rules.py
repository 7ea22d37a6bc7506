"""Alert rules as people write them (YAML or JSON), checked into :class:`Rule` s.

A rules file maps names to rules, like ``channels.yaml``::

    # $PLAIT_HOME/alerts.yaml
    run-failures:
      kind: failure_rate
      threshold: 1%          # or 0.01
      window: 1h
      min_runs: 5
      severity: warning
      channels: [ops]

Every kind takes ``severity`` (info, warning, critical), ``for`` (how long the condition
must hold before the alert fires), ``repeat`` (re-notify a firing alert this often; 0
never), ``labels``, ``channels``, ``description``, ``enabled`` and ``send_resolved``;
the kind's own fields are in :data:`KIND_FIELDS` and docs/operations.md. Every mistake
is reported at once, as ``rule NAME: FIELD: message``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from plait.errors import PlaitError
from plait.model.durations import parse_duration
from plait.ops.alerts import DEFAULT_EXCLUDED_ROUTES, KINDS, Rule

RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
FILE_NAME = "alerts.yaml"


class RuleError(PlaitError):
    """A rule (or a rules file) is not valid; ``problems`` lists every mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# -- field types ----------------------------------------------------------------------------
def _seconds(value: Any) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError("a duration is a number of seconds or text like 30s, 5m, 1h30m")


def _ratio(value: Any) -> float:
    """``1%``, ``0.5 %`` or a number from 0 to 1."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a ratio (write 1% or 0.01)") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError("a ratio is a percentage like 1% or a number from 0 to 1")
    if not 0 <= number <= 1:
        raise ValueError(f"{value!r} is not between 0% and 100% (write 5% or 0.05)")
    return number


def _names(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError("expected a name or a list of names")
    for item in items:
        if not CHANNEL_NAME.match(item):
            raise ValueError(f"{item!r} is not a channel name")
    return items


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping of label names to values")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]
Url = Annotated[str, BeforeValidator(_url)]
Ratio = Annotated[float, BeforeValidator(_ratio)]
Names = Annotated[list[str], BeforeValidator(_names)]
Labels = Annotated[dict[str, str], BeforeValidator(_labels)]


# -- the kinds ------------------------------------------------------------------------------
class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: str
    severity: Literal["info", "warning", "critical"] = "warning"
    for_: Seconds = Field(0.0, alias="for")
    repeat: Seconds = 4 * 3600.0
    labels: Labels = Field(default_factory=dict)
    channels: Names = Field(default_factory=list)
    description: str = ""
    enabled: bool = True
    send_resolved: bool = True

    def rule(self, name: str) -> Rule:
        values = self.model_dump(exclude={"channels", "min_runs", "min_requests", "grace"})
        values["channels"] = tuple(self.channels)
        for key in ("routes", "exclude_routes"):
            if key in values:
                values[key] = tuple(values[key])
        return Rule(name=name, **values)


class _Runs(_Common):
    window: Seconds = 3600.0
    workflow: str | None = None
    namespace: str | None = None
    group_by: Literal["workflow", "none"] = "workflow"


class FailureRate(_Runs):
    threshold: Ratio
    min_runs: int = Field(1, ge=1)

    def rule(self, name: str) -> Rule:
        return _with(super().rule(name), min_count=self.min_runs)


class RunDuration(_Runs):
    threshold: Seconds


class StepRetries(_Runs):
    threshold: int = Field(ge=0)


class Anomaly(_Runs):
    """A run far slower (or faster) than its workflow's history: ``threshold`` is the
    robust z-score (see :mod:`plait.ops.insights_anomalies`)."""

    threshold: float = Field(3.5, gt=0)
    direction: Literal["slow", "fast", "any"] = "any"


class ScheduleMissed(_Common):
    grace: Seconds = 300.0
    window: Seconds = 3600.0
    workflow: str | None = None

    def rule(self, name: str) -> Rule:
        return _with(super().rule(name), threshold=self.grace)


class WorkerSilent(_Common):
    threshold: Seconds = 120.0


class _Http(_Common):
    window: Seconds = 300.0
    url: Url | None = None
    routes: list[str] = Field(default_factory=list)
    exclude_routes: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDED_ROUTES))


class ErrorRate(_Http):
    threshold: Ratio
    min_requests: int = Field(10, ge=1)

    def rule(self, name: str) -> Rule:
        return _with(super().rule(name), min_count=self.min_requests)


class HttpLatency(_Http):
    threshold: Seconds
    quantile: float = Field(0.95, gt=0, lt=1)
    min_requests: int = Field(1, ge=1)

    def rule(self, name: str) -> Rule:
        return _with(super().rule(name), min_count=self.min_requests)


class ServiceDown(_Common):
    url: Url
    timeout: Seconds = 10.0


MODELS: dict[str, type[_Common]] = {
    "failure_rate": FailureRate,
    "run_duration": RunDuration,
    "step_retries": StepRetries,
    "schedule_missed": ScheduleMissed,
    "worker_silent": WorkerSilent,
    "error_rate": ErrorRate,
    "http_latency": HttpLatency,
    "service_down": ServiceDown,
    "anomaly": Anomaly,
}
assert set(MODELS) == set(KINDS)

#: the fields each kind takes beside the common ones (for error messages and docs)
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(n for n in model.model_fields if n not in _Common.model_fields)
    for kind, model in MODELS.items()
}


def _with(rule: Rule, **changes: Any) -> Rule:
    from dataclasses import replace

    return replace(rule, **changes)


# -- parsing --------------------------------------------------------------------------------
def parse_rule(name: str, spec: Any) -> Rule:
    """One rule, checked; RuleError naming the rule and every bad field."""
    at = f"rule {name!r}"
    if not RULE_NAME.match(name):
        raise RuleError(
            [f"{at}: a rule name is letters, digits, '_', '-' and '.', at most 200 characters"]
        )
    if not isinstance(spec, Mapping):
        raise RuleError([f"{at}: expected a mapping with a kind"])
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in MODELS:
        raise RuleError([f"{at}: kind must be one of {', '.join(KINDS)}"])
    try:
        model = MODELS[kind].model_validate(dict(spec))
    except PydanticError as exc:
        raise RuleError([f"{at}: {_problem(e, kind)}" for e in exc.errors()]) from None
    return model.rule(name)


def _problem(error: Mapping[str, Any], kind: str) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "rule"
    if error["type"] == "extra_forbidden":
        known = ", ".join(KIND_FIELDS[kind])
        return f"{where}: not a field of {kind} rules (its own fields: {known})"
    if error["type"] == "missing":
        return f"{where}: required for {kind} rules"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def parse_rules(data: Any, where: str = FILE_NAME) -> dict[str, Rule]:
    """A rules document (a mapping of names to rules): every rule checked, every
    problem of every rule reported together."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise RuleError([f"{where}: expected a mapping of rule names to rules"])
    rules: dict[str, Rule] = {}
    problems: list[str] = []
    for name, spec in data.items():
        try:
            rules[str(name)] = parse_rule(str(name), spec)
        except RuleError as exc:
            problems.extend(f"{where}: {p}" for p in exc.problems)
    if problems:
        raise RuleError(problems)
    return rules


def load_text(text: str, where: str) -> dict[str, Any]:
    """A rules document's specs by name (checked), from YAML or JSON text."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
        raise RuleError([f"{at}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    parse_rules(data, where)
    return {str(k): dict(v) for k, v in (data or {}).items()}


def load_file(path: Path) -> dict[str, Any]:
    """The specs of a rules file by name, checked; RuleError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError([f"{path}: cannot read: {exc}"]) from None
    return load_text(text, str(path))


__all__ = [
    "FILE_NAME",
    "KIND_FIELDS",
    "MODELS",
    "RULE_NAME",
    "RuleError",
    "load_file",
    "load_text",
    "parse_rule",
    "parse_rules",
]
