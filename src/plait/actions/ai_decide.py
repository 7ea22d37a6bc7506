"""``uses: ai.decide`` — an auditable decision table, optionally fed by a model score.

::

    - id: route-invoice
      uses: ai.decide
      with:
        facts: "${{ steps.fields.outputs.data }}"
        score: {text: "${{ steps.read.outputs.text }}", labels: [routine, unusual]}
        rules:
          - {name: large, when: "total > 10000", decision: cfo, reason: over 10,000}
          - {name: odd, when: "label == 'unusual' and score > 0.7", decision: review}
          - {when: "total > 1000", decision: manager}
        default: auto-approve

Rules are tried in order and the first whose ``when`` holds decides (see
:mod:`plait.ai.decide`). ``when`` is a bare expression — no ``${{ }}`` — over the
facts: each fact by its name and all of them as ``facts``; with ``score:`` also
``label`` (the best label), ``score`` (its score) and ``scores`` (every label's), from
``ai.classify`` offline or by an LLM. Conditions are checked for syntax when the
workflow is validated; one that fails at run time (a fact that is not there) fails the
step with the rule's name and expression.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plait.actions.ai import (
    OFFLINE_MODEL,
    ClassifyInput,
    LlmSession,
    as_described,
    classify_llm,
    classify_offline,
)
from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.errors import ExpressionError

#: the names ``score:`` puts into the rules' scope
SCORE_NAMES = ("label", "score", "scores")


class RuleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Names the rule in the outputs and the log.")
    when: str = Field(
        description="A condition over the facts, e.g. \"amount > 1000 and country != 'DE'\" "
        "(an expression without ${{ }})."
    )
    decision: Any = Field(description="What the step decides when this rule fires.")
    reason: str | None = Field(None, description="Why, in words, for the audit trail.")

    @field_validator("when")
    @classmethod
    def _expression(cls, value: str) -> str:
        from plait import expr
        from plait.ai.decide import check

        if not expr.has_expression(value):  # with ${{ }} it is rendered at run time first
            try:
                check(value)
            except ExpressionError as exc:
                raise ValueError(str(exc)) from None
        return value


class ScoreInput(ClassifyInput):
    """The text and labels of a classification whose result the rules can use (the
    inputs of ai.classify)."""


class DecideInput(ActionInput):
    rules: list[RuleInput] = Field(
        min_length=1, description="Tried in order; the first whose when holds decides."
    )
    default: Any = Field(None, description="The decision when no rule holds.")
    facts: dict[str, Any] = Field(
        default_factory=dict,
        description="The values the rules test, each by its name (and all as facts).",
    )
    score: ScoreInput | None = Field(
        None,
        description=(
            "Classify a text first (text, labels, optional connection): the rules then "
            "see label, score and scores."
        ),
    )

    @model_validator(mode="after")
    def _no_clash(self) -> DecideInput:
        if self.score is not None:
            clash = [name for name in SCORE_NAMES if name in self.facts]
            if clash:
                raise ValueError(
                    f"facts {', '.join(clash)} would be hidden by the model score "
                    "(score: puts label, score and scores into the rules' scope); rename them"
                )
        return self


class DecideOutput(BaseModel):
    decision: Any = Field(description="The decision of the rule that fired, or the default.")
    rule: str | int | None = Field(
        description="The name (else the index) of the rule that fired; null for the default."
    )
    matched: bool = Field(description="Whether a rule fired (false: the default applied).")
    reason: str | None = Field(description="The rule's reason, or which rule matched.")
    evaluated: list[dict[str, Any]] = Field(
        description="Every rule with its result (true, false, or null when not reached)."
    )
    label: str | None = Field(None, description="With score: the best label.")
    score: float | None = Field(None, description="With score: the best label's score.")
    scores: dict[str, float] | None = Field(None, description="With score: every label's score.")
    model: str | None = Field(None, description="With score: the model that scored the text.")
    usage: dict[str, Any] | None = Field(None, description="With an LLM score: tokens and cost.")


class DecideAction(Action):
    name = "ai.decide"
    version = "1"
    description = (
        "Decide by a table of rules (expressions over facts, first match wins), optionally "
        "with a model's classification of a text as a fact; every rule's result is kept "
        "for audit."
    )
    Input = DecideInput
    Output = DecideOutput

    async def execute(self, ctx: ActionContext, input: DecideInput) -> ActionResult:
        from plait.ai.decide import DecisionError, Rule, decide

        scope: dict[str, Any] = {**input.facts, "facts": input.facts}
        extra: dict[str, Any] = {}
        if input.score is not None:
            extra = await _score(ctx, input.score)
            scope.update({name: extra[name] for name in SCORE_NAMES})
        rules = [Rule(r.when, r.decision, r.name, r.reason) for r in input.rules]
        try:
            found = decide(rules, scope, input.default)
        except DecisionError as exc:
            raise ActionFailed(str(exc), outputs=extra, retryable=False) from None
        fired = "the default" if found.rule is None else f"rule {found.rule!r}"
        ctx.log("stdout", f"ai.decide: {fired} -> {found.decision!r}")
        outputs = {
            "decision": found.decision,
            "rule": found.rule,
            "matched": found.matched,
            "reason": found.reason,
            "evaluated": found.evaluated,
        }
        return ActionResult(outputs={**outputs, **extra})


async def _score(ctx: ActionContext, score: ScoreInput) -> dict[str, Any]:
    labels = as_described(score.labels)
    if score.connection is None:
        result = await classify_offline(score.text, labels, score.multi_label, score.threshold)
        extra: dict[str, Any] = {"model": OFFLINE_MODEL}
    else:
        session = LlmSession(ctx, score.connection, score.model)
        result = await classify_llm(session, score.text, labels, score.multi_label, score.threshold)
        extra = session.outputs()
    best = result.scores.get(result.label, 0.0) if result.label is not None else 0.0
    return {"label": result.label, "score": best, "scores": result.scores, **extra}
