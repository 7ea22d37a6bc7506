"""Decision tables: rules tried in order, the first whose condition holds decides.

A rule's ``when`` is a bare expression of Plait's sandboxed expression engine
(:mod:`plait.expr`, the language of ``if:``) over a scope of facts: ``amount > 1000 and
vendor.country != 'DE'``. Evaluation stops at the first rule that holds ("first hit");
every rule is reported with its result — ``True``, ``False``, or ``None`` when it was not
reached — so a decision can be audited afterwards. An expression that does not evaluate
(a name that is not among the facts, ``1/0``) is an error naming the rule and showing the
expression, never a silent ``False``.

Pure: no model and no I/O; the ``ai.decide`` action adds a model score to the facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plait import expr
from plait.errors import ExpressionError, PlaitError


class DecisionError(PlaitError):
    """A rule's condition could not be evaluated; the message names the rule."""


@dataclass(frozen=True)
class Rule:
    when: str
    decision: Any
    name: str | None = None
    reason: str | None = None

    def label(self, index: int) -> str | int:
        """How the rule is named in results: its name, else its position (0-based)."""
        return self.name if self.name is not None else index


@dataclass(frozen=True)
class Decision:
    decision: Any
    #: the name (or index) of the rule that fired; None when the default was used
    rule: str | int | None
    reason: str | None
    #: every rule in order: {"rule", "when", "result"} (result None: not reached)
    evaluated: list[dict[str, Any]] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return self.rule is not None


def check(when: str) -> None:
    """ExpressionError when ``when`` is not a valid expression (checked without
    evaluating it, so facts are not needed)."""
    if not when.strip():
        raise ExpressionError(when, "the condition is empty")
    expr.analyze(when, bare=True)


def where(rule: Rule, index: int) -> str:
    name = f" ({rule.name!r})" if rule.name is not None else ""
    return f"rule {index}{name}"


def decide(rules: Sequence[Rule], facts: Mapping[str, Any], default: Any = None) -> Decision:
    """Try ``rules`` in order against ``facts``; the first that holds decides, else
    ``default`` does. DecisionError when a condition cannot be evaluated."""
    evaluated: list[dict[str, Any]] = []
    fired: tuple[int, Rule] | None = None
    for index, rule in enumerate(rules):
        if fired is not None:
            evaluated.append({"rule": rule.label(index), "when": rule.when, "result": None})
            continue
        try:
            held = bool(expr.evaluate(rule.when, facts))
        except ExpressionError as exc:
            raise DecisionError(f"{where(rule, index)}: {exc}") from None
        evaluated.append({"rule": rule.label(index), "when": rule.when, "result": held})
        if held:
            fired = (index, rule)
    if fired is None:
        return Decision(default, None, "no rule matched: the default applies", evaluated)
    index, rule = fired
    reason = rule.reason or f"{where(rule, index)} matched: {rule.when}"
    return Decision(rule.decision, rule.label(index), reason, evaluated)
