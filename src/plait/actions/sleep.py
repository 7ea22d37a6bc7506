"""``uses: sleep`` — wait for a duration or until a time, durably.

The action does not sleep in the worker: it returns ``suspend_until`` and the runtime
persists the wait, so a sleep of days survives restarts and holds no worker. When the
time is due the runtime calls :meth:`SleepAction.resume`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pydantic import Field, field_validator, model_validator

from plait.actions.base import Action, ActionContext, ActionInput, ActionResult
from plait.model.durations import parse_duration


class SleepInput(ActionInput):
    duration: str | float | None = Field(
        None, description="How long: `30s`, `5m`, `1h30m`, `2d` or a number of seconds."
    )
    until: datetime | None = Field(
        None, description="Until when: an ISO 8601 date and time (UTC when no offset)."
    )

    @field_validator("duration")
    @classmethod
    def _valid_duration(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration(value)  # raises ValueError with the reason
        return value

    @field_validator("until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _one_of(self) -> SleepInput:
        if (self.duration is None) == (self.until is None):
            raise ValueError("give either duration or until")
        return self


class SleepAction(Action):
    name = "sleep"
    version = "1"
    description = "Wait for a duration or until a time; the wait is durable (no worker held)."
    Input = SleepInput

    async def execute(self, ctx: ActionContext, input: SleepInput) -> ActionResult:
        now = time.time()
        if input.until is not None:
            due = input.until.timestamp()
        else:
            due = now + parse_duration(input.duration or 0)
        if due <= now:
            return ActionResult(outputs={"slept_until": _iso(now)})
        return ActionResult(suspend_until=due, wait_reason=f"sleeping until {_iso(due)}")

    async def resume(self, ctx: ActionContext, input: SleepInput) -> ActionResult:
        # When the wait actually ended, which may be later than asked (the runtime was
        # down, or the queue was busy).
        return ActionResult(outputs={"slept_until": _iso(time.time())})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
