"""Sending notifications to channels: the ``notify`` action and a workflow's ``notify:``.

A channel is named in ``$PLAIT_HOME/channels.yaml`` or by an environment variable::

    # channels.yaml
    ops: {type: slack, url: "https://hooks.slack.com/services/…"}
    audit: {type: webhook, url: "https://example.com/hook", headers: {X-Token: "…"}}
    oncall: {type: email, connection: mail, to: [oncall@example.com], cc: [lead@example.com]}

    PLAIT_CHANNEL_OPS=https://example.com/hook          # a webhook channel
    PLAIT_CHANNEL_MAIL='{"type": "email", "connection": "mail", "to": ["a@example.com"]}'

Both senders build one :class:`Notice` and hand it to :func:`send`, so a step's
``uses: notify`` and a workflow's ``notify:`` look the same on every channel:

* ``webhook``: JSON ``{"text", "title", "workflow", "run_id", "status", "step", "error",
  "failed_steps", "url"}`` (fields without a value left out);
* ``slack`` (any Slack-compatible incoming webhook: Slack, Mattermost, Rocket.Chat,
  Discord's /slack endpoint): ``text`` for clients that show only that, and ``blocks``
  — a header, the text, the workflow, run and status as fields, and a button to the run;
* ``email``: a plain-text message over SMTP (an ``smtp`` connection, or ``smtp:`` settings
  inline), the title as its subject.

The run's page is linked when ``PLAIT_PUBLIC_URL`` says where the server is reached.
Texts are templates: a step's are rendered with its own scope before the action runs; a
workflow's ``notify:`` message here, by :func:`notify_run`, with the run's scope and
``run.status``, ``run.error``, ``run.failed_steps``, ``run.outputs`` and ``run.url``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.errors import PlaitError

if TYPE_CHECKING:
    from plait.actions.connections import Connection
    from plait.engine.state import RunState, StepState

CHANNEL_TYPES = ("webhook", "slack", "email")
SEND_TIMEOUT = 10.0
#: Slack's limits: a header's text, a section's text, a field's text
_HEADER_CHARS, _SECTION_CHARS, _FIELD_CHARS = 150, 3000, 2000

#: looks a connection up by name (the runtime's, so its credentials are masked)
ConnectionLookup = Callable[[str], "Connection"]


class ChannelError(PlaitError):
    """A channel is unknown, misconfigured or did not accept the message.
    ``retryable`` is False when sending again cannot help (a bad setting, refused
    credentials, a 4xx answer)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class EmailTarget:
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    #: an ``smtp`` connection's name, or ``smtp`` settings given inline
    connection: str | None = None
    smtp: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    type: str
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    email: EmailTarget | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """What a notification says, whatever the channel."""

    text: str
    title: str | None = None
    workflow: str | None = None
    run_id: str | None = None
    status: str | None = None
    step: str | None = None
    error: str | None = None
    failed_steps: tuple[str, ...] = ()
    #: the run's page (a link button in Slack, a line in an email)
    link: str | None = None
    #: more fields for machines, added to a webhook's JSON (alerts: severity, value, …)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def details(self) -> list[tuple[str, str]]:
        """The facts beside the text, as (label, value) in the order people read them."""
        rows = [
            ("Workflow", self.workflow),
            ("Run", self.run_id),
            ("Status", self.status),
            ("Step", self.step),
            ("Failed steps", ", ".join(self.failed_steps) or None),
            ("Error", self.error),
        ]
        return [(label, value) for label, value in rows if value]

    def masked(self, mask: Callable[[str], str]) -> Notice:
        """The same notice with every secret the run knows replaced by ``***``."""
        return Notice(
            mask(self.text),
            mask(self.title) if self.title else self.title,
            self.workflow,
            self.run_id,
            self.status,
            self.step,
            mask(self.error) if self.error else self.error,
            self.failed_steps,
            self.link,
            self.extra,
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: str
    type: str
    #: the HTTP status for webhook and Slack channels
    status: int | None = None
    #: the recipients the SMTP server accepted, for email
    recipients: tuple[str, ...] = ()


# --- channels ------------------------------------------------------------------------


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
            found[str(name)] = parse_channel(str(name), spec, str(path))
    for key, value in env.items():
        if key.startswith("PLAIT_CHANNEL_") and value:
            name = key.removeprefix("PLAIT_CHANNEL_").lower()
            if name not in found:
                found[name] = _env_channel(name, key, value)
    return found


def _env_channel(name: str, key: str, value: str) -> Channel:
    if not value.lstrip().startswith("{"):
        return Channel(name, "webhook", value)
    try:
        spec = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ChannelError(f"{key} is not JSON: {exc.msg}") from None
    return parse_channel(name, spec, key)


def parse_channel(name: str, spec: Any, where: str) -> Channel:
    """One channel's settings, checked; ChannelError names the file (or variable) and
    the channel."""
    at = f"{where}: channel {name!r}"
    if not isinstance(spec, dict):
        raise ChannelError(f"{at}: expected a mapping")
    kind = str(spec.get("type", "webhook"))
    if kind not in CHANNEL_TYPES:
        raise ChannelError(f"{at}: type must be one of {', '.join(CHANNEL_TYPES)}")
    if kind != "email":
        if not spec.get("url"):
            raise ChannelError(f"{at} needs a url")
        headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
        return Channel(name, kind, str(spec["url"]), headers)
    to, cc = _addresses(spec.get("to"), f"{at}: to"), _addresses(spec.get("cc"), f"{at}: cc")
    if not to:
        raise ChannelError(f"{at} needs at least one address in to")
    connection, smtp = spec.get("connection"), spec.get("smtp")
    if (connection is None) == (smtp is None):
        raise ChannelError(f"{at} needs a connection (an smtp connection's name) or smtp")
    if smtp is not None:
        _smtp_config(smtp, at)  # refuse a bad one now, not when a run fails
    target = EmailTarget(to, cc, str(connection) if connection else None, smtp)
    return Channel(name, "email", email=target)


def _addresses(value: Any, at: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(a, str) and "@" in a for a in items):
        raise ChannelError(f"{at}: expected an email address or a list of them")
    return tuple(items)


def _smtp_config(settings: Any, at: str) -> Any:
    from plait.actions.connections import default_types

    if not isinstance(settings, Mapping):
        raise ChannelError(f"{at}: smtp must be a mapping of SMTP settings")
    try:
        return default_types().parse("smtp", settings)
    except PlaitError as exc:
        raise ChannelError(f"{at}: {exc}", retryable=False) from None


def run_link(run_id: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The run's page in the web UI, when ``PLAIT_PUBLIC_URL`` says where that is."""
    base = (os.environ if environ is None else environ).get("PLAIT_PUBLIC_URL", "").strip()
    if not base or not run_id:
        return None
    return f"{base.rstrip('/')}/runs/{run_id}"


# --- payloads ------------------------------------------------------------------------


def payload(channel: Channel, notice: Notice) -> dict[str, Any]:
    """The JSON body posted to a webhook or Slack-compatible channel."""
    if channel.type == "slack":
        return {"text": notice.text, "blocks": slack_blocks(notice)}
    body: dict[str, Any] = {
        "text": notice.text,
        "title": notice.title,
        "workflow": notice.workflow,
        "run_id": notice.run_id,
        "status": notice.status,
        "step": notice.step,
        "error": notice.error,
        "failed_steps": list(notice.failed_steps) or None,
        "url": notice.link,
    }
    return {**notice.extra, **{k: v for k, v in body.items() if v is not None}}


def slack_blocks(notice: Notice) -> list[dict[str, Any]]:
    """Block Kit: header, text, the run's facts as fields, a button to the run."""
    blocks: list[dict[str, Any]] = []
    if notice.title:
        header = {"type": "plain_text", "text": _cut(notice.title, _HEADER_CHARS)}
        blocks.append({"type": "header", "text": header})
    if notice.text.strip():
        text = {"type": "mrkdwn", "text": _cut(notice.text, _SECTION_CHARS)}
        blocks.append({"type": "section", "text": text})
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*{label}*\n{value}", _FIELD_CHARS)}
        for label, value in notice.details()
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields[:10]})
    if notice.link:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": "Open run"},
            "url": notice.link,
        }
        blocks.append({"type": "actions", "elements": [button]})
    return blocks


