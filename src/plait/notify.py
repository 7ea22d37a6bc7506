"""Sending notifications to channels: the ``notify`` action and a workflow's ``notify:``.

A channel is named in ``$PLAIT_HOME/channels.yaml`` or by an environment variable::

    # channels.yaml
    ops: {type: slack, url: "https://hooks.slack.com/services/…"}
    audit: {type: webhook, url: "https://example.com/hook", headers: {X-Token: "…"}}

    PLAIT_CHANNEL_OPS=https://example.com/hook          # a webhook channel

``webhook`` channels receive JSON ``{"text", "title", "workflow", "run_id", "status",
"step", "url"}``; ``slack`` channels (any Slack-compatible incoming webhook: Slack,
Mattermost, Rocket.Chat, Discord's /slack endpoint) receive ``{"text": …}``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait.errors import PlaitError


class ChannelError(PlaitError):
    """A channel is unknown, misconfigured or did not accept the message."""


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    type: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


def load_channels(
    home: Path | None, environ: Mapping[str, str] | None = None
) -> dict[str, Channel]:
    env = os.environ if environ is None else environ
    found: dict[str, Channel] = {}
    path = (home / "channels.yaml") if home else None
    if path is not None and path.exists():
        import yaml

        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ChannelError(f"{path}: expected a mapping of channel names")
        for name, spec in data.items():
            if not isinstance(spec, dict) or "url" not in spec:
                raise ChannelError(f"{path}: channel {name!r} needs a url")
            kind = str(spec.get("type", "webhook"))
            if kind not in ("webhook", "slack"):
                raise ChannelError(f"{path}: channel {name!r}: type must be webhook or slack")
            headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
            found[str(name)] = Channel(str(name), kind, str(spec["url"]), headers)
    for key, value in env.items():
        if key.startswith("PLAIT_CHANNEL_") and value:
            name = key.removeprefix("PLAIT_CHANNEL_").lower()
            found.setdefault(name, Channel(name, "webhook", value))
    return found


def payload(channel: Channel, text: str, context: Mapping[str, Any]) -> dict[str, Any]:
    if channel.type == "slack":
        return {"text": text}
    return {"text": text, **{k: v for k, v in context.items() if v is not None}}


SEND_TIMEOUT = 10.0


async def send(channel: Channel, text: str, context: Mapping[str, Any]) -> int:
    """POST the message; returns the HTTP status, raises ChannelError when refused."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT) as client:
            response = await client.post(
                channel.url, json=payload(channel, text, context), headers=dict(channel.headers)
            )
    except httpx.HTTPError as exc:
        raise ChannelError(f"channel {channel.name!r}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 300:
        raise ChannelError(
            f"channel {channel.name!r} answered {response.status_code}: {response.text[:200]}"
        )
    return response.status_code
