"""The ai.* actions with an ``llm`` connection, in real workflows on SQLite, against the
OpenAI-compatible test server on 127.0.0.1 (tests/ai/openai_server.py): what is asked,
how answers are validated and retried once, model and usage in the outputs, and the
errors a user sees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.actions.registry import ActionRegistry
from plait.errors import ValidationError
from plait.local import RunResult
from plait.model import load_workflow
from tests.ai.openai_server import OpenAiServer
from tests.ai.workflows import run

KEY = "sk-paths-91b2c"


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAiServer]:
    with OpenAiServer(api_key=KEY) as server:
        config = {"type": "llm", "base_url": server.base_url, "api_key": KEY, "model": "test-model"}
        monkeypatch.setenv("PLAIT_CONNECTION_BRAIN", json.dumps(config))
        monkeypatch.setenv(
            "PLAIT_CONNECTION_WRONG_KEY", json.dumps({**config, "api_key": "sk-not-this-one"})
        )
        monkeypatch.setenv(
            "PLAIT_CONNECTION_WEB", json.dumps({"type": "http", "base_url": server.url})
        )
        yield server


def outputs(result: RunResult, step: str) -> dict[str, Any]:
    return result.step(step).outputs or {}


def schema_of(request: Any) -> dict[str, Any]:
    schema: dict[str, Any] = request.body["response_format"]["json_schema"]["schema"]
    return schema


TRIAGE = """
name: llm-triage
inputs:
  ticket: {type: string}
steps:
  - id: label
    uses: ai.classify
    with:
      text: "${{ inputs.ticket }}"
      connection: brain
      labels: {billing: invoices and refunds, technical: bugs and outages, shipping: parcels}
  - id: triage
    uses: ai.route
    with:
      text: "${{ inputs.ticket }}"
      connection: brain
      routes: {billing: invoices and refunds, technical: bugs and outages}
      default: human
  - id: to-tech
    if: ${{ steps.triage.outputs.route == 'technical' }}
    run: echo tech
"""


async def test_classify_and_route_ask_for_a_label_from_the_enum(
    tmp_path: Path, llm: OpenAiServer
) -> None:
    llm.reply('{"label": "billing", "confidence": 0.9}', prompt_tokens=50, completion_tokens=9)
    llm.reply('{"label": "technical", "confidence": 0.8}', prompt_tokens=40, completion_tokens=9)
    result = await run(tmp_path, TRIAGE, {"ticket": "The export crashes and I was billed twice."})
    assert result.success, result.error
    label = outputs(result, "label")
    assert label["label"] == "billing"
    assert label["scores"] == {"billing": 0.9, "technical": 0.05, "shipping": 0.05}
    assert label["confident"] is True
    assert label["model"] == "test-model"
    assert label["usage"]["prompt_tokens"] == 50
    assert label["usage"]["total_tokens"] == 59
    triage = outputs(result, "triage")
    assert triage["route"] == "technical"
    assert triage["score"] == 0.8
    assert result.step("to-tech").status == "succeeded"

    first, second = llm.chat_requests()
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert schema_of(first)["properties"]["label"]["enum"] == ["billing", "technical", "shipping"]
    assert "billing: invoices and refunds" in first.system
    assert first.last_user == "The export crashes and I was billed twice."
    assert schema_of(second)["properties"]["label"]["enum"] == ["billing", "technical"]


async def test_a_route_the_model_is_unsure_of_takes_the_default(
    tmp_path: Path, llm: OpenAiServer
) -> None:
    llm.reply('{"label": "billing", "confidence": 0.7}')
    llm.reply('{"label": "billing", "confidence": 0.3}')
    result = await run(tmp_path, TRIAGE, {"ticket": "hello?"})
    assert result.success, result.error
    assert outputs(result, "triage")["route"] == "human"
    assert outputs(result, "triage")["confident"] is False


CLASSIFY = """
name: llm-classify
steps:
  - id: label
    uses: ai.classify
    with: {text: "my parcel never came", connection: brain, labels: [billing, shipping]}
