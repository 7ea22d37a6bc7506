"""Running one attempt of one action step, and turning what happened into an Outcome.

Everything that can go wrong in an attempt — a template that does not evaluate, a
``with:`` that does not fit the action's schema, the action raising, the step's timeout
— becomes an :class:`~plait.engine.api.Outcome` with a message a user can act on. Only
cancellation passes through: the caller decides whether it was asked for.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from plait import expr, fastjson
from plait.actions.base import Action, ActionContext, ActionFailed, ActionResult
from plait.engine.api import Outcome
from plait.errors import ExpressionError
from plait.model.durations import format_duration
from plait.model.plan import StepPlan


def _input_error(node: StepPlan, exc: PydanticValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "with"
        parts.append(f"with.{where}: {err['msg']}")
    return f"step {node.key!r} ({node.uses}): " + "; ".join(parts)


def render_env(env: Mapping[str, Any], scope: Mapping[str, Any]) -> dict[str, str]:
    """Environment values rendered to strings (``true``/``false`` for booleans)."""
    out: dict[str, str] = {}
    for key, value in env.items():
        rendered = expr.render(value, scope)
        if isinstance(rendered, bool):
            rendered = "true" if rendered else "false"
        elif isinstance(rendered, dict | list):
            rendered = json.dumps(rendered)
        out[key] = "" if rendered is None else str(rendered)
    return out


def prepare_input(action: Action, node: StepPlan, scope: Mapping[str, Any]) -> Any:
    """The step's ``with:`` rendered and validated; raises ActionFailed(retryable=False)."""
    try:
        rendered = expr.render(dict(node.with_), scope)
    except ExpressionError as exc:
        raise ActionFailed(f"step {node.key!r}: {exc}", retryable=False) from None
    try:
        return action.Input.model_validate(rendered)
    except PydanticValidationError as exc:
        raise ActionFailed(_input_error(node, exc), retryable=False) from None


@dataclass
class PreparedAttempt:
    """An attempt ready to run: its action, context and (when rendered already) input."""

    action: Action
    node: StepPlan
    scope: Mapping[str, Any]
    ctx: ActionContext
    input: Any = None

    def abort(self) -> None:
        """Undo what the action's prestart began (a no-op once ``execute`` took it)."""
        if self.ctx.prestarted is not None:
            self.ctx.prestarted.abort()


def _outputs(node: StepPlan, result: ActionResult, scope: Mapping[str, Any]) -> dict[str, Any]:
    if node.outputs is None:
        return dict(result.outputs)
    local = dict(scope)
    local["result"] = {"outputs": result.outputs}
    try:
        rendered = expr.render(dict(node.outputs), local)
    except ExpressionError as exc:
        raise ActionFailed(f"outputs of step {node.key!r}: {exc}", retryable=False) from None
    return dict(rendered)


def _check_json(outputs: dict[str, Any], node: StepPlan) -> None:
    try:
        fastjson.dumps(outputs)
    except (TypeError, ValueError) as exc:
        raise ActionFailed(
            f"outputs of step {node.key!r} are not JSON-serialisable: {exc}", retryable=False
        ) from None


async def run_attempt(
    action: Action,
    node: StepPlan,
    scope: Mapping[str, Any],
    ctx: ActionContext,
    *,
    resume: bool = False,
    mask_value: Callable[[Any], Any] = lambda v: v,
    inp: Any = None,
) -> Outcome:
    """Execute (or resume) ``action`` for ``node`` and report the outcome.

    ``asyncio.CancelledError`` is re-raised untouched; a step ``timeout`` becomes a
    ``timed_out`` outcome (the action has been cancelled, so a shell step's process
    group is already dead). ``inp`` is the input when :func:`prepare_input` made it
    already.
    """
    try:
        if inp is None:
            inp = prepare_input(action, node, scope)
        call = action.resume(ctx, inp) if resume else action.execute(ctx, inp)
        if node.timeout is None:  # no timeout scope to set up: most steps have none
            result = await call
        else:
            async with asyncio.timeout(node.timeout):
                result = await call
        if result.suspend_until is not None:
            return Outcome("suspended", resume_at=result.suspend_until, reason=result.wait_reason)
        outputs = _outputs(node, result, scope)
        _check_json(outputs, node)
    except TimeoutError:
        limit = format_duration(node.timeout or 0)
        return Outcome("timed_out", error=f"step {node.key!r} timed out after {limit}")
    except ActionFailed as exc:
        return Outcome(
            "failed",
            outputs=mask_value(exc.outputs) or None,
            error=ctx.mask(str(exc)),
            retryable=exc.retryable,
            retry_after=exc.retry_after,
        )
    except Exception as exc:  # an action's bug or an unexpected error is a failed attempt
        return Outcome("failed", error=ctx.mask(f"{type(exc).__name__}: {exc}"))
    masked = mask_value(outputs)
    sealed = outputs if masked != outputs else None
    return Outcome("succeeded", outputs=masked, sealed_outputs=sealed)
