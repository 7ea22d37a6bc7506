"""``uses: approval`` — wait for a person to approve or reject.

The step suspends (durably: no worker is held) until someone with the right to decide
calls ``POST /api/v1/runs/{id}/steps/{step}/approve`` or ``.../reject`` (or ``plait
approve|reject``), or until its ``timeout`` passes. Approving succeeds the step with
outputs ``approved``, ``approver`` and ``comment``; rejecting fails it (not retried);
a timeout fails it with ``outcome: timed_out``.

``approvers`` limits who may decide: ``role:admin`` (anyone with that role, globally or
in the workflow's namespace) or ``user:alice``. Empty means anyone allowed to approve
runs in the namespace (permission ``runs:approve``).
"""

from __future__ import annotations

import time

from pydantic import Field, field_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.model.durations import format_duration, parse_duration


class ApprovalInput(ActionInput):
    approvers: list[str] = Field(
        default_factory=list,
        description="Who may decide: `role:NAME` or `user:NAME` entries; empty = anyone "
        "with `runs:approve` in the namespace.",
    )
    timeout: str | float = Field("24h", description="How long to wait for a decision.")
    message: str = Field("", description="What the approver is asked.")

    @field_validator("approvers")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        for entry in value:
            kind, _, name = entry.partition(":")
            if kind not in ("role", "user") or not name:
                raise ValueError(f"{entry!r}: write approvers as role:NAME or user:NAME")
        return value

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: str | float) -> str | float:
        parse_duration(value)
        return value


class ApprovalAction(Action):
    name = "approval"
    version = "1"
    description = "Wait for a person to approve or reject (through the API, UI or CLI)."
    Input = ApprovalInput

    async def execute(self, ctx: ActionContext, input: ApprovalInput) -> ActionResult:
        due = time.time() + parse_duration(input.timeout)
        who = ", ".join(input.approvers) or "an operator"
        text = f": {input.message}" if input.message else ""
        ctx.log("system", f"waiting for approval by {who}{text}")
        return ActionResult(suspend_until=due, wait_reason=f"waiting for approval by {who}{text}")

    async def resume(self, ctx: ActionContext, input: ApprovalInput) -> ActionResult:
        limit = format_duration(parse_duration(input.timeout))
        raise ActionFailed(
            f"no decision within {limit}",
            {"approved": False, "outcome": "timed_out"},
            retryable=False,
        )
