"""Broker triggers: a run per message from RabbitMQ, Redis streams, NATS JetStream or MQTT.

A message is acknowledged only after its run is recorded, so a crash anywhere before the
acknowledgement leaves it with the broker, which delivers it again: no message is lost
(at-least-once). A redelivered message must not start a second run, so a message is
named by a *dedup key* — the trigger's ``dedup_key`` expression, else the broker's own
id where it has one — and its run id is derived from the workflow and that key
(``uuid5``), exactly as schedule fires derive theirs (decision 0002 §2): the runs
table's primary key then refuses the copy, whichever process or restart tries it, and
the copy is acknowledged as a duplicate. Several schedulers may therefore consume the
same queue at once.

A message that can never start a run (inputs that do not validate, an expression that
fails, a message too large) is acknowledged too — retrying it would fail forever and
block the messages behind it — and recorded in the audit trail as
``trigger.message_rejected``. A failure of Plait's own store is the opposite: the message
is kept (not acknowledged) and tried again with backoff, since it will succeed later.

One :class:`Consumer` runs per deployed broker trigger, as a task of the scheduler
(``plait serve`` or ``plait scheduler``); :class:`BrokerConsumers` starts and stops them
as deploys change the set of triggers. A consumer reconnects with backoff after any
broker error. The broker clients are in :mod:`plait.triggers.broker_clients` and their
libraries are imported only when a consumer connects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import random
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from plait.errors import ConflictError, ExpressionError, InputError, NotFound, PlaitError

if TYPE_CHECKING:
    from plait.model.plan import Plan
    from plait.server.services import Services
    from plait.store.base import VersionRecord

log = logging.getLogger(__name__)

KINDS = ("rabbitmq", "redis_stream", "nats", "mqtt")
#: The connection type whose ``url`` a trigger kind connects to.
CONNECTION_TYPES = {"rabbitmq": "rabbitmq", "redis_stream": "redis", "nats": "nats", "mqtt": "mqtt"}
#: The field naming where a trigger's messages come from.
SOURCE_FIELDS = {"rabbitmq": "queue", "redis_stream": "stream", "nats": "subject", "mqtt": "topic"}
#: Largest message body that starts a run (it is stored with the run), in bytes.
MAX_MESSAGE_BYTES = 1024 * 1024
#: Longest wait between reconnection attempts (and retries of a store failure), seconds.
MAX_BACKOFF = 30.0
#: How long a stopping consumer may finish the message in hand, seconds.
STOP_GRACE = 5.0
STARTED, DUPLICATE, REJECTED = "started", "duplicate", "rejected"
AUDIT_ACTION = "trigger.message_rejected"
_SECRET_REF = re.compile(r"\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class Rejected(PlaitError):
    """A message that can never start a run: acknowledged and recorded, not retried."""


class Superseded(PlaitError):
    """The trigger is no longer deployed: leave the message to the broker."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message as a broker client received it, before it becomes ``trigger``.

    ``id`` is the broker's id as shown to expressions; ``dedup_id`` the id that names
    the message for ever within its source (None: the broker has none, so without a
    ``dedup_key`` a redelivery starts a second run). ``meta`` holds the broker-specific
    keys of the payload (``queue``, ``routing_key``, ``stream``, ``topic`` …).
    """

    data: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    dedup_id: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    redelivered: bool | None = None


# -- the payload ----------------------------------------------------------------------


def trigger_payload(
    kind: str, message: Message, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    """``trigger`` in the run's scope: the same keys for every broker.

    ``body`` is the parsed JSON when the message is JSON, else its text (``None`` for an
    empty or binary message); ``text`` the UTF-8 text (``None`` when binary, and then
    ``base64`` holds the bytes); ``headers`` plain JSON values; ``id`` the broker's id;
    ``redelivered`` whether the broker says it delivered it before (``None``: unknown);
    then the broker's own keys from :attr:`Message.meta`.
    """
    from plait.model.inputs import has_lone_surrogate

    if len(message.data) > max_bytes:
        raise Rejected(f"the message is {len(message.data)} bytes; the limit is {max_bytes}")
    text = _text(message.data)
    payload: dict[str, Any] = {
        "broker": kind,
        "id": message.id,
        "body": _body(text),
        "text": text,
        "headers": {str(k): plain(v) for k, v in message.headers.items()},
        "redelivered": message.redelivered,
        **{k: plain(v) for k, v in message.meta.items()},
    }
    if text is None:
        payload["base64"] = base64.b64encode(message.data).decode("ascii")
    if has_lone_surrogate(payload):
        raise Rejected("the message contains a lone UTF-16 surrogate, which is not text")
    return payload


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _body(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return text


def plain(value: Any) -> Any:
    """A header value as JSON (AMQP tables carry bytes, timestamps and decimals)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        text = _text(raw)
        return text if text is not None else base64.b64encode(raw).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


