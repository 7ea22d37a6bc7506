"""``uses: ai.extract`` — structured fields from text, into a JSON Schema the step declares.

With an ``llm`` connection the model answers in JSON constrained to the schema; the
answer is validated against it (jsonschema, formats checked), and one that does not
validate is sent back once with the validation errors; a second bad answer fails the
step. Offline, :mod:`plait.ai.extract` finds dates, amounts, e-mails, URLs, phone
numbers, IBANs and ids by pattern, and ``enum`` properties the text does not name
literally are matched by meaning on the offline model. Either way ``data`` validates
against the schema, and ``missing`` lists the required properties that were not found.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, field_validator

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

#: the offline result's ``model`` when no property needed the model (patterns only)
PATTERNS = "patterns"
#: the score an enum value needs to be chosen by meaning (rather than named in the text)
ENUM_THRESHOLD = 0.8


class ExtractInput(ActionInput):
    text: Text = Field(description="The text to read (at most 1,000,000 characters).")
    schema_: dict[str, Any] = Field(
        alias="schema",
        description=(
            "A JSON Schema of an object: its properties are the fields to extract "
            "(type, format, pattern, enum and description guide the search), its "
            "required list the ones reported as missing when not found."
        ),
    )
    connection: str | None = connection_field()
    model: str | None = model_field()
    dayfirst: bool = Field(
        False,
        description="Offline: read 03/12/2026 as 3 December (day first), not March 12.",
    )

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        from plait.ai.extract import check_schema

        check_schema(value)
        return value


class ExtractOutput(BaseModel):
    data: dict[str, Any] = Field(description="The fields found; it validates against the schema.")
    missing: list[str] = Field(description="Required properties not found (dotted paths).")
    rejected: dict[str, str] = Field(
        description="Offline: values found but dropped because they broke the schema, "
        "with the reason."
    )
    model: str | None = Field(
        description="all-MiniLM-L6-v2 when an enum needed the offline model, 'patterns' "
        "when patterns sufficed, else the LLM's model."
    )
    usage: dict[str, Any] | None = Field(None, description="With an LLM: tokens and cost.")


class ExtractAction(Action):
    name = "ai.extract"
    version = "1"
    description = (
        "Extract the fields of a JSON Schema from text: by an LLM connection (validated, "
        "one retry), or offline by patterns for dates, amounts, e-mails, URLs, phones, "
        "IBANs and ids."
    )
    Input = ExtractInput
    Output = ExtractOutput

    async def execute(self, ctx: ActionContext, input: ExtractInput) -> ActionResult:
        if input.connection is None:
            outputs = await offline(_extract_offline, input.text, input.schema_, input.dayfirst)
        else:
            session = LlmSession(ctx, input.connection, input.model)
            data = await _extract_llm(session, input.text, input.schema_)
            outputs = {
                "data": data,
                "missing": _missing_required(data, input.schema_),
                "rejected": {},
                **session.outputs(),
            }
        found = ", ".join(sorted(outputs["data"])) or "nothing"
        missing = f"; missing: {', '.join(outputs['missing'])}" if outputs["missing"] else ""
        ctx.log("stdout", f"ai.extract: found {found}{missing}")
        return ActionResult(outputs=outputs)


def _extract_offline(text: str, schema: Mapping[str, Any], dayfirst: bool) -> dict[str, Any]:
    from plait.ai.embeddings import ModelUnavailable
    from plait.ai.extract import extract_fields, validate

    used_model: list[bool] = []

    def by_meaning(name: str, text: str, options: Mapping[str, str | None]) -> str | None:
        try:
            found = match_enum(name, text, options)
        except ModelUnavailable:  # without the ai extra, patterns still work
            return None
        used_model.append(True)
        return found

    found = extract_fields(text, schema, dayfirst=dayfirst, enum_matcher=by_meaning)
    result = validate(found, schema)
    return {
        "data": result.data,
        "missing": result.missing,
        "rejected": result.rejected,
        "model": OFFLINE_MODEL if used_model else PATTERNS,
    }


def match_enum(name: str, text: str, options: Mapping[str, str | None]) -> str | None:
    """The enum value the text is about, by the offline model; None unless the model is
    sure (:data:`ENUM_THRESHOLD`): bare one-word values carry little meaning for it
    (descriptions, given as ``oneOf: [{const, description}]``, help), and a missing
    field is better than a wrong one."""
    from plait.ai.text import classify

    if len(options) < 2:
        return None
    result = classify([text], options, threshold=ENUM_THRESHOLD)[0]
    return result.label if result.confident else None


async def _extract_llm(session: LlmSession, text: str, schema: Mapping[str, Any]) -> Any:
    messages = [
        {
            "role": "system",
            "content": (
                "Extract the fields described by the JSON Schema from the user's text. "
                "Answer with one JSON object that conforms to the schema. Leave out a "
                "field the text does not give; never invent a value.\nSchema: "
                + json.dumps(schema, separators=(",", ":"))
            ),
        },
        {"role": "user", "content": text},
    ]
    from plait.ai.extract import without_nulls

    check = schema_problems(schema, ignore_required=True)

    def problems(value: Any) -> list[str]:
        if not isinstance(value, dict):
            return ["the answer must be a JSON object"]
        return check(without_nulls(value))

    answer = await session.ask_json(
        messages, schema, problems, what="data for the schema", temperature=0
    )
    data: dict[str, Any] = without_nulls(answer)
    return data


def _missing_required(data: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    from plait.ai.extract import missing_required

    return missing_required(data, schema)