def email_subject(notice: Notice) -> str:
    if notice.title:
        return notice.title
    if notice.workflow and notice.status:
        return f"{notice.workflow}: run {notice.status}"
    first = notice.text.strip().splitlines()[0] if notice.text.strip() else ""
    return _cut(first, 120) or f"Plait: {notice.workflow or 'notification'}"


def email_body(notice: Notice) -> str:
    lines = [notice.text.rstrip(), ""]
    lines += [f"{label}: {value}" for label, value in notice.details()]
    if notice.link:
        lines.append(f"Open the run: {notice.link}")
    return "\n".join(lines).strip() + "\n"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- sending -------------------------------------------------------------------------


async def send(
    channel: Channel, notice: Notice, *, connection: ConnectionLookup | None = None
) -> Delivery:
    """Deliver ``notice``; ChannelError when the channel refuses it or cannot be
    reached. ``connection`` resolves an email channel's ``smtp`` connection."""
    if channel.type == "email":
        return await _send_email(channel, notice, connection)
    import httpx

    try:
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT) as client:
            response = await client.post(
                channel.url, json=payload(channel, notice), headers=dict(channel.headers)
            )
    except httpx.HTTPError as exc:
        raise ChannelError(f"channel {channel.name!r}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 300:
        status = response.status_code
        raise ChannelError(
            f"channel {channel.name!r} answered {status}: {response.text[:200]}",
            retryable=status >= 500 or status in (408, 429),
        )
    return Delivery(channel.name, channel.type, status=response.status_code)


async def _send_email(
    channel: Channel, notice: Notice, lookup: ConnectionLookup | None
) -> Delivery:
    from plait.actions.email import SmtpError, build_message, send_message

    target = channel.email
    assert target is not None
    at = f"channel {channel.name!r}"
    config = _smtp_config(_smtp_settings(target, lookup, at), at)
    try:
        message = build_message(
            sender=config.sender,
            to=target.to,
            cc=target.cc,
            subject=email_subject(notice),
            body=email_body(notice),
        )
        accepted = await send_message(config, message)
    except SmtpError as exc:
        raise ChannelError(f"{at}: {exc}", retryable=exc.retryable) from exc
    return Delivery(channel.name, "email", recipients=tuple(accepted))


def _smtp_settings(target: EmailTarget, lookup: ConnectionLookup | None, at: str) -> Any:
    if target.smtp is not None:
        return target.smtp
    if lookup is None:
        raise ChannelError(f"{at}: connections are not available here", retryable=False)
    try:
        found = lookup(str(target.connection))
    except PlaitError as exc:
        raise ChannelError(f"{at}: {exc}", retryable=False) from None
    if found.type != "smtp":
        raise ChannelError(
            f"{at}: connection {found.name!r} is {found.type}, not smtp", retryable=False
        )
    return found.config


# --- a workflow's notify: ----------------------------------------------------------------


def run_notice(
    template: str | None,
    run: RunState,
    steps: Iterable[StepState],
    scope: Mapping[str, Any],
) -> Notice:
    """The notice for a finished run: ``template`` rendered with the run's scope (and
    the run's status, error, failed steps, outputs and link under ``run``)."""
    from plait.engine.state import StepStatus

    failed = tuple(s.key for s in steps if s.status in (StepStatus.FAILED, StepStatus.TIMED_OUT))
    status = str(run.status)
    link = run_link(run.id)
    default = f"{run.workflow}: run {run.id} {status}"
    text = default
    if template:
        local = dict(scope)
        local["run"] = {
            **dict(scope.get("run") or {}),
            "status": status,
            "error": run.error,
            "failed_steps": list(failed),
            "outputs": run.outputs or {},
            "url": link,
        }
        text = _render(template, local)
    return Notice(
        text,
        title=f"{run.workflow} {status}",
        workflow=run.workflow,
        run_id=run.id,
        status=status,
        error=run.error,
        failed_steps=failed,
        link=link,
    )


def _render(template: str, scope: Mapping[str, Any]) -> str:
    from plait import expr
    from plait.errors import ExpressionError

    try:
        rendered = expr.render(template, scope)
    except ExpressionError as exc:
        return f"{template}\n(the message could not be rendered: {exc})"
    if isinstance(rendered, dict | list):
        return json.dumps(rendered)
    return "" if rendered is None else str(rendered)


async def notify_run(
    entries: Sequence[Mapping[str, Any]],
    run: RunState,
    steps: Iterable[StepState],
    scope: Mapping[str, Any],
    channels: Mapping[str, Channel],
    *,
    mask: Callable[[str], str] = lambda text: text,
    connection: ConnectionLookup | None = None,
) -> list[str]:
    """Send a finished run's ``notify:`` entries that match its status; returns what
    went wrong, one line each (a failed notification never fails the run)."""
    problems: list[str] = []
    steps = list(steps)
    for i, entry in enumerate(entries):
        if str(run.status) not in entry.get("on", ()):
            continue
        name = str(entry.get("channel"))
        channel = channels.get(name) or channels.get(name.lower())
        if channel is None:
            problems.append(f"notify[{i}]: channel {name!r} is not configured")
            continue
        notice = run_notice(entry.get("message"), run, steps, scope).masked(mask)
        try:
            await send(channel, notice, connection=connection)
        except ChannelError as exc:
            problems.append(f"notify[{i}]: {mask(str(exc))}")
    return problems
