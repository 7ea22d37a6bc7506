"""Running one attempt of one action step, and turning what happened into an Outcome.

Everything that can go wrong in an attempt — a template that does not evaluate, a
``with:`` that does not fit the action's schema, the action raising, the step's timeout
— becomes an :class:`~plait.engine.api.Outcome` with a message a user can act on. Only
cancellation passes through: the caller decides whether it was asked for.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError as PydanticValidationError

from plait import expr, fastjson
from plait.actions.base import Action, ActionContext, ActionFailed, ActionResult, LogSink
from plait.actions.registry import ActionRegistry
from plait.engine.api import Outcome
from plait.errors import ExpressionError, PlaitError
from plait.model.durations import format_duration
from plait.model.plan import StepPlan

if TYPE_CHECKING:
    from plait.runtime.tracked import TrackedRun

log = logging.getLogger(__name__)


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


def prepare_attempt(
    h: TrackedRun,
    key: str,
    attempt: int,
    registry: ActionRegistry,
    sink: LogSink,
    services: MutableMapping[str, Any],
    now: float,
) -> PreparedAttempt | Outcome:
    """Attempt ``attempt`` of step ``key`` of run ``h`` made ready: its action, scope and
    context; or the outcome of failing to make them (an unknown action, a bad ``env``)."""
    node = h.plan.nodes[h.machine.steps[key].node]
    try:
        action = registry.get(node.uses or "shell")
        scope = h.machine.scope(key)
        env = render_env({**h.plan.env, **node.env}, scope)
    except (PlaitError, ExpressionError) as exc:
        return Outcome("failed", error=h.masker.mask(str(exc)), retryable=False)
    ctx = ActionContext(
        run_id=h.id,
        workflow=h.plan.name,
        step=key,
        attempt=attempt,
        workdir=h.workdir,
        env=env,
        log=sink,
        mask=h.masker.mask,
        namespace=h.plan.namespace,
        services=services,
        connections=h.connections(services),
        secret_sink=h.masker.add,
        deadline=(now + node.timeout) if node.timeout else None,
    )
    return PreparedAttempt(action, node, scope, ctx)


def prestart(prepared: PreparedAttempt) -> bool:
    """Let the action begin the effect-free part of the attempt (Action.prestart) while
    its start is committed; whether it did. A failure here is left to the attempt itself
    to meet again and report."""
    if not prepared.action.prestarts:
        return False
    try:
        prepared.input = prepare_input(prepared.action, prepared.node, prepared.scope)
        prepared.ctx.prestarted = prepared.action.prestart(prepared.ctx, prepared.input)
    except Exception:
        log.debug("step %s: no prestart", prepared.ctx.step, exc_info=True)
        return False
    return prepared.ctx.prestarted is not None


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
