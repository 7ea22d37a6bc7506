"""``uses: workflow`` — start a deployed workflow as a sub-run and wait for it.

The step starts the child run (its ``parent_run_id`` is this run) and suspends; when
the child ends, the server finishes this step with the child's outputs (or fails it
with the child's error). The wait is durable: no worker is held, and a restart does
not start the child twice (its run id is derived from this run, step and attempt).
With ``wait: false`` the step succeeds as soon as the child is started.

Sub-workflows need the server (``plait serve``), where deployed workflows live.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import Field, field_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.errors import ConflictError, InputError, NotFound
from plait.model.durations import parse_duration

_NS = uuid.UUID("6b1c3f0e-8d55-4a9e-9a53-7f1d2f0c5e21")


def child_run_id(run_id: str, step: str, attempt: int) -> str:
    return str(uuid.uuid5(_NS, f"{run_id}:{step}:{attempt}"))


class WorkflowInput(ActionInput):
    workflow: str = Field(description="The name of a deployed workflow.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="Its inputs.")
    wait: bool = Field(True, description="Wait for it to end and take its outputs.")
    timeout: str | float = Field("7d", description="How long to wait at most.")

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: str | float) -> str | float:
        parse_duration(value)
        return value


class WorkflowAction(Action):
    name = "workflow"
    version = "1"
    description = "Start a deployed workflow as a sub-run, wait for it, take its outputs."
    Input = WorkflowInput

    async def execute(self, ctx: ActionContext, input: WorkflowInput) -> ActionResult:
        runs = ctx.services.get("runs")
        resolve = ctx.services.get("resolve_workflow")
        if runs is None or resolve is None:
            raise ActionFailed(
                "uses: workflow needs the server (plait serve), where workflows are deployed",
                retryable=False,
            )
        try:
            version = resolve(input.workflow)
        except NotFound:
            message = f"no deployed workflow {input.workflow!r}"
            raise ActionFailed(message, retryable=False) from None
        if getattr(version, "namespace", ctx.namespace) != ctx.namespace:
            # a sub-workflow runs with the caller's rights: never in another namespace
            message = f"no deployed workflow {input.workflow!r} in namespace {ctx.namespace!r}"
            raise ActionFailed(message, retryable=False)
        child = child_run_id(ctx.run_id, ctx.step, ctx.attempt)
        trigger = {
            "type": "workflow",
            "parent": {"run_id": ctx.run_id, "step": ctx.step, "attempt": ctx.attempt},
        }
        try:
            runs.start(
                version,
                input.inputs,
                trigger=trigger,
                parent_run_id=ctx.run_id,
                run_id=child,
                mask=ctx.mask,
            )
        except InputError as exc:
            raise ActionFailed(f"{input.workflow}: {exc}", retryable=False) from None
        except ConflictError:
            pass  # started by an earlier try of this very attempt
        ctx.log("system", f"started run {child} of {input.workflow}")
        if not input.wait:
            return ActionResult(outputs={"run_id": child})
        return ActionResult(
            suspend_until=time.time() + parse_duration(input.timeout),
            wait_reason=f"waiting for run {child} of {input.workflow}",
        )

    async def resume(self, ctx: ActionContext, input: WorkflowInput) -> ActionResult:
        raise ActionFailed(f"run of {input.workflow} did not end in time", retryable=False)
