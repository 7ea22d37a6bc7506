"""``uses: notify`` — send a message to a channel (see :mod:`plait.notify`).

The step's ``message`` and ``title`` are templates rendered with the step's scope before
the action runs; the notice is then sent by the same code as a workflow's ``notify:``,
with the secrets the run knows masked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.errors import PlaitError
from plait.notify import (
    Channel,
    ChannelError,
    EmailTarget,
    Notice,
    load_channels,
    run_link,
    send,
)


class NotifyInput(ActionInput):
    channel: str | None = Field(
        None, description="A channel from channels.yaml or PLAIT_CHANNEL_<NAME>."
    )
    url: str | None = Field(None, description="Or a webhook URL directly.")
    type: Literal["webhook", "slack"] = Field("webhook", description="For `url`: webhook or slack.")
    connection: str | None = Field(
        None, description="Or an smtp connection: send an email to `to` (and `cc`)."
    )
    to: list[str] = Field(
        default_factory=list,
        description="Email recipients (with `connection`, or replacing an email channel's).",
    )
    cc: list[str] = Field(default_factory=list, description="Email copies.")
    message: str = Field(description="The text to send (expressions allowed).")
    title: str | None = Field(
        None, description="A title: Slack's header, an email's subject, a webhook's title."
    )
    link: str | None = Field(
        None, description="A link for the button or email; default the run's page."
    )

    @model_validator(mode="after")
    def _target(self) -> NotifyInput:
        given = [n for n in ("channel", "url", "connection") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of channel, url or connection")
        if self.connection is not None and not self.to:
            raise ValueError("an email through a connection needs `to`")
        if self.url is not None and (self.to or self.cc):
            raise ValueError("to and cc are for email, not a url")
        bad = [a for a in (*self.to, *self.cc) if "@" not in a]
        if bad:
            raise ValueError(f"not an email address: {bad[0]!r}")
        return self


class NotifyAction(Action):
    name = "notify"
    version = "1"
    description = "Send a message to a webhook, a Slack-compatible channel or by email."
    Input = NotifyInput

    async def execute(self, ctx: ActionContext, input: NotifyInput) -> ActionResult:
        channel = self._channel(input)
        notice = Notice(
            input.message,
            title=input.title,
            workflow=ctx.workflow,
            run_id=ctx.run_id,
            step=ctx.step,
            link=input.link or run_link(ctx.run_id),
        ).masked(ctx.mask)
        try:
            delivery = await send(channel, notice, connection=ctx.connection)
        except ChannelError as exc:
            raise ActionFailed(ctx.mask(str(exc)), retryable=exc.retryable) from None
        if delivery.type == "email":
            ctx.log("system", f"sent to {channel.name} ({', '.join(delivery.recipients)})")
        else:
            ctx.log("system", f"sent to {channel.name} ({delivery.status})")
        outputs: dict[str, object] = {
            "channel": channel.name,
            "type": delivery.type,
            "status": delivery.status,
        }
        if delivery.type == "email":
            outputs["recipients"] = list(delivery.recipients)
        return ActionResult(outputs=outputs)

    @staticmethod
    def _channel(input: NotifyInput) -> Channel:
        if input.url is not None:
            return Channel("url", input.type, input.url)
        if input.connection is not None:
            target = EmailTarget(tuple(input.to), tuple(input.cc), input.connection)
            return Channel(input.connection, "email", email=target)
        home = os.environ.get("PLAIT_HOME")
        try:
            channels = load_channels(Path(home) if home else Path.home() / ".plait")
        except PlaitError as exc:
            raise ActionFailed(str(exc), retryable=False) from None
        name = input.channel or ""
        found = channels.get(name) or channels.get(name.lower())
        if found is None:
            known = ", ".join(sorted(channels)) or "none configured"
            raise ActionFailed(f"unknown channel {name!r} (known: {known})", retryable=False)
        if input.to or input.cc:
            if found.email is None:
                raise ActionFailed(
                    f"channel {name!r} is {found.type}: to and cc are for email channels",
                    retryable=False,
                )
            email = EmailTarget(
                tuple(input.to) or found.email.to,
                tuple(input.cc) or found.email.cc,
                found.email.connection,
                found.email.smtp,
            )
            found = Channel(found.name, "email", email=email)
        return found
