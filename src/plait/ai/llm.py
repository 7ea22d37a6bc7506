"""The LLM client every AI action uses: chat and embeddings over an ``llm`` connection.

::

    from plait.ai import llm

    conn = ctx.connection(input.connection)
    if not llm.is_llm(conn): ...
    try:
        reply = await llm.chat(conn, [{"role": "user", "content": text}], ctx=ctx)
    except llm.LlmError as exc:
        raise llm.action_failed(exc) from None
    outputs = {"text": reply.text, "model": reply.model, "usage": reply.usage.as_output()}

A step that puts ``usage.as_output()`` under its output key ``usage`` (and the model
under ``model``) is counted in ``plait_ai_tokens_total`` and ``plait_ai_cost_usd_total``
on ``/metrics``.

Both wire APIs (:mod:`plait.ai.llm_wire`) and the retries (:mod:`plait.ai.llm_http`)
are described there. With ``ctx``, each call writes one line to the step's log: the
model, tokens, cost and duration, and the start of the prompt and of the answer —
masked with the run's secrets (``ctx.mask``) before they are cut short, so no part of
a secret that the prompt carried reaches the log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from plait.actions.base import ActionFailed
from plait.actions.llm import LlmConfig
from plait.ai import llm_wire as wire
from plait.ai.llm_http import LlmError, send

if TYPE_CHECKING:
    from plait.actions.base import ActionContext
    from plait.actions.connections import Connection

__all__ = [
    "ChatReply",
    "LlmError",
    "Usage",
    "action_failed",
    "chat",
    "config_of",
    "embed",
    "is_llm",
    "probe",
]

LLM_TYPE = "llm"
#: characters of the prompt and of the answer written to the step's log
LOG_TEXT_CHARS = 300
#: texts per embeddings request (OpenAI accepts up to 2,048)
EMBED_BATCH = 256


@dataclass(frozen=True)
class Usage:
    """Tokens a call used, and their cost in USD when the connection has prices."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_output(self) -> dict[str, Any]:
        """What a step outputs under ``usage`` (and ``/metrics`` adds up)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost": None if self.cost is None else round(self.cost, 8),
        }

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        costs = [c for c in (self.cost, other.cost) if c is not None]
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            sum(costs) if costs else None,
        )


@dataclass(frozen=True)
class ChatReply:
    text: str
    model: str
    usage: Usage
    finish_reason: str | None = None


def is_llm(conn: Connection) -> bool:
    """Whether ``conn`` is an ``llm`` connection."""
    return conn.type == LLM_TYPE


def config_of(conn: Connection) -> LlmConfig:
    """``conn``'s settings; a non-retryable LlmError for another type or a bad config."""
    if not is_llm(conn):
        raise LlmError(
            f"connection {conn.name!r} is a {conn.type} connection, not an llm one",
            retryable=False,
        )
    try:
        return LlmConfig.model_validate(dict(conn.config))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise LlmError(
            f"invalid llm connection {conn.name!r}: {problems}", retryable=False
        ) from None


def action_failed(exc: LlmError) -> ActionFailed:
    """The step failure for ``exc``: retryable (with the provider's Retry-After) or not."""
    return ActionFailed(str(exc), retryable=exc.retryable, retry_after=exc.retry_after)


def cost_of(config: LlmConfig, prompt_tokens: int, completion_tokens: int) -> float | None:
    if not config.priced:
        return None
    return (
        prompt_tokens * (config.price_per_1k_prompt_tokens or 0.0)
        + completion_tokens * (config.price_per_1k_completion_tokens or 0.0)
    ) / 1000