# -- triggers -------------------------------------------------------------------------


def _digest(*parts: str, size: int = 16) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:size]


@dataclass(frozen=True)
class BrokerTrigger:
    """One broker trigger of a deployed workflow: its plan mapping and derived names."""

    workflow: str
    namespace: str
    spec: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.spec["kind"])

    @property
    def source(self) -> str:
        """The queue, stream, subject or topic filter the messages come from."""
        return str(self.spec[SOURCE_FIELDS[self.kind]])

    @property
    def key(self) -> str:
        """Identity across reconciliations: a changed trigger is a new consumer."""
        canonical = json.dumps(self.spec, sort_keys=True, default=str)
        return f"{self.namespace}/{self.workflow}/{canonical}"

    def describe(self) -> str:
        return f"{self.kind} trigger of {self.workflow!r} on {self.source!r}"

    # Defaults are stable across restarts (so a restarted consumer finds its pending
    # messages) and distinct per workflow (so two workflows each get every message).
    def group(self) -> str:
        return str(self.spec.get("group") or f"plait:{self.workflow}")

    def consumer_name(self) -> str:
        return str(self.spec.get("consumer") or socket.gethostname())

    def durable(self) -> str:
        return str(self.spec.get("durable") or f"plait-{self.workflow}-{_digest(self.source)[:8]}")

    def client_id(self) -> str:
        given = self.spec.get("client_id")
        if given:
            return str(given)
        return "plait-" + _digest(socket.gethostname(), self.workflow, self.source)


def broker_triggers(workflow: str, plan: Plan) -> list[BrokerTrigger]:
    """The broker triggers of a compiled workflow."""
    return [
        BrokerTrigger(workflow, plan.namespace, dict(t))
        for t in plan.triggers
        if t.get("kind") in CONNECTION_TYPES
    ]


def dedup_key(trigger: BrokerTrigger, scope: Mapping[str, Any], message: Message) -> str | None:
    """What names the message for deduplication, or None (no deduplication).

    A ``dedup_key`` value names the message within the workflow, whichever trigger
    brought it; a broker id only within its queue, stream, subject or topic. A
    ``dedup_key`` that fails or is empty falls back to the broker id (deterministically,
    so a redelivery gets the same key) rather than losing the message.
    """
    from plait.expr import render_string

    expression = trigger.spec.get("dedup_key")
    if expression:
        try:
            value = render_string(str(expression), scope)
        except ExpressionError as exc:
            log.warning("%s: dedup_key: %s", trigger.describe(), exc)
            value = None
        if value is not None and value != "":
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            return f"broker:{trigger.workflow}:key:{text}"
        log.warning("%s: dedup_key is empty; using the broker's id", trigger.describe())
    if message.dedup_id:
        return f"broker:{trigger.workflow}:{trigger.kind}:{trigger.source}:{message.dedup_id}"
    return None


# -- recording a message (sync: runs in a thread) ---------------------------------------


