"""Event triggers: which workflows a run lifecycle or published event starts.

An event is a plain mapping, as recorded in the outbox or posted to
``POST /api/v1/events``::

    {"type": "run.succeeded",
     "source": {"workflow": "build", "namespace": "default"},
     "run": {"id": "...", "inputs": {...}, ...},
     "payload": {...}}

A trigger matches on the event type (exactly, or by prefix with a trailing ``*`` as in
``run.*``), optionally on the source workflow and namespace, and optionally on an
``if`` expression evaluated in the sandbox with ``event`` in scope. Matching never
raises: an event with a broken shape or an ``if`` that errors is simply "no match",
with the reason returned so the server can log it next to the event — one bad trigger
must not stop the other workflows listening to the same event.

Event chains can loop (``run.*`` on a workflow that itself emits run events, or two
workflows that start each other); :func:`would_loop` lets the server refuse the start
that closes a cycle or makes the chain too deep.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plait.errors import ExpressionError
from plait.expr import evaluate

#: Default longest chain of event-started runs (each started by the previous one's event).
MAX_CHAIN_DEPTH = 10
_TYPE = re.compile(r"^(\*|[A-Za-z0-9_.-]+\*?)$")


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """An ``event`` trigger of a workflow, validated on construction.

    ``workflow`` and ``namespace`` restrict the source of the event; ``None`` accepts
    any source (including published events that have none). ``if_`` is the YAML ``if``.
    """

    type: str
    workflow: str | None = None
    if_: str | None = None
    namespace: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not _TYPE.match(self.type):
            raise ValueError(
                f"event type {self.type!r} must be a name such as 'run.succeeded', "
                "optionally ending in '*' (as in 'run.*')"
            )
        for name in ("workflow", "namespace", "if_"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"event trigger {name.rstrip('_')} must be a non-empty string")


@dataclass(frozen=True, slots=True)
class Match:
    """The answer of :func:`matches`: truthy when the trigger fires, with the reason why
    (or why not), so a skipped or failed trigger is explainable from the event log."""

    matched: bool
    reason: str

    def __bool__(self) -> bool:
        return self.matched


def type_matches(pattern: str, event_type: str) -> bool:
    """``run.*`` matches ``run.succeeded`` (not ``run`` itself); ``*`` matches all."""
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def matches(trigger: EventTrigger, event: Mapping[str, Any]) -> Match:
    """Whether ``event`` starts a run for ``trigger``; never raises."""
    event_type = event.get("type") if isinstance(event, Mapping) else None
    if not isinstance(event_type, str):
        return Match(False, "event has no type")
    if not type_matches(trigger.type, event_type):
        return Match(False, f"event type {event_type!r} does not match {trigger.type!r}")
    source = event.get("source")
    source = source if isinstance(source, Mapping) else {}
    for key, wanted in (("workflow", trigger.workflow), ("namespace", trigger.namespace)):
        if wanted is not None and source.get(key) != wanted:
            return Match(False, f"source {key} {source.get(key)!r} is not {wanted!r}")
    if trigger.if_ is None:
        return Match(True, "matched")
    return _condition(trigger.if_, event)


def would_loop(chain: Sequence[str], workflow: str, max_depth: int = MAX_CHAIN_DEPTH) -> bool:
    """Whether starting ``workflow`` from the last event of ``chain`` must be refused.

    ``chain`` lists the workflows of the runs that led here, oldest first: ``[a, b]``
    means a run of ``a`` emitted the event that started ``b``, whose event now matches
    ``workflow``. Starting it is refused when ``workflow`` is already in the chain
    (the start would close a cycle that never ends by itself) or when the chain already
    holds ``max_depth`` runs (a runaway fan-out even without a cycle). GitHub Actions
    caps ``workflow_run`` chains the same way.
    """
    return workflow in chain or len(chain) >= max_depth


def _condition(source: str, event: Mapping[str, Any]) -> Match:
    try:
        value = evaluate(_bare(source), {"event": event})
    except ExpressionError as exc:
        return Match(False, f"if: {exc.reason} in {source!r}")
    if value:
        return Match(True, "matched")
    return Match(False, f"if: {source!r} is {value!r}")


def _bare(source: str) -> str:
    """Accept ``if: ${{ expr }}`` as well as the bare ``if: expr`` (as step ``if`` does)."""
    text = source.strip()
    if text.startswith("${{") and text.endswith("}}") and text.count("${{") == 1:
        return text[3:-2].strip()
    return text
