"""Token and cost accounting end to end: a real server (SQLite and PostgreSQL) runs a
workflow of ``ai.generate`` steps that call a real OpenAI-compatible server through an
``llm`` connection, and ``/metrics`` adds up the ``usage`` the steps output, by
workflow and model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ai.openai_server import OpenAiServer
from tests.server.conftest import LiveServer, server  # noqa: F401 - the fixture
from tests.server.test_runs import deploy, start, wait_for

KEY = "sk-metrics-9d8e7f6a5b"


WORKFLOW = """\
name: ai-metrics
steps:
  - id: one
    uses: ai.generate
    with: {prompt: "summarise the ticket", connection: brain}
  - id: many
    for_each: "${{ ['a', 'b'] }}"
    uses: ai.generate
    with: {prompt: "classify ${{ item }}", connection: brain}
  - id: other
    uses: ai.generate
    with: {prompt: "classify c", connection: brain, model: other-model}
  - id: plain
    run: echo "usage=not-a-dict" >> "$PLAIT_OUTPUT"
"""


@pytest.fixture
def provider() -> Iterator[OpenAiServer]:
    with OpenAiServer(api_key=KEY) as running:
        yield running


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def _connection(live: LiveServer, provider: OpenAiServer) -> None:
    config: dict[str, Any] = {
        "base_url": provider.base_url,
        "api_key": KEY,
        "model": "test-model",
        "price_per_1k_prompt_tokens": 0.5,
        "price_per_1k_completion_tokens": 1.5,
    }
    with live.client() as c:
        r = c.put("/api/v1/connections/default/brain", json={"type": "llm", "config": config})
    assert r.status_code == 201, r.text


def test_metrics_add_up_tokens_and_cost_by_workflow_and_model(
    server: LiveServer,  # noqa: F811 - the imported fixture
    provider: OpenAiServer,
) -> None:
    _connection(server, provider)
    provider.respond_with(
        lambda request: _answer(request.body["model"]),
    )
    deploy(server, WORKFLOW)
    with server.client() as c:
        run = wait_for(c, start(c, "ai-metrics").json()["id"], ("succeeded", "failed"))
        assert run["status"] == "succeeded", run
        logs = c.get(f"/api/v1/runs/{run['id']}/logs").text
        text = c.get("/metrics").text
    got = _samples(text)

    def tokens(model: str, kind: str) -> float:
        labels = (("kind", kind), ("model", model), ("workflow", "ai-metrics"))
        return got[("plait_ai_tokens_total", labels)]

    def cost(model: str) -> float:
        return got[("plait_ai_cost_usd_total", (("model", model), ("workflow", "ai-metrics")))]

    # three calls of test-model (one step, two fan-out items), one of other-model
    assert tokens("test-model", "prompt") == 3 * 100
    assert tokens("test-model", "completion") == 3 * 20
    assert tokens("other-model", "prompt") == 50
    assert tokens("other-model", "completion") == 5
    assert cost("test-model") == pytest.approx(3 * (100 * 0.5 + 20 * 1.5) / 1000)
    assert cost("other-model") == pytest.approx((50 * 0.5 + 5 * 1.5) / 1000)
    # a step without a usage dict adds nothing, and no other workflow appears
    ai_series = [k for k in got if k[0].startswith("plait_ai_")]
    assert len(ai_series) == 6
    # each call left one log line with its usage; the API key is in none of them
    assert logs.count("llm chat connection=brain") == 4
    assert KEY not in logs


def _answer(model: str) -> Any:
    from tests.ai.openai_server import Canned

    if model == "other-model":
        return Canned(text="c", prompt_tokens=50, completion_tokens=5)
    return Canned(text="label", prompt_tokens=100, completion_tokens=20)