async def chat(
    conn: Connection,
    messages: Sequence[Mapping[str, str]],
    *,
    ctx: ActionContext | None = None,
    model: str | None = None,
    json_schema: Mapping[str, Any] | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> ChatReply:
    """One chat completion. ``json_schema`` asks for a JSON answer of that schema
    (``reply.text`` is then the JSON text; the caller validates it)."""
    config = config_of(conn)
    checked = _check_messages(messages)
    chosen = _model(conn, model or config.model, "model")
    request = wire.chat_request(
        config,
        checked,
        model=chosen,
        json_schema=json_schema,
        temperature=temperature,
        max_tokens=max_tokens,
    )
    started = time.monotonic()
    prompt = _prompt_text(checked)
    try:
        data = await send(config, request, ctx=ctx)
        parsed = wire.parse_chat(config.api, data)
    except wire.WireError as exc:
        error = LlmError(f"{config.api} chat with {chosen}: {exc}", retryable=False)
        _log_failure(ctx, conn, "chat", chosen, error, started)
        raise error from None
    except LlmError as exc:
        _log_failure(ctx, conn, "chat", chosen, exc, started)
        raise
    text = parsed.text
    if json_schema is not None and config.api == "anthropic":
        text = wire.extract_json(text)
    cost = cost_of(config, parsed.prompt_tokens, parsed.completion_tokens)
    reply = ChatReply(
        text=text,
        model=parsed.model or chosen,
        usage=Usage(parsed.prompt_tokens, parsed.completion_tokens, cost),
        finish_reason=parsed.finish_reason,
    )
    if ctx is not None:
        extra = f"prompt={_clip(ctx, prompt)} response={_clip(ctx, text)}"
        _log_call(ctx, conn, "chat", reply.model, reply.usage, started, extra)
    return reply


async def embed(
    conn: Connection,
    texts: Sequence[str],
    *,
    ctx: ActionContext | None = None,
    model: str | None = None,
) -> tuple[list[list[float]], Usage]:
    """One vector per text, in order, and the tokens counted (in batches of
    :data:`EMBED_BATCH`). Only the openai API has embeddings."""
    config = config_of(conn)
    if config.api == "anthropic":
        raise LlmError(
            f"connection {conn.name!r} speaks the anthropic API, which has no embeddings: "
            "use an openai-compatible connection (or the offline model)",
            retryable=False,
        )
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise LlmError("embed: texts must be a list of strings", retryable=False)
    chosen = _model(conn, model or config.embedding_model, "embedding_model")
    if not texts:
        return [], Usage(cost=cost_of(config, 0, 0))
    started = time.monotonic()
    vectors: list[list[float]] = []
    tokens = 0
    for start in range(0, len(texts), EMBED_BATCH):
        batch = list(texts[start : start + EMBED_BATCH])
        request = wire.embeddings_request(config, batch, model=chosen)
        try:
            found, counted = wire.parse_embeddings(await send(config, request, ctx=ctx), len(batch))
        except wire.WireError as exc:
            error = LlmError(f"{config.api} embeddings with {chosen}: {exc}", retryable=False)
            _log_failure(ctx, conn, "embed", chosen, error, started)
            raise error from None
        except LlmError as exc:
            _log_failure(ctx, conn, "embed", chosen, exc, started)
            raise
        vectors.extend(found)
        tokens += counted
    usage = Usage(tokens, 0, cost_of(config, tokens, 0))
    if ctx is not None:
        _log_call(ctx, conn, "embed", chosen, usage, started, f"texts={len(texts)}")
    return vectors, usage


async def probe(config: LlmConfig) -> str:
    """The connection test: list the models (free), or where the server has no list
    (or on Azure, where a deployment is what matters) send a one-token chat."""
    once = config.model_copy(update={"max_retries": 0, "timeout": min(config.timeout, 30.0)})
    where = f"{config.api} API at {config.root}"
    if not config.azure:
        try:
            ids = wire.model_ids(await send(once, wire.models_request(once)))
        except LlmError as exc:
            if exc.status not in (404, 405):
                raise
        except wire.WireError as exc:
            raise LlmError(
                f"{where}: the model list is unreadable: {exc}", retryable=False
            ) from None
        else:
            shown = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
            found = f"{where}: {len(ids)} model(s) ({shown or 'none'})"
            if config.model:
                listed = "is listed" if config.model in ids else "is NOT listed"
                found += f"; the default model {config.model} {listed}"
            return found
    if not config.model:
        raise LlmError(f"{where}: no model list; set model to test with a chat", retryable=False)
    request = wire.chat_request(
        once, [{"role": "user", "content": "ping"}], model=config.model, max_tokens=1
    )
    data = await send(once, request)
    try:
        parsed = wire.parse_chat(once.api, data)
    except wire.WireError as exc:
        raise LlmError(f"{where}: {exc}", retryable=False) from None
    return f"{where}: a 1-token chat with {parsed.model or config.model} answered"


# -- helpers ----------------------------------------------------------------------------
def _check_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    given: Any = messages  # callers pass what a step's input held
    if not isinstance(given, Sequence) or isinstance(given, str) or not given:
        raise LlmError("chat: messages must be a non-empty list", retryable=False)
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise LlmError(f"chat: messages[{index}] is not a mapping", retryable=False)
        role, content = message.get("role"), message.get("content")
        if role not in wire.ROLES:
            raise LlmError(
                f"chat: messages[{index}].role must be system, user or assistant, not {role!r}",
                retryable=False,
            )
        if not isinstance(content, str):
            raise LlmError(f"chat: messages[{index}].content must be text", retryable=False)
        checked.append({"role": str(role), "content": content})
    return checked


def _model(conn: Connection, model: str | None, field: str) -> str:
    if not model:
        raise LlmError(
            f"connection {conn.name!r} has no {field}: set it on the connection or name "
            "one in the step",
            retryable=False,
        )
    return model


def _prompt_text(messages: Sequence[Mapping[str, str]]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"]


def _clip(ctx: ActionContext, text: str) -> str:
    """``text`` masked, then cut to LOG_TEXT_CHARS, as one JSON string (one line)."""
    masked = ctx.mask(text)
    cut = masked[:LOG_TEXT_CHARS] + ("…" if len(masked) > LOG_TEXT_CHARS else "")
    return json.dumps(cut, ensure_ascii=False)


def _log_call(
    ctx: ActionContext,
    conn: Connection,
    kind: str,
    model: str,
    usage: Usage,
    started: float,
    extra: str,
) -> None:
    cost = "-" if usage.cost is None else f"${usage.cost:.6f}"
    took = time.monotonic() - started
    ctx.log(
        "stdout",
        ctx.mask(
            f"llm {kind} connection={conn.name} model={model} "
            f"prompt_tokens={usage.prompt_tokens} completion_tokens={usage.completion_tokens} "
            f"cost={cost} duration={took:.2f}s {extra}"
        ),
    )


def _log_failure(
    ctx: ActionContext | None,
    conn: Connection,
    kind: str,
    model: str,
    error: LlmError,
    started: float,
) -> None:
    if ctx is None:
        return
    took = time.monotonic() - started
    ctx.log(
        "stdout",
        ctx.mask(
            f"llm {kind} connection={conn.name} model={model} failed after {took:.2f}s: {error}"
        ),
    )