class Handler:
    """Turns a message into a recorded run (or a recorded rejection); see the module
    docstring. Raises only for failures worth retrying: the message is then kept."""

    def __init__(self, services: Services, trigger: BrokerTrigger) -> None:
        self.services = services
        self.trigger = trigger

    def handle(self, message: Message) -> str:
        """:data:`STARTED`, :data:`DUPLICATE` or :data:`REJECTED`."""
        try:
            return self._start(message)
        except Rejected as exc:
            self._reject(message, str(exc))
            return REJECTED

    def _start(self, message: Message) -> str:
        from plait.expr import render
        from plait.runtime.ids import new_run_id
        from plait.triggers.service import derived_run_id

        t, runs = self.trigger, self.services.runs
        payload = trigger_payload(t.kind, message)
        version, plan = self._current()
        scope = {"trigger": payload, "env": dict(plan.env)}
        key = dedup_key(t, scope, message)
        try:
            inputs = render(dict(t.spec.get("inputs") or {}), scope)
        except ExpressionError as exc:
            raise Rejected(f"inputs: {exc}") from None
        run_id = derived_run_id(key) if key else new_run_id(self.services.clock())
        record = {"type": t.kind, "payload": payload, "source": t.source, "dedup_key": key}
        try:
            runs.start(version, inputs, trigger=record, run_id=run_id)
        except ConflictError:
            self._finish_start(run_id)
            return DUPLICATE
        except InputError as exc:
            raise Rejected(f"the run's inputs are not valid: {exc}") from None
        return STARTED

    def _current(self) -> tuple[VersionRecord, Plan]:
        """The workflow's current version, if it still has this trigger."""
        services = self.services
        try:
            record = services.server_store.get_workflow(self.trigger.workflow)
        except NotFound:
            raise Superseded(f"workflow {self.trigger.workflow!r} is not deployed") from None
        plan = services.runs.plan(record.version_id)
        if not any(dict(t) == dict(self.trigger.spec) for t in plan.triggers):
            raise Superseded(f"{self.trigger.describe()} is no longer deployed")
        return services.store.get_version(record.version_id), plan

    def _finish_start(self, run_id: str) -> None:
        """A duplicate's run exists; if the process that created it died before starting
        it, start it now — the redelivery is the only thing that would ever notice."""
        if self.services.runs.start_stranded(run_id) is not None:
            log.info("%s: started run %s left queued by a crash", self.trigger.describe(), run_id)

    def _reject(self, message: Message, reason: str) -> None:
        """Record why the message starts no run (raises if that cannot be recorded, so
        the message is kept and tried again)."""
        from plait.security.audit import AuditEvent

        t = self.trigger
        shown = (message.id or "")[:200]
        log.warning("%s: message %s rejected: %s", t.describe(), shown, reason[:1000])
        details = {
            "kind": t.kind,
            "source": t.source,
            "message_id": message.id[:200] if message.id else None,
            "reason": reason[:1000],
        }
        self.services.accounts.append_audit(
            AuditEvent(
                at=self.services.clock(),
                actor=f"trigger:{t.kind}",
                action=AUDIT_ACTION,
                resource=f"/api/v1/workflows/{t.workflow}",
                outcome="failed",
                details=details,
            )
        )

    # -- where the broker is ----------------------------------------------------------
    def endpoint(self) -> tuple[str, dict[str, Any]]:
        """The broker URL — the connection's ``url``, or the trigger's with
        ``${{ secrets.NAME }}`` references resolved — and the connection's other
        settings (``connect_timeout``, MQTT's ``tls`` and ``ca_file`` …)."""
        t = self.trigger
        name = t.spec.get("connection")
        if name:
            connection = self._connections().get(t.namespace, str(name))
            wanted = CONNECTION_TYPES[t.kind]
            if connection.type != wanted:
                raise PlaitError(
                    f"connection {name!r} is of type {connection.type!r}; "
                    f"a {t.kind} trigger needs a {wanted!r} connection"
                )
            options = dict(connection.config)
            url = options.pop("url", None)
            if not url:
                raise PlaitError(f"connection {name!r} has no url")
            return str(url), options
        return self._resolve(str(t.spec.get("url") or "")), {}

    def _resolve(self, url: str) -> str:
        names = _SECRET_REF.findall(url)
        if not names:
            return url
        values = self.services.runs.secrets(self.trigger.namespace, names)
        missing = [n for n in names if n not in values]
        if missing:
            raise PlaitError(f"url: secret {missing[0]!r} is not set")
        return _SECRET_REF.sub(lambda m: values[m.group(1)], url)

    def _connections(self) -> Any:
        source = self.services.extras.get("connections")
        if source is None:
            from plait.actions.connections import EnvConnections

            source = EnvConnections()
        return source


# -- consuming (async) ------------------------------------------------------------------


@dataclass
class Status:
    """What a consumer has done (in this process: ``TriggerService.brokers.status()``)."""

    workflow: str
    kind: str
    source: str
    connected: bool = False
    started: int = 0
    duplicates: int = 0
    rejected: int = 0
    failures: int = 0
    last_error: str | None = None
    last_message_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Ack = Callable[[], Awaitable[Any]]
Client = Callable[["Consumer", str], Awaitable[None]]


