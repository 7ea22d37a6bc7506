"""``uses: ai.summarize`` and ``uses: ai.generate``.

``ai.summarize`` is extractive offline — the most central sentences of the text, chosen
by the offline model with repetition removed and kept in their original order (see
:mod:`plait.ai.text`) — and abstractive with an ``llm`` connection, which also honours
``style``. ``ai.generate`` needs a connection: there is no offline text generator. With
``json_schema`` it answers JSON of that schema, validated, with one retry that sends the
validation errors back.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plait.actions.ai import (
    OFFLINE_MODEL,
    LlmSession,
    Text,
    connection_field,
    model_field,
    offline,
    schema_problems,
)
from plait.actions.base import Action, ActionContext, ActionInput, ActionResult


# -- ai.summarize -------------------------------------------------------------------------------
class SummarizeInput(ActionInput):
    text: Text = Field(description="The text to summarise (at most 1,000,000 characters).")
    sentences: int = Field(3, ge=1, le=100, description="At most this many sentences.")
    max_words: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="At most this many words (offline: whole sentences, at least one).",
    )
    connection: str | None = connection_field()
    model: str | None = model_field()
    style: str | None = Field(
        None,
        max_length=500,
        description=(
            "With an LLM: how to write it, e.g. 'bullet points for an executive'. "
            "Offline summaries are the text's own sentences and ignore it."
        ),
    )


class SummarizeOutput(BaseModel):
    summary: str = Field(description="The summary as one text.")
    sentences: list[str] = Field(description="The summary's sentences.")
    model: str | None = Field(description="all-MiniLM-L6-v2 offline, else the LLM's model.")
    usage: dict[str, Any] | None = Field(None, description="With an LLM: tokens and cost.")


class SummarizeAction(Action):
    name = "ai.summarize"
    version = "1"
    description = (
        "Summarise a text: its most central sentences offline (extractive), or in new "
        "words by an LLM connection."
    )
    Input = SummarizeInput
    Output = SummarizeOutput

    async def execute(self, ctx: ActionContext, input: SummarizeInput) -> ActionResult:
        from plait.ai.text import split_sentences, summarize

        if input.connection is None:
            if input.style:
                ctx.log("stdout", "ai.summarize: style needs an llm connection; ignored offline")
            found = await offline(summarize, input.text, input.sentences, input.max_words)
            kept = f"{len(found.sentences)} of {found.total} sentences"
            if found.considered < found.total:
                kept += f" (from the first {found.considered})"
            ctx.log("stdout", f"ai.summarize: {kept}")
            outputs = {"summary": found.text, "sentences": found.sentences, "model": OFFLINE_MODEL}
            return ActionResult(outputs=outputs)
        session = LlmSession(ctx, input.connection, input.model)
        reply = await session.ask(_summary_prompt(input), temperature=0.2)
        summary = reply.text.strip()
        outputs = {"summary": summary, "sentences": split_sentences(summary)}
        return ActionResult(outputs={**outputs, **session.outputs()})


def _summary_prompt(input: SummarizeInput) -> list[dict[str, str]]:
    limits = f"at most {input.sentences} sentence{'s' if input.sentences > 1 else ''}"
    if input.max_words is not None:
        limits += f" and at most {input.max_words} words"
    style = f" Style: {input.style}." if input.style else ""
    system = (
        f"Summarise the user's text in {limits}. Keep names, numbers and dates exact; add "
        f"nothing the text does not say. Answer with the summary only.{style}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": input.text}]


# -- ai.generate --------------------------------------------------------------------------------
def _connection_required(schema: dict[str, Any]) -> None:
    """Forms mark ``connection`` required; the model validator gives the clear error."""
    schema["required"] = [*schema.get("required", []), "connection"]


class GenerateInput(ActionInput):
    model_config = ConfigDict(**ActionInput.model_config, json_schema_extra=_connection_required)

    prompt: Text = Field(description="What to ask the model (at most 1,000,000 characters).")
    system: str | None = Field(
        None, max_length=100_000, description="A system prompt: the model's role and rules."
    )
    connection: str | None = Field(
        None,
        description="The llm connection (required: there is no offline text generator).",
    )
    model: str | None = model_field()
    temperature: float | None = Field(
        None, ge=0, le=2, description="Randomness, 0 (deterministic) to 2."
    )
    max_tokens: int | None = Field(
        None, ge=1, description="At most this many tokens in the answer."
    )
    json_schema: dict[str, Any] | None = Field(
        None,
        description=(
            "Ask for JSON of this schema: the answer is validated (one retry with the "
            "errors) and given as data."
        ),
    )

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from jsonschema import exceptions, validators

            try:
                validators.validator_for(value).check_schema(value)
            except exceptions.SchemaError as exc:
                where = "/".join(str(p) for p in exc.absolute_path) or "json_schema"
                raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
        return value

    @model_validator(mode="after")
    def _needs_connection(self) -> GenerateInput:
        if self.connection is None:
            raise ValueError(
                "ai.generate needs connection: the name of an llm connection (text "
                "generation has no offline model; ai.classify, ai.extract and "
                "ai.summarize work without one)"
            )
        return self


class GenerateOutput(BaseModel):
    text: str = Field(description="The model's answer.")
    data: Any = Field(None, description="With json_schema: the answer as data (validated).")
    model: str | None = Field(description="The model that answered.")
    usage: dict[str, Any] | None = Field(description="Tokens and cost, over every call.")


class GenerateAction(Action):
    name = "ai.generate"
    version = "1"
    description = (
        "Ask a large language model (an llm connection) for text, or for JSON of a "
        "schema, validated."
    )
    Input = GenerateInput
    Output = GenerateOutput

    async def execute(self, ctx: ActionContext, input: GenerateInput) -> ActionResult:
        assert input.connection is not None  # the input model requires it
        session = LlmSession(ctx, input.connection, input.model)
        messages = [{"role": "user", "content": input.prompt}]
        if input.system:
            messages.insert(0, {"role": "system", "content": input.system})
        options: dict[str, Any] = {
            "temperature": input.temperature,
            "max_tokens": input.max_tokens,
        }
        if input.json_schema is None:
            reply = await session.ask(messages, **options)
            outputs = {"text": reply.text, "data": None}
        else:
            check = schema_problems(input.json_schema)
            data = await session.ask_json(
                messages, input.json_schema, check, what="JSON for json_schema", **options
            )
            outputs = {"text": json.dumps(data, ensure_ascii=False), "data": data}
        return ActionResult(outputs={**outputs, **session.outputs()})
