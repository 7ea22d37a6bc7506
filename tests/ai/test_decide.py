"""ai.decide: the decision table (pure), and the action in real workflows — with facts
from an earlier step, with the offline model's score, and with broken rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plait.actions.registry import ActionRegistry
from plait.ai import embeddings
from plait.ai.decide import DecisionError, Rule, check, decide
from plait.errors import ExpressionError, ValidationError
from plait.model import load_workflow
from tests.ai.workflows import run

TABLE = [
    Rule("amount > 10000", "cfo", "large", "over 10,000 needs the CFO"),
    Rule("amount > 1000 and country != 'DE'", "manager", "foreign"),
    Rule("amount > 1000", "lead"),
]


# -- the table --------------------------------------------------------------------------------
def test_the_first_rule_that_holds_decides_and_later_ones_are_not_evaluated() -> None:
    found = decide(TABLE, {"amount": 20000, "country": "DE"})
    assert found.decision == "cfo"
    assert found.rule == "large"
    assert found.reason == "over 10,000 needs the CFO"
    assert found.matched
    assert found.evaluated == [
        {"rule": "large", "when": "amount > 10000", "result": True},
        {"rule": "foreign", "when": "amount > 1000 and country != 'DE'", "result": None},
        {"rule": 2, "when": "amount > 1000", "result": None},
    ]


def test_a_rule_without_a_name_is_named_by_its_index_and_explained() -> None:
    found = decide(TABLE, {"amount": 5000, "country": "DE"})
    assert found.decision == "lead"
    assert found.rule == 2
    assert found.reason == "rule 2 matched: amount > 1000"
    assert [e["result"] for e in found.evaluated] == [False, False, True]


def test_the_default_applies_when_no_rule_holds() -> None:
    found = decide(TABLE, {"amount": 10, "country": "FR"}, default={"route": "auto"})
    assert found.decision == {"route": "auto"}
    assert found.rule is None
    assert not found.matched
    assert found.reason == "no rule matched: the default applies"
    assert [e["result"] for e in found.evaluated] == [False, False, False]


def test_a_condition_that_does_not_evaluate_names_the_rule_and_shows_it() -> None:
    with pytest.raises(DecisionError) as caught:
        decide(TABLE, {"amount": 5000})  # no country: rule 1 cannot be evaluated
    message = str(caught.value)
    assert message.startswith("rule 1 ('foreign'): ")
    assert "amount > 1000 and country != 'DE'" in message
    assert "'country' is undefined" in message
    with pytest.raises(DecisionError, match=r"rule 0: .*ZeroDivisionError"):
        decide([Rule("1 / amount > 0", "x")], {"amount": 0})


def test_conditions_are_sandboxed_expressions() -> None:
    with pytest.raises(DecisionError, match=r"not allowed|undefined|no "):
        decide([Rule("amount.__class__", "x")], {"amount": 1})
    found = decide(
        [Rule("'vip' in tags and len(items) >= 2", "fast")], {"tags": ["vip"], "items": [1, 2]}
    )
    assert found.decision == "fast"


def test_check_finds_syntax_errors_without_facts() -> None:
    check("amount > 1000 and vendor.country == 'DE'")
    with pytest.raises(ExpressionError, match="syntax error"):
        check("amount >")
    with pytest.raises(ExpressionError, match="empty"):
        check("  ")


# -- in workflows -----------------------------------------------------------------------------


APPROVAL_ROUTE = """
name: invoice-route
inputs:
  text: {type: string}
steps:
  - id: fields
    uses: ai.extract
    with:
      text: "${{ inputs.text }}"
      schema:
        type: object
        properties: {total: {type: number}, currency: {type: string}}
        required: [total]
  - id: route
    uses: ai.decide
    with:
      facts: "${{ steps.fields.outputs.data }}"
      score:
        text: "${{ inputs.text }}"
        labels:
          routine: an ordinary invoice for goods or services delivered as agreed
          dispute: a complaint, a wrong amount, a duplicate charge or a demand for a refund
      rules:
        - name: disputed
          when: "label == 'dispute' and score > 0.6"
          decision: legal
          reason: the sender disputes
        - {name: large, when: "total > 10000", decision: cfo}
        - {name: foreign, when: "currency != 'EUR'", decision: treasury}
      default: auto-approve
  - id: to-cfo
    if: ${{ steps.route.outputs.decision == 'cfo' }}
    run: echo "to the CFO"
