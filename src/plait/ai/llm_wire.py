"""The two wire APIs of an ``llm`` connection, as pure functions: request in, JSON out.

``openai`` is the chat completions / embeddings / models API that OpenAI, Azure OpenAI,
vLLM, Ollama and LM Studio serve; ``anthropic`` is Anthropic's messages API, where the
system prompt is a top-level field, ``max_tokens`` is required, and structured output
is asked for in words (the answer's JSON is then cut out of the text).
No I/O here: :mod:`plait.ai.llm` sends what these build.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from plait.actions.llm import (
    ANTHROPIC_API_VERSION,
    ANTHROPIC_MAX_TOKENS,
    AZURE_API_VERSION,
    LlmConfig,
)

ROLES = ("system", "user", "assistant")

SCHEMA_INSTRUCTION = (
    "Answer with one JSON document and nothing else (no prose, no code fence). "
    "It must conform to this JSON Schema:\n"
)


class WireError(ValueError):
    """A provider's answer does not have the shape its API promises."""


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Parsed:
    text: str
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


# -- requests ---------------------------------------------------------------------------
def headers(config: LlmConfig) -> dict[str, str]:
    """Authentication and version headers, then the connection's own headers."""
    found: dict[str, str] = {"Accept": "application/json"}
    key = config.api_key.get_secret_value() if config.api_key else None
    if config.api == "anthropic":
        found["anthropic-version"] = config.api_version or ANTHROPIC_API_VERSION
        if key:
            found["x-api-key"] = key
    elif config.azure:
        if key:
            found["api-key"] = key
    elif key:
        found["Authorization"] = f"Bearer {key}"
    if config.organization and config.api == "openai":
        found["OpenAI-Organization"] = config.organization
    return {**found, **config.headers}


def _url(config: LlmConfig, endpoint: str, model: str | None = None) -> str:
    if config.azure:
        version = quote(config.api_version or AZURE_API_VERSION)
        if endpoint == "models":
            return f"{config.root}/openai/models?api-version={version}"
        deployment = quote(model or "")
        return f"{config.root}/openai/deployments/{deployment}/{endpoint}?api-version={version}"
    return f"{config.root}/{endpoint}"


def chat_request(
    config: LlmConfig,
    messages: Sequence[Mapping[str, str]],
    *,
    model: str,
    json_schema: Mapping[str, Any] | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> Request:
    limit = max_tokens or config.max_tokens
    if config.api == "anthropic":
        return _anthropic_chat(config, messages, model, json_schema, temperature, limit)
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
    }
    if temperature is not None:
        body["temperature"] = temperature
    if limit is not None:
        body["max_tokens"] = limit
    if json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": dict(json_schema), "strict": False},
        }
    if config.azure:
        del body["model"]  # the deployment in the URL is the model
    return Request("POST", _url(config, "chat/completions", model), headers(config), body)


def _anthropic_chat(
    config: LlmConfig,
    messages: Sequence[Mapping[str, str]],
    model: str,
    json_schema: Mapping[str, Any] | None,
    temperature: float | None,
    limit: int | None,
) -> Request:
    system = [m["content"] for m in messages if m["role"] == "system"]
    if json_schema is not None:
        system.append(SCHEMA_INSTRUCTION + json.dumps(json_schema, separators=(",", ":")))
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": limit or ANTHROPIC_MAX_TOKENS,
        "messages": [
            {"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"
        ],
    }
    if system:
        body["system"] = "\n\n".join(system)
    if temperature is not None:
        body["temperature"] = temperature
    return Request("POST", f"{config.root}/messages", headers(config), body)


def embeddings_request(config: LlmConfig, texts: Sequence[str], *, model: str) -> Request:
    body: dict[str, Any] = {"model": model, "input": list(texts)}
    if config.azure:
        del body["model"]
    return Request("POST", _url(config, "embeddings", model), headers(config), body)


def models_request(config: LlmConfig) -> Request:
    return Request("GET", _url(config, "models"), headers(config))


# -- answers ----------------------------------------------------------------------------
def parse_chat(api: str, data: Any) -> Parsed:
    """The text, model, token counts and finish reason of a chat answer."""
    if not isinstance(data, dict):
        raise WireError("the answer is not a JSON object")
    usage = _mapping(data.get("usage"))
    model = data.get("model") if isinstance(data.get("model"), str) else None
    if api == "anthropic":
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise WireError("the answer has no content list")
        text = "".join(
            str(b.get("text", ""))
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "text"
        )
        return Parsed(
            text,
            model,
            _count(usage, "input_tokens"),
            _count(usage, "output_tokens"),
            _str(data.get("stop_reason")),
        )
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise WireError("the answer has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise WireError("the first choice has no message")
    content = message.get("content")
    if content is None and isinstance(message.get("refusal"), str):
        content = message["refusal"]
    return Parsed(
        str(content or ""),
        model,
        _count(usage, "prompt_tokens"),
        _count(usage, "completion_tokens"),
        _str(choices[0].get("finish_reason")),
    )


def parse_embeddings(data: Any, expected: int) -> tuple[list[list[float]], int]:
    """The vectors in input order, and the prompt tokens counted."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise WireError("the answer has no data list")
    rows = data["data"]
    if len(rows) != expected:
        raise WireError(f"{len(rows)} embeddings for {expected} texts")
    ordered: list[list[float]] = [[] for _ in rows]
    for position, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("embedding"), list):
            raise WireError(f"data[{position}] has no embedding list")
        index = row.get("index", position)
        if not isinstance(index, int) or not 0 <= index < expected:
            raise WireError(f"data[{position}] has an index out of range")
        try:
            ordered[index] = [float(x) for x in row["embedding"]]
        except (TypeError, ValueError):
            raise WireError(f"data[{position}] holds something that is not a number") from None
    usage = _mapping(data.get("usage"))
    return ordered, _count(usage, "prompt_tokens")


def model_ids(data: Any) -> list[str]:
    """The model ids of a models list (OpenAI's ``data``, Ollama's ``models``)."""
    if not isinstance(data, dict):
        raise WireError("the answer is not a JSON object")
    rows = data.get("data", data.get("models"))
    if not isinstance(rows, list):
        raise WireError("the answer has no model list")
    ids = [r.get("id") or r.get("name") for r in rows if isinstance(r, dict)]
    return [str(i) for i in ids if i]


def error_message(data: Any, text: str) -> str:
    """The provider's own explanation of an error answer (OpenAI's and Anthropic's
    ``error.message``, Ollama's ``error``), else the start of the body."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(data.get("message"), str):
            return str(data["message"])
        if isinstance(data.get("detail"), str):
            return str(data["detail"])
    cleaned = " ".join(text.split())
    return cleaned[:300] + ("…" if len(cleaned) > 300 else "")


_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)


def strip_fence(text: str) -> str:
    """The inside of a Markdown code fence around the whole text, else the text."""
    found = _FENCE.match(text)
    return found.group(1) if found else text.strip()


def extract_json(text: str) -> str:
    """The JSON document of an answer that was asked for JSON only: as it is when it
    parses, else without a code fence, else the outermost ``{…}`` or ``[…]``."""
    for candidate in (text.strip(), strip_fence(text)):
        try:
            json.loads(candidate)
        except ValueError:
            continue
        return candidate
    for opening, closing in (("{", "}"), ("[", "]")):
        start, end = text.find(opening), text.rfind(closing)
        if 0 <= start < end:
            return text[start : end + 1]
    return text.strip()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and value >= 0 else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