class Consumer:
    """Consumes one trigger's messages until stopped, reconnecting after errors.

    A broker client (:mod:`plait.triggers.broker_clients`) connects, calls
    :meth:`connected`, then :meth:`deliver` for each message with the function that
    acknowledges it; it returns or raises when its connection ends.
    """

    def __init__(
        self, services: Services, trigger: BrokerTrigger, client: Client | None = None
    ) -> None:
        self.trigger = trigger
        self.handler = Handler(services, trigger)
        self.status = Status(trigger.workflow, trigger.kind, trigger.source)
        self._client = client
        #: the connection's settings besides its url, for the client
        self.options: dict[str, Any] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._handled = 0

    def start(self) -> None:
        # named without the key: an inline url (and its password) is part of it
        self._task = asyncio.create_task(self._supervise(), name=self.trigger.describe())

    async def stop(self) -> None:
        """Finish the message in hand (bounded), then disconnect; messages not yet
        acknowledged go back to the broker."""
        self._stopping = True
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, STOP_GRACE + 2)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def connected(self) -> None:
        self.status.connected = True
        self.status.last_error = None
        log.info("%s: consuming", self.trigger.describe())

    async def deliver(self, message: Message, ack: Ack) -> None:
        """Record the message's run, then acknowledge it. Cancelled meanwhile (a stop),
        it still finishes the message in hand so its acknowledgement is not lost with
        the connection (bounded by :data:`STOP_GRACE`)."""
        inner = asyncio.ensure_future(self._record_then_ack(message, ack))
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(inner, STOP_GRACE)
            raise

    async def _record_then_ack(self, message: Message, ack: Ack) -> None:
        delay = 0.5
        while True:
            try:
                outcome = await asyncio.to_thread(self.handler.handle, message)
                break
            except Superseded:
                raise
            except Exception as exc:  # the store, most likely: keep the message, retry
                if self._stopping:
                    raise
                self.status.failures += 1
                self.status.last_error = f"recording a run: {_describe(exc)}"
                log.warning(
                    "%s: cannot record message %s (%s); retrying in %.1fs",
                    self.trigger.describe(),
                    message.id or "",
                    _describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
        await ack()
        self._handled += 1
        self.status.last_message_at = time.time()
        if outcome == STARTED:
            self.status.started += 1
        elif outcome == DUPLICATE:
            self.status.duplicates += 1
        else:
            self.status.rejected += 1

    async def _supervise(self) -> None:
        client = self._client or _client_for(self.trigger.kind)
        delay = 0.5
        while not self._stopping:
            began, handled = time.monotonic(), self._handled
            secret: list[str] = []
            try:
                url, self.options = await asyncio.to_thread(self.handler.endpoint)
                secret.append(url)
                await client(self, url)
                problem = "the connection ended"
            except asyncio.CancelledError:
                raise
            except Superseded as exc:
                problem, delay = str(exc), MAX_BACKOFF  # the reconciliation stops us soon
            except Exception as exc:
                problem = _describe(exc, secret)
            self.status.connected = False
            if self.stopping:
                break
            if self._handled > handled or time.monotonic() - began > MAX_BACKOFF:
                delay = 0.5  # it worked for a while: this is a new outage
            self.status.last_error = problem
            wait = delay * random.uniform(0.8, 1.2)
            log.warning("%s: %s; reconnecting in %.1fs", self.trigger.describe(), problem, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, MAX_BACKOFF)


def _client_for(kind: str) -> Client:
    from plait.triggers.broker_clients import CLIENTS

    return CLIENTS[kind]


def _describe(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """A one-line error without credentials (driver messages may quote the URL)."""
    from urllib.parse import urlsplit

    from plait.security.masking import Masker

    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    masker = Masker()
    for url in secrets:
        with contextlib.suppress(ValueError):
            parts = urlsplit(url)
            for credential in (parts.password, parts.username):  # NATS tokens: user part
                if credential:
                    masker.add(credential)
    return masker.mask(" ".join(text.split()))[:500]


class BrokerConsumers:
    """The consumers of this process, one per deployed broker trigger."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._consumers: dict[str, Consumer] = {}

    async def reconcile(self, triggers: Iterable[BrokerTrigger]) -> None:
        """Start consumers for new triggers and stop those of triggers now gone."""
        wanted = {t.key: t for t in triggers}
        gone = [self._consumers.pop(k) for k in list(self._consumers) if k not in wanted]
        if gone:
            await asyncio.gather(*(c.stop() for c in gone))
        for key, trigger in wanted.items():
            if key not in self._consumers:
                consumer = Consumer(self.services, trigger)
                consumer.start()
                self._consumers[key] = consumer

    def status(self) -> list[dict[str, Any]]:
        return [c.status.as_dict() for c in self._consumers.values()]

    async def close(self) -> None:
        consumers, self._consumers = list(self._consumers.values()), {}
        await asyncio.gather(*(c.stop() for c in consumers))
