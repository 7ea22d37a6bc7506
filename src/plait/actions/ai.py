"""``uses: ai.classify`` and ``uses: ai.route`` — and what every ``ai.*`` action shares.

Each action works offline by default, on the sentence-embedding model of
:mod:`plait.ai.embeddings` (the ``ai`` extra), and with a large language model when the
step names an ``llm`` connection (``connection: openai``). Outputs say which did the
work: ``model`` is ``all-MiniLM-L6-v2`` offline, else the provider's model name, and an
LLM step also outputs ``usage`` (tokens and cost, summed over the step's calls).

An LLM is asked for JSON that fits a schema (the label restricted to the labels given);
an answer that does not fit is sent back once with what was wrong, and a second bad
answer fails the step with both reasons. Texts are limited to :data:`MAX_TEXT_CHARS`
characters (1 MB of text): a longer one fails at once, naming the field.

The offline model, numpy and the LLM client are imported only when a step runs, so the
workflow validator can read these input models without loading anything heavy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult

if TYPE_CHECKING:
    from plait.actions.connections import Connection
    from plait.ai.llm import ChatReply, Usage
    from plait.ai.text import Classification

T = TypeVar("T")

#: the model offline steps name in their ``model`` output
OFFLINE_MODEL = "all-MiniLM-L6-v2"
#: the longest text a step takes, in characters
MAX_TEXT_CHARS = 1_000_000
#: the most labels (or routes) a step may choose between
MAX_LABELS = 500
#: characters of a bad LLM answer quoted in an error
_QUOTE_CHARS = 200


# -- shared input pieces ------------------------------------------------------------------------
def _bounded(value: str) -> str:
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(
            f"is {len(value):,} characters long; the limit is {MAX_TEXT_CHARS:,} "
            "(split the document, e.g. page by page, or summarise it first)"
        )
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty: there is no text to work on")
    return value


Text = Annotated[str, AfterValidator(_bounded), AfterValidator(_not_blank)]


def connection_field() -> Any:
    return Field(
        None,
        description=(
            "An llm connection to use a large language model; without one the offline "
            "model (all-MiniLM-L6-v2) does the work on this machine."
        ),
    )


def model_field() -> Any:
    return Field(None, description="With a connection: the model (default the connection's).")


def check_labels(value: Sequence[str] | Mapping[str, str | None], what: str = "labels") -> None:
    """At least two (at most :data:`MAX_LABELS`) distinct, non-empty names."""
    names = list(value)
    if len(names) < 2:
        raise ValueError(
            f"give at least two {what} to choose between (got {len(names)}): "
            "one cannot be chosen against nothing"
        )
    if len(names) > MAX_LABELS:
        raise ValueError(f"give at most {MAX_LABELS} {what} (got {len(names)})")
    blank = [n for n in names if not str(n).strip()]
    if blank:
        raise ValueError(f"{what} must not be empty strings")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{what} must be distinct; repeated: {', '.join(repeated)}")


def labels_shape(value: Any, what: str = "labels") -> Any:
    """A clear error for labels that are neither a list nor a map (before pydantic's
    one error per member of the union)."""
    if not isinstance(value, list | dict):
        kind = "a string" if isinstance(value, str) else type(value).__name__
        raise ValueError(
            f"{what} must be a list of names or a map of name to description, not {kind}"
        )
    return value


def as_described(value: Sequence[str] | Mapping[str, str | None]) -> dict[str, str | None]:
    """Labels as name -> description (None when only names were given)."""
    if isinstance(value, Mapping):
        return {name: (desc or None) for name, desc in value.items()}
    return dict.fromkeys(value)


# -- running offline ------------------------------------------------------------------------------
async def offline(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` in a worker thread; the offline model (or jsonschema) missing fails the
    step for good, saying what to install."""
    from plait.ai.embeddings import ModelUnavailable
    from plait.ai.extract import SchemaUnavailable

    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except (ModelUnavailable, SchemaUnavailable) as exc:
        raise ActionFailed(str(exc), retryable=False) from None