"""


async def test_an_answer_outside_the_labels_is_sent_back_once_and_usage_adds_up(
    tmp_path: Path, llm: OpenAiServer
) -> None:
    llm.reply('{"label": "delivery", "confidence": 0.9}', prompt_tokens=30, completion_tokens=8)
    llm.reply('{"label": "shipping", "confidence": 0.9}', prompt_tokens=45, completion_tokens=8)
    result = await run(tmp_path, CLASSIFY)
    assert result.success, result.error
    label = outputs(result, "label")
    assert label["label"] == "shipping"
    assert label["usage"]["prompt_tokens"] == 75
    assert label["usage"]["completion_tokens"] == 16
    retry = llm.chat_requests()[1]
    assert retry.messages[-2] == {
        "role": "assistant",
        "content": '{"label": "delivery", "confidence": 0.9}',
    }
    assert "'delivery' is not one of ['billing', 'shipping']" in retry.last_user


async def test_two_bad_answers_fail_the_step_saying_why(tmp_path: Path, llm: OpenAiServer) -> None:
    llm.reply("It is about shipping, I think.")
    llm.reply('{"label": "shipping"}')
    result = await run(tmp_path, CLASSIFY)
    step = result.step("label")
    assert step.status == "failed"
    assert step.error is not None
    assert "the model's answer is not valid classification, even after it was told why" in (
        step.error
    )
    assert "it is not JSON" in step.error
    assert "'confidence' is a required property" in step.error
    assert len(llm.chat_requests()) == 2


async def test_multi_label_by_the_model(tmp_path: Path, llm: OpenAiServer) -> None:
    source = CLASSIFY.replace(
        "labels: [billing, shipping]}", "labels: [billing, shipping, legal], multi_label: true}"
    )
    llm.reply('{"labels": ["shipping", "billing"]}')
    result = await run(tmp_path, source)
    assert result.success, result.error
    label = outputs(result, "label")
    assert label["labels"] == ["shipping", "billing"]
    assert label["label"] == "shipping"
    assert label["scores"] == {"billing": 1.0, "shipping": 1.0, "legal": 0.0}
    items = schema_of(llm.chat_requests()[0])["properties"]["labels"]["items"]
    assert items["enum"] == ["billing", "shipping", "legal"]


EXTRACT = """
name: llm-extract
steps:
  - id: fields
    uses: ai.extract
    with:
      text: "Invoice INV-7 over 1.190,00 EUR, due 2026-04-03"
      connection: brain
      schema:
        type: object
        properties:
          invoice_number: {type: string}
          total: {type: number}
          due_date: {type: string, format: date}
          po_number: {type: string}
        required: [invoice_number, total, po_number]
"""


async def test_extract_validates_the_answer_and_sends_the_errors_back_once(
    tmp_path: Path, llm: OpenAiServer
) -> None:
    llm.reply('{"invoice_number": "INV-7", "total": "1.190,00 EUR", "due_date": "3 April"}')
    llm.reply(
        '{"invoice_number": "INV-7", "total": 1190.0, "due_date": "2026-04-03", "po_number": null}'
    )
    result = await run(tmp_path, EXTRACT)
    assert result.success, result.error
    fields = outputs(result, "fields")
    assert fields["data"] == {"invoice_number": "INV-7", "total": 1190.0, "due_date": "2026-04-03"}
    assert fields["missing"] == ["po_number"]  # null means not found, not a bad answer
    assert fields["model"] == "test-model"
    first, retry = llm.chat_requests()
    assert schema_of(first)["required"] == ["invoice_number", "total", "po_number"]
    assert "total: '1.190,00 EUR' is not of type 'number'" in retry.last_user
    assert "due_date: '3 April' is not a 'date'" in retry.last_user


async def test_extract_fails_after_a_second_answer_that_breaks_the_schema(
    tmp_path: Path, llm: OpenAiServer
) -> None:
    llm.reply('["INV-7", 1190]')
    llm.reply('{"total": "a lot"}')
    result = await run(tmp_path, EXTRACT)
    step = result.step("fields")
    assert step.status == "failed"
    assert "first the answer must be a JSON object" in (step.error or "")
    assert "then total: 'a lot' is not of type 'number'" in (step.error or "")


async def test_summarize_by_the_model_follows_the_style(tmp_path: Path, llm: OpenAiServer) -> None:
    source = """
name: llm-summary
steps:
  - id: summary
    uses: ai.summarize
    with:
      text: "A long report about deployments. It has many sentences. And more."
      connection: brain
      sentences: 2
      max_words: 30
      style: for an executive