"""


async def test_decide_routes_an_invoice_by_its_fields(tmp_path: Path) -> None:
    text = "Invoice for consulting services delivered in March. Total: €12.500,00."
    result = await run(tmp_path, APPROVAL_ROUTE, {"text": text})
    assert result.success, result.error
    route = result.step("route").outputs or {}
    assert route["decision"] == "cfo"
    assert route["rule"] == "large"
    assert route["label"] == "routine"
    assert route["scores"]["routine"] == route["score"]
    assert route["model"] == "all-MiniLM-L6-v2"
    assert [e["result"] for e in route["evaluated"]] == [False, True, None]
    assert result.step("to-cfo").status == "succeeded"


async def test_decide_uses_the_model_score_of_the_text(tmp_path: Path) -> None:
    embeddings.load()
    text = (
        "You charged us twice for invoice 1234, total €80,00. We demand a refund of the "
        "duplicate payment."
    )
    result = await run(tmp_path, APPROVAL_ROUTE, {"text": text})
    assert result.success, result.error
    route = result.step("route").outputs or {}
    assert route["label"] == "dispute"
    assert route["score"] > 0.6
    assert route["decision"] == "legal"
    assert route["reason"] == "the sender disputes"
    assert result.step("to-cfo").status == "skipped"


async def test_the_default_when_no_rule_holds(tmp_path: Path) -> None:
    text = "Invoice for office chairs delivered last week. Total: €400,00."
    result = await run(tmp_path, APPROVAL_ROUTE, {"text": text})
    assert result.success, result.error
    route = result.step("route").outputs or {}
    assert route["decision"] == "auto-approve"
    assert route["rule"] is None
    assert route["matched"] is False


RUNTIME_BREAK = """
name: broken-at-run-time
inputs:
  facts: {type: object}
steps:
  - id: decide
    uses: ai.decide
    with:
      facts: "${{ inputs.facts }}"
      rules:
        - {name: big, when: "amount > 100", decision: big}
        - {name: vip, when: "customer.tier == 'gold'", decision: vip}
"""


async def test_a_rule_that_fails_at_run_time_fails_the_step_naming_it(tmp_path: Path) -> None:
    result = await run(tmp_path, RUNTIME_BREAK, {"facts": {"amount": 5}})
    step = result.step("decide")
    assert step.status == "failed"
    assert step.error is not None
    assert "rule 1 ('vip')" in step.error
    assert "customer.tier == 'gold'" in step.error
    assert "'customer' is undefined" in step.error
    assert "Traceback" not in step.error


def test_a_broken_rule_in_the_file_is_reported_when_it_is_loaded() -> None:
    source = """
name: broken
steps:
  - id: decide
    uses: ai.decide
    with:
      facts: {amount: 5}
      rules:
        - {when: "amount > 100", decision: big}
        - {when: "amount >>> 3", decision: odd}
"""
    with pytest.raises(ValidationError) as caught:
        load_workflow(source, "broken.yaml", ActionRegistry().input_models())
    message = str(caught.value)
    assert "broken.yaml:10:" in message
    assert "rules[1].when" in message or "rules.1.when" in message
    assert "expression 'amount >>> 3': syntax error" in message


@pytest.mark.parametrize(
    ("with_", "message"),
    [
        ({"facts": {}, "rules": []}, "rules: List should have at least 1 item"),
        (
            {
                "rules": [{"when": "x", "decision": 1}],
                "facts": {"score": 1},
                "score": {"text": "t", "labels": ["a", "b"]},
            },
            "facts score would be hidden by the model score",
        ),
        ({"rules": [{"when": "x"}]}, "rules.0.decision: Field required"),
        (
            {"rules": [{"when": "x", "decision": 1}], "score": {"text": "t", "labels": ["a"]}},
            "give at least two labels",
        ),
    ],
)
def test_bad_tables_are_refused_with_the_field_named(with_: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError as PydanticError

    from plait.actions.ai_decide import DecideInput

    with pytest.raises(PydanticError) as caught:
        DecideInput.model_validate(with_)
    problems = [
        f"{'.'.join(map(str, e['loc'])) or 'with'}: {e['msg']}" for e in caught.value.errors()
    ]
    assert any(message in p for p in problems), problems
