"""ai.summarize offline: sentence splitting and maximal marginal relevance (pure), the
extractive summary on the real model, and the action in real workflows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plait.ai import embeddings
from plait.ai.text import choose_within, mmr, split_sentences, summarize
from tests.ai.workflows import run

REPORT = """Quarterly operations report

Our deployment pipeline moved from nightly releases to continuous delivery in March. \
Every merge to the main branch is now built, tested and deployed to production within \
forty minutes. Deployments to production rose from 12 to 140 in the quarter. Rollbacks \
fell to two, both automated by the health checks.

The cafeteria will serve a new vegetarian menu from next week.

Continuous delivery also changed how incidents are handled. Because releases are small, \
a failed deployment is rolled back automatically within five minutes. Mean time to \
recovery dropped from four hours to twenty minutes.
We deploy to production about ten times a week now, far more often than before.

Next quarter we will extend the same pipeline to the mobile apps."""

CAFETERIA = "The cafeteria will serve a new vegetarian menu from next week."
SAME_NEWS = (
    "Deployments to production rose from 12 to 140 in the quarter.",
    "We deploy to production about ten times a week now, far more often than before.",
)


# -- sentences --------------------------------------------------------------------------------
def test_sentences_end_at_punctuation_but_not_after_abbreviations_or_in_numbers() -> None:
    text = (
        "Dr. Smith sent invoice No. 42 on 12.3.2026. It lists 3.5 hours, e.g. for setup! "
        'Is that right? See J. Doe\'s note. "Yes," she said. (Fine.) 2026 was good.'
    )
    assert split_sentences(text) == [
        "Dr. Smith sent invoice No. 42 on 12.3.2026.",
        "It lists 3.5 hours, e.g. for setup!",
        "Is that right?",
        "See J. Doe's note.",
        '"Yes," she said.',
        "(Fine.)",
        "2026 was good.",
    ]


def test_blank_lines_bullets_and_short_lines_separate_sentences() -> None:
    text = (
        "Dear team,\n\nthe release is late because the\nmigration failed twice.\n"
        "Please check:\n- the amount\n* the date\n1. the owner\nThanks,\nAnna"
    )
    assert split_sentences(text) == [
        "Dear team,",
        "the release is late because the migration failed twice.",  # a wrapped line
        "Please check:",
        "the amount",
        "the date",
        "the owner",
        "Thanks,",
        "Anna",
    ]


def test_nothing_to_split() -> None:
    assert split_sentences("") == []
    assert split_sentences("  \n\n ") == []
    assert split_sentences("no punctuation at all") == ["no punctuation at all"]


# -- maximal marginal relevance ---------------------------------------------------------------
def _unit(*rows: list[float]) -> Any:
    vectors = np.array(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_mmr_picks_the_central_row_first_and_skips_a_duplicate() -> None:
    vectors = _unit(
        [1.0, 0.1, 0.0],  # 0: central
        [1.0, 0.1, 0.0],  # 1: the same as 0
        [0.7, 0.7, 0.0],  # 2: related, different
        [0.0, 0.0, 1.0],  # 3: off topic
    )
    order = mmr(vectors, 3)
    assert order[0] in (0, 1)
    assert {0, 1} - set(order[:2])  # never both copies in the first two
    assert 2 in order[:2]
    assert mmr(vectors, 4, lambda_=1.0)[:2] in ([0, 1], [1, 0])  # relevance only: both


def test_mmr_limits_and_candidates() -> None:
    vectors = _unit([1.0, 0.0], [0.9, 0.1], [0.0, 1.0])
    assert mmr(vectors, 0) == []
    assert mmr(vectors[:0], 3) == []
    assert len(mmr(vectors, 10)) == 3
    assert mmr(vectors, 2, candidates=[1, 2]) == [1, 2]


def test_a_word_budget_skips_long_sentences_for_shorter_ones() -> None:
    sentences = ["one two three four five six", "seven eight", "nine ten eleven", "twelve"]
    assert choose_within([0, 1, 2, 3], sentences, 3, None) == [0, 1, 2]
    assert choose_within([0, 1, 2, 3], sentences, 3, 9) == [0, 1, 3]  # 2 would make 11
    assert choose_within([2, 0], sentences, 2, 1) == [2]  # the first stays, even if long


# -- summaries on the real model ----------------------------------------------------------------
@pytest.fixture(scope="module")
def model() -> None:
    embeddings.load()


@pytest.mark.usefixtures("model")
def test_a_summary_keeps_the_central_sentences_once_in_their_order() -> None:
    summary = summarize(REPORT, 3)
    assert len(summary.sentences) == 3
    assert summary.indexes == sorted(summary.indexes)
    assert CAFETERIA not in summary.sentences
    assert "Quarterly operations report" not in summary.sentences  # a heading, too short
    assert not set(SAME_NEWS) <= set(summary.sentences)  # the same news only once
    assert any("continuous delivery" in s for s in summary.sentences)
    assert summary.total == summary.considered == len(split_sentences(REPORT))
    assert summary.text == " ".join(summary.sentences)


@pytest.mark.usefixtures("model")
def test_max_words_bounds_the_summary() -> None:
    summary = summarize(REPORT, 10, max_words=30)
    assert len(summary.text.split()) <= 30
    assert summary.sentences


@pytest.mark.usefixtures("model")
def test_a_text_shorter_than_asked_is_its_own_summary() -> None:
    text = "The backup finished. It took four minutes."
    assert summarize(text, 3).sentences == ["The backup finished.", "It took four minutes."]


# -- in workflows -----------------------------------------------------------------------------


DIGEST = """
name: digest
inputs:
  report: {type: string, required: true}
steps:
  - id: summary
    uses: ai.summarize
    with: {text: "${{ inputs.report }}", sentences: 2, style: "bullet points"}
  - id: post
    run: echo "${{ steps.summary.outputs.summary }}"
"""


async def test_summarize_in_a_workflow(tmp_path: Path) -> None:
    result = await run(tmp_path, DIGEST, {"report": REPORT})
    assert result.success, result.error
    outputs = result.step("summary").outputs or {}
    assert len(outputs["sentences"]) == 2
    assert outputs["summary"] == " ".join(outputs["sentences"])
    assert all(s in REPORT.replace("\\\n", " ").replace("\n", " ") for s in outputs["sentences"])
    assert outputs["model"] == "all-MiniLM-L6-v2"
    assert result.step("post").status == "succeeded"


BAD = """
name: bad-summary
inputs:
  text: {type: string}
  sentences: {type: integer, default: 3}
  max_words: {type: integer, default: 100}
steps:
  - id: summary
    uses: ai.summarize
    with:
      text: "${{ inputs.text }}"
      sentences: "${{ inputs.sentences }}"
      max_words: "${{ inputs.max_words }}"
"""


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"text": ""}, "with.text: Value error, is empty"),
        (
            {"text": "x", "sentences": 0},
            "with.sentences: Input should be greater than or equal to 1",
        ),
        (
            {"text": "x", "max_words": -5},
            "with.max_words: Input should be greater than or equal to 1",
        ),
        ({"text": "x " * 500_001}, "is 1,000,002 characters long; the limit is 1,000,000"),
    ],
)
async def test_bad_input_fails_the_step_clearly(
    tmp_path: Path, inputs: dict[str, Any], message: str
) -> None:
    result = await run(tmp_path, BAD, {"sentences": 3, "max_words": 100, **inputs})
    step = result.step("summary")
    assert step.status == "failed"
    assert message in (step.error or "")
