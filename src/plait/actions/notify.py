"""``uses: notify`` — send a message to a channel (see :mod:`plait.notify`)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.notify import Channel, ChannelError, load_channels, send


class NotifyInput(ActionInput):
    channel: str | None = Field(
        None, description="A channel from channels.yaml or PLAIT_CHANNEL_<NAME>."
    )
    url: str | None = Field(None, description="Or a webhook URL directly.")
    type: str = Field("webhook", description="For `url`: webhook or slack.")
    message: str = Field(description="The text to send (expressions allowed).")
    title: str | None = Field(None, description="An optional title for webhook channels.")

    @model_validator(mode="after")
    def _target(self) -> NotifyInput:
        if (self.channel is None) == (self.url is None):
            raise ValueError("give either channel or url")
        if self.type not in ("webhook", "slack"):
            raise ValueError("type must be webhook or slack")
        return self


class NotifyAction(Action):
    name = "notify"
    version = "1"
    description = "Send a message to a webhook or Slack-compatible channel."
    Input = NotifyInput

    async def execute(self, ctx: ActionContext, input: NotifyInput) -> ActionResult:
        channel = self._channel(input)
        context = {
            "title": input.title,
            "workflow": ctx.workflow,
            "run_id": ctx.run_id,
            "step": ctx.step,
        }
        try:
            status = await send(channel, input.message, context)
        except ChannelError as exc:
            raise ActionFailed(ctx.mask(str(exc))) from None
        ctx.log("system", f"sent to {channel.name} ({status})")
        return ActionResult(outputs={"channel": channel.name, "status": status})

    @staticmethod
    def _channel(input: NotifyInput) -> Channel:
        if input.url is not None:
            return Channel("url", input.type, input.url)
        home = os.environ.get("PLAIT_HOME")
        channels = load_channels(Path(home) if home else Path.home() / ".plait")
        found = channels.get(input.channel or "") or channels.get((input.channel or "").lower())
        if found is None:
            known = ", ".join(sorted(channels)) or "none configured"
            raise ActionFailed(
                f"unknown channel {input.channel!r} (known: {known})", retryable=False
            )
        return found