"""
    llm.reply("Deployments are now continuous. Recovery takes minutes.")
    result = await run(tmp_path, source)
    assert result.success, result.error
    summary = outputs(result, "summary")
    assert summary["summary"] == "Deployments are now continuous. Recovery takes minutes."
    assert summary["sentences"] == ["Deployments are now continuous.", "Recovery takes minutes."]
    assert summary["model"] == "test-model"
    assert summary["usage"]["completion_tokens"] == 7
    system = llm.chat_requests()[0].system
    assert "at most 2 sentences and at most 30 words" in system
    assert "Style: for an executive." in system


GENERATE = """
name: llm-generate
steps:
  - id: text
    uses: ai.generate
    with:
      prompt: "Write a release note for 1.4.2"
      system: "Be brief."
      connection: brain
      temperature: 0.2
      max_tokens: 50
  - id: data
    uses: ai.generate
    with:
      prompt: "Suggest a title and tags for: ${{ steps.text.outputs.text }}"
      connection: brain
      json_schema:
        type: object
        properties: {title: {type: string}, tags: {type: array, items: {type: string}}}
        required: [title, tags]
"""


async def test_generate_text_and_json(tmp_path: Path, llm: OpenAiServer) -> None:
    llm.reply("1.4.2 fixes the export.", prompt_tokens=12, completion_tokens=5)
    llm.reply('{"title": "Export fix"}')
    llm.reply('{"title": "Export fix", "tags": ["export", "bugfix"]}')
    result = await run(tmp_path, GENERATE)
    assert result.success, result.error
    text = outputs(result, "text")
    assert text["text"] == "1.4.2 fixes the export."
    assert text["data"] is None
    assert text["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
        "cost": None,
    }
    first = llm.chat_requests()[0]
    assert first.system == "Be brief."
    assert first.body["temperature"] == 0.2
    assert first.body["max_tokens"] == 50
    data = outputs(result, "data")
    assert data["data"] == {"title": "Export fix", "tags": ["export", "bugfix"]}
    assert json.loads(data["text"]) == data["data"]
    assert "'tags' is a required property" in llm.chat_requests()[2].last_user
    assert llm.chat_requests()[1].last_user.endswith("1.4.2 fixes the export.")


def test_generate_without_a_connection_is_refused_when_the_file_is_loaded() -> None:
    source = "name: g\nsteps:\n  - id: g\n    uses: ai.generate\n    with: {prompt: hi}\n"
    with pytest.raises(ValidationError) as caught:
        load_workflow(source, "g.yaml", ActionRegistry().input_models())
    assert "g.yaml:5:" in str(caught.value)
    assert "ai.generate needs connection: the name of an llm connection" in str(caught.value)


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        ("web", "connection 'web' is a http connection; ai steps need an llm connection"),
        ("nowhere", "no connection named 'nowhere'"),
        ("wrong_key", "Incorrect API key provided"),
    ],
)
async def test_a_wrong_connection_fails_the_step_clearly(
    tmp_path: Path, llm: OpenAiServer, connection: str, message: str
) -> None:
    source = f"""
name: wrong
steps:
  - id: label
    uses: ai.classify
    with: {{text: hello, labels: [a, b], connection: {connection}}}
"""
    result = await run(tmp_path, source)
    step = result.step("label")
    assert step.status == "failed"
    assert message in (step.error or "")
    assert "Traceback" not in (step.error or "")
    assert KEY not in (step.error or "")


async def test_decide_with_the_models_score(tmp_path: Path, llm: OpenAiServer) -> None:
    source = """
name: llm-decide
steps:
  - id: decide
    uses: ai.decide
    with:
      facts: {total: 80}
      score: {text: "You charged me twice!", labels: [routine, dispute], connection: brain}
      rules:
        - {name: disputed, when: "label == 'dispute' and score >= 0.9", decision: legal}
      default: auto
"""
    llm.reply('{"label": "dispute", "confidence": 0.95}', prompt_tokens=20, completion_tokens=6)
    result = await run(tmp_path, source)
    assert result.success, result.error
    decided = outputs(result, "decide")
    assert decided["decision"] == "legal"
    assert decided["rule"] == "disputed"
    assert decided["scores"] == {"routine": 0.05, "dispute": 0.95}
    assert decided["model"] == "test-model"
    assert decided["usage"]["total_tokens"] == 26