# -- an LLM's calls within one step --------------------------------------------------------------
class LlmSession:
    """The LLM calls of one step on one connection, and the model and usage they add
    up to (what the step outputs under ``model`` and ``usage``)."""

    def __init__(self, ctx: ActionContext, connection: str, model: str | None = None) -> None:
        from plait.ai.llm import is_llm

        conn: Connection = ctx.connection(connection)
        if not is_llm(conn):
            raise ActionFailed(
                f"connection {connection!r} is a {conn.type} connection; ai steps need an "
                "llm connection",
                retryable=False,
            )
        self.ctx, self.conn, self.model = ctx, conn, model
        self.used_model: str | None = None
        self.usage: Usage | None = None
        self.calls = 0

    async def ask(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        json_schema: Mapping[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatReply:
        from plait.ai.llm import LlmError, action_failed, chat

        try:
            reply = await chat(
                self.conn,
                messages,
                ctx=self.ctx,
                model=self.model,
                json_schema=json_schema,
                temperature=temperature,
                max_tokens=max_tokens,
            )
        except LlmError as exc:
            failed = action_failed(exc)
            failed.outputs = self.outputs() if self.calls else {}
            raise failed from None
        self.calls += 1
        self.used_model = reply.model
        self.usage = reply.usage if self.usage is None else self.usage + reply.usage
        return reply

    async def ask_json(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: Mapping[str, Any],
        problems: Callable[[Any], list[str]],
        *,
        what: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Any:
        """A JSON answer that fits ``schema`` and for which ``problems`` finds nothing
        wrong; a bad answer is sent back once with what was wrong."""
        history = [dict(m) for m in messages]
        first: list[str] = []
        for attempt in (1, 2):
            reply = await self.ask(
                history, json_schema=schema, temperature=temperature, max_tokens=max_tokens
            )
            value, wrong = _judge(reply.text, problems)
            if not wrong:
                return value
            if attempt == 1:
                first = wrong
                history += [
                    {"role": "assistant", "content": reply.text},
                    {
                        "role": "user",
                        "content": "That answer is not valid: "
                        + "; ".join(wrong)
                        + ". Answer again with only one JSON document that conforms to the "
                        "schema.",
                    },
                ]
        quoted = _quote(reply.text)
        raise ActionFailed(
            f"the model's answer is not valid {what}, even after it was told why: first "
            f"{'; '.join(first)}; then {'; '.join(wrong)} (last answer: {quoted})",
            outputs=self.outputs(),
        )

    def outputs(self) -> dict[str, Any]:
        return {
            "model": self.used_model or self.model,
            "usage": self.usage.as_output() if self.usage is not None else None,
        }


def _judge(text: str, problems: Callable[[Any], list[str]]) -> tuple[Any, list[str]]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, [f"it is not JSON ({exc.args[0] if exc.args else exc})"]
    return value, problems(value)


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= _QUOTE_CHARS else flat[:_QUOTE_CHARS] + "…")


def schema_problems(
    schema: Mapping[str, Any], *, ignore_required: bool = False
) -> Callable[[Any], list[str]]:
    """A ``problems`` function for :meth:`LlmSession.ask_json` that validates against
    ``schema`` (jsonschema, formats checked)."""
    from plait.ai.extract import schema_errors

    def check(value: Any) -> list[str]:
        return [
            f"{'/'.join(map(str, path)) or 'the answer'}: {message}"
            for path, message in schema_errors(value, schema, ignore_required=ignore_required)
        ]

    return check


# -- ai.classify --------------------------------------------------------------------------------
class ClassifyInput(ActionInput):
    text: Text = Field(description="The text to classify (at most 1,000,000 characters).")
    labels: list[str] | dict[str, str | None] = Field(
        description=(
            "The labels to choose from: a list of names, or a map of name to description. "
            "Descriptions make the offline model far more accurate."
        )
    )
    connection: str | None = connection_field()
    model: str | None = model_field()
    multi_label: bool = Field(
        False,
        description="Score each label on its own and return every label above the threshold.",
    )
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "The score the best label needs for confident to be true (default 0.6; "
            "multi-label: the score a label needs to be chosen, default 0.5)."
        ),
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_shape(cls, value: Any) -> Any:
        return labels_shape(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str] | dict[str, str | None]) -> list[str] | dict[str, str | None]:
        check_labels(value)
        return value


class ClassifyOutput(BaseModel):
    label: str | None = Field(description="The best label.")
    scores: dict[str, float] = Field(
        description="Each label's score (they sum to 1 unless multi_label)."
    )
    confident: bool = Field(description="Whether the best score reached the threshold.")
    labels: list[str] = Field(
        description="The labels chosen: every label at or above the threshold with "
        "multi_label, else the best alone."
    )
    model: str | None = Field(description="all-MiniLM-L6-v2 offline, else the LLM's model.")
    usage: dict[str, Any] | None = Field(
        None, description="With an LLM: prompt, completion and total tokens, and cost."
    )


class ClassifyAction(Action):
    name = "ai.classify"
    version = "1"
    description = (
        "Classify a text into one of the given labels (or several with multi_label): "
        "zero-shot on the offline model, or by an LLM connection."
    )
    Input = ClassifyInput
    Output = ClassifyOutput

    async def execute(self, ctx: ActionContext, input: ClassifyInput) -> ActionResult:
        labels = as_described(input.labels)
        if input.connection is None:
            result = await classify_offline(input.text, labels, input.multi_label, input.threshold)
            extra: dict[str, Any] = {"model": OFFLINE_MODEL}
        else:
            session = LlmSession(ctx, input.connection, input.model)
            result = await classify_llm(
                session, input.text, labels, input.multi_label, input.threshold
            )
            extra = session.outputs()
        ctx.log("stdout", f"ai.classify: {result.label} ({_scores_line(result.scores)})")
        return ActionResult(outputs={**_classification_outputs(result), **extra})


async def classify_offline(
    text: str, labels: Mapping[str, str | None], multi_label: bool, threshold: float | None
) -> Classification:
    from plait.ai.text import classify

    results = await offline(classify, [text], labels, multi_label=multi_label, threshold=threshold)
    return results[0]


async def classify_llm(
    session: LlmSession,
    text: str,
    labels: Mapping[str, str | None],
    multi_label: bool,
    threshold: float | None,
) -> Classification:
    """Ask the LLM for the label (an enum in the answer's schema) and its confidence."""
    from plait.ai.text import THRESHOLD, Classification

    names = list(labels)
    schema, task = _label_question(names, multi_label)
    described = "\n".join(f"- {n}: {d}" if d else f"- {n}" for n, d in labels.items())
    messages = [
        {"role": "system", "content": f"You classify texts. {task} The labels:\n{described}"},
        {"role": "user", "content": text},
    ]
    answer = await session.ask_json(
        messages, schema, schema_problems(schema), what="classification", temperature=0
    )
    if multi_label:
        # the model says yes or no per label: scores are 1 or 0, and confident means
        # it chose at least one
        chosen = list(dict.fromkeys(answer["labels"]))
        scores = {n: (1.0 if n in chosen else 0.0) for n in names}
        return Classification(chosen[0] if chosen else None, scores, bool(chosen), chosen)
    best, confidence = answer["label"], float(answer["confidence"])
    rest = (1.0 - confidence) / (len(names) - 1)
    scores = {n: round(confidence if n == best else rest, 4) for n in names}
    limit = THRESHOLD if threshold is None else threshold
    return Classification(best, scores, confidence >= limit, [best])


def _label_question(names: list[str], multi_label: bool) -> tuple[dict[str, Any], str]:
    """The answer's schema (labels restricted to ``names``) and the task in words."""
    if multi_label:
        items = {"type": "array", "items": {"type": "string", "enum": names}}
        schema: dict[str, Any] = {"properties": {"labels": items}, "required": ["labels"]}
        task = "Choose every label that applies to the text (possibly none)."
    else:
        confidence = {"type": "number", "minimum": 0, "maximum": 1}
        schema = {
            "properties": {"label": {"type": "string", "enum": names}, "confidence": confidence},
            "required": ["label", "confidence"],
        }
        task = (
            "Choose the one label that fits the text best, and say how sure you are "
            "(confidence from 0 to 1)."
        )
    return {"type": "object", **schema, "additionalProperties": False}, task


def _classification_outputs(result: Classification) -> dict[str, Any]:
    return {
        "label": result.label,
        "scores": result.scores,
        "confident": result.confident,
        "labels": result.labels,
    }


def _scores_line(scores: Mapping[str, float]) -> str:
    ranked = sorted(scores.items(), key=lambda item: -item[1])[:5]
    return ", ".join(f"{name} {score:.2f}" for name, score in ranked)


# -- ai.route -------------------------------------------------------------------------------------
class RouteInput(ActionInput):
    text: Text = Field(description="The text to route (at most 1,000,000 characters).")
    routes: dict[str, str] = Field(
        description="The branches: name -> what texts that go there are about."
    )
    default: str | None = Field(
        None,
        description=(
            "The route when no branch is a confident match (it need not be one of the "
            "routes); without it the best branch is taken anyway."
        ),
    )
    connection: str | None = connection_field()
    model: str | None = model_field()
    threshold: float | None = Field(
        None, ge=0, le=1, description="The score the best branch needs (default 0.6)."
    )

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: dict[str, str]) -> dict[str, str]:
        check_labels(value, "routes")
        return value

    @model_validator(mode="after")
    def _default(self) -> RouteInput:
        if self.default is not None and not self.default.strip():
            raise ValueError("default must be a route name, not an empty string")
        return self


class RouteOutput(BaseModel):
    route: str = Field(description="The chosen branch (the default when not confident).")
    score: float = Field(description="The best branch's score.")
    scores: dict[str, float] = Field(description="Each branch's score (they sum to 1).")
    confident: bool = Field(description="Whether the best branch reached the threshold.")
    model: str | None = Field(description="all-MiniLM-L6-v2 offline, else the LLM's model.")
    usage: dict[str, Any] | None = Field(None, description="With an LLM: tokens and cost.")


class RouteAction(Action):
    name = "ai.route"
    version = "1"
    description = (
        "Pick the branch a text belongs to, for a later step's if: "
        "${{ steps.<id>.outputs.route == 'billing' }}."
    )
    Input = RouteInput
    Output = RouteOutput

    async def execute(self, ctx: ActionContext, input: RouteInput) -> ActionResult:
        routes = as_described(input.routes)
        if input.connection is None:
            result = await classify_offline(input.text, routes, False, input.threshold)
            extra: dict[str, Any] = {"model": OFFLINE_MODEL}
        else:
            session = LlmSession(ctx, input.connection, input.model)
            result = await classify_llm(session, input.text, routes, False, input.threshold)
            extra = session.outputs()
        route = result.label or ""  # one label of a single-label result is always set
        if not result.confident and input.default is not None:
            route = input.default
        why = "" if result.confident else " (not confident)"
        ctx.log("stdout", f"ai.route: {route}{why} ({_scores_line(result.scores)})")
        outputs = {
            "route": route,
            "score": max(result.scores.values()),
            "scores": result.scores,
            "confident": result.confident,
        }
        return ActionResult(outputs={**outputs, **extra})
