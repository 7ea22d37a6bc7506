"""The alert evaluator: every ``interval`` seconds, in each process that runs the
scheduler, evaluate every enabled rule and send the notifications that follow.

One pass (:meth:`AlertService.tick`):

1. **Rules.** ``$PLAIT_HOME/alerts.yaml`` is applied to the store when the process
   starts and whenever the file changes (its rules are stored with ``source: file``);
   then every stored rule is read. A rule the store holds but that no longer parses
   (written by another version) is skipped with a warning.
2. **Observe and evaluate.** Each rule's source gives observations
   (:mod:`plait.ops.alert_sources`, :mod:`plait.ops.alert_http`), the pure rules
   (:mod:`plait.ops.alerts`) give the transitions, and each transition is written
   with its notifications by a conditional write
   (:meth:`~plait.store.server_alerts.AlertStore.apply_alert`). A source that cannot be
   read skips its rule for this pass: missing data neither fires nor resolves.
3. **Deliver.** Queued notifications are claimed one by one (a lease in the store) and
   sent through the notification channels (:mod:`plait.notify`); a failed send is
   retried with backoff, up to :data:`MAX_ATTEMPTS`. Once an hour, resolved alerts
   older than 90 days and notifications older than 30 days are forgotten.

Any number of processes may run this at once: a transition is applied by one of them
(the others' writes find the state changed and write nothing) and a notification is
sent by the one that claimed it. So a firing alert notifies once, again only after the
rule's ``repeat``, and once more when it resolves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.errors import PlaitError
from plait.ops import alert_http
from plait.ops.alert_rules import FILE_NAME, RuleError, load_file, parse_rule
from plait.ops.alert_sources import STORE_SOURCES
from plait.ops.alerts import HTTP_KINDS, Observation, Rule, evaluate, notices

if TYPE_CHECKING:
    from plait.notify import Notice
    from plait.server.services import Services
    from plait.store.server_alerts import NotificationRecord

log = logging.getLogger(__name__)

INTERVAL_ENV = "PLAIT_ALERT_INTERVAL"
DEFAULT_INTERVAL = 30.0
#: seconds a sender holds a notification it is sending
CLAIM_LEASE = 60.0
MAX_ATTEMPTS = 5
#: the first retry's delay; each further retry waits twice as long
RETRY_DELAY = 30.0
#: how long resolved alerts and sent notifications are kept, and how often that is done
KEEP_ALERTS = 90 * 86400.0
KEEP_NOTIFICATIONS = 30 * 86400.0
PRUNE_EVERY = 3600.0


@dataclass
class PassReport:
    """What one pass did: rules evaluated, transitions written (and lost to another
    evaluator), notifications sent and failed."""

    rules: int = 0
    applied: int = 0
    lost: int = 0
    sent: int = 0
    failed: int = 0


def interval_from_env(environ: Mapping[str, str] | None = None) -> float:
    """``PLAIT_ALERT_INTERVAL`` seconds (default 30); 0 turns the evaluator off."""
    text = (os.environ if environ is None else environ).get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        raise PlaitError(f"{INTERVAL_ENV}={text!r} is not a number of seconds") from None
    if value < 0:
        raise PlaitError(f"{INTERVAL_ENV} cannot be negative")
    return value


class AlertService:
    """See the module docstring. ``metrics_url`` is this process's own ``/metrics``
    (the default source of the HTTP rules) and ``instance`` its name in their alerts."""

    def __init__(
        self,
        services: Services,
        *,
        interval: float = DEFAULT_INTERVAL,
        metrics_url: str | None = None,
        instance: str | None = None,
    ) -> None:
        self.services = services
        self.store = services.server_store
        self.interval = interval
        self.http = alert_http.HttpWatch(metrics_url, instance)
        self._file_mark: tuple[int, int] | None = None
        self._file_synced = False
        self._pruned_at = 0.0

    @property
    def rules_file(self) -> Path:
        return self.services.settings.home / FILE_NAME

    async def serve(self, stop: asyncio.Event) -> None:
        """Evaluate every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # never let alerting take the scheduler (or the API) down
                log.exception("alert evaluation")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def tick(self, now: float | None = None) -> PassReport:
        """One pass at ``now`` (the services' clock by default)."""
        now = self.services.clock() if now is None else now
        report = PassReport()
        rules = await asyncio.to_thread(self._rules)
        self.http.start_pass()
        for rule in rules:
            report.rules += 1
            try:
                seen = await self._observe(rule, now)
            except PlaitError as exc:
                log.warning("alert rule %s: no data this pass: %s", rule.name, exc)
                continue
            if seen is None:
                continue
            applied, lost = await asyncio.to_thread(self._apply, rule, seen, now)
            report.applied += applied
            report.lost += lost
        await self.deliver(now, report)
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            await asyncio.to_thread(
                self.store.prune_alerts, now - KEEP_ALERTS, now - KEEP_NOTIFICATIONS
            )
        return report

    # -- rules ---------------------------------------------------------------------------
    def _rules(self) -> list[Rule]:
        """The enabled rules, the rules file applied first if it changed; states of
        rules that are gone are closed."""
        self._sync_file()
        # states first, rules second: a rule made in between cannot look deleted
        with_states = set(self.store.alert_rules_with_states())
        rules: list[Rule] = []
        idle: set[str] = set()
        for record in self.store.list_alert_rules():
            try:
                rule = parse_rule(record.name, record.spec)
            except RuleError as exc:
                log.warning("skipping stored alert rule: %s", exc)
                continue
            if rule.enabled:
                rules.append(rule)
            else:
                idle.add(rule.name)
        stored = {r.name for r in rules} | idle
        for gone in (with_states - stored) | (with_states & idle):
            self.store.close_alerts(gone)  # deleted or disabled while a pass wrote
        return rules

    def _sync_file(self) -> None:
        path = self.rules_file
        try:
            stat = path.stat()
            mark: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            mark = None
        if self._file_synced and mark == self._file_mark:
            return
        specs: dict[str, Any] = {}
        if mark is not None:
            try:
                specs = load_file(path)
            except RuleError as exc:
                log.error("%s is not applied: %s", path, exc)
                self._file_mark, self._file_synced = mark, True  # until it changes again
                return
        changed = self.store.sync_file_rules(
            {name: (str(spec["kind"]), spec) for name, spec in specs.items()}
        )
        if changed:
            log.info("alert rules from %s: %s", path, ", ".join(changed))
        self._file_mark, self._file_synced = mark, True

    # -- observing and applying ----------------------------------------------------------
    async def _observe(self, rule: Rule, now: float) -> list[Observation] | None:
        """The rule's observations, or None when this process has no source for it."""
        if rule.kind == "service_down":
            return [await alert_http.check(rule)]
        if rule.kind in HTTP_KINDS:
            target = self.http.target(rule)
            if target is None:
                return None  # no API in this process and no url: another one watches
            url, key = target
            window = await self.http.window(url, rule.window, now)
            measure = alert_http.error_rate if rule.kind == "error_rate" else alert_http.latency
            return [measure(rule, window, key)]
        source = STORE_SOURCES[rule.kind]
        return await asyncio.to_thread(source, self.store, rule, now)

    def _apply(self, rule: Rule, seen: list[Observation], now: float) -> tuple[int, int]:
        before = self.store.alert_states(rule.name)
        if rule.kind in HTTP_KINDS:
            # another process's API is another key: its alerts are not ours to resolve
            keys = {o.key for o in seen}
            before = [s for s in before if s.key in keys]
        applied = lost = 0
        for change in evaluate(rule, seen, before, now):
            if self.store.apply_alert(change, notices(rule, change, now), now):
                applied += 1
                if change.event:
                    log.info(
                        "alert %s [%s] %s: %s",
                        rule.name,
                        change.key,
                        change.event,
                        change.state.summary,
                    )
            else:
                lost += 1
        return applied, lost

    # -- delivering ----------------------------------------------------------------------
    async def deliver(self, now: float, report: PassReport | None = None) -> None:
        """Send the notifications due at ``now`` that this process can claim."""
        report = report or PassReport()
        due = await asyncio.to_thread(self.store.due_notifications, now)
        if not due:
            return
        from plait.notify import ChannelError, load_channels

        try:
            channels = load_channels(self.services.settings.home)
        except ChannelError as exc:
            log.error("alert notifications wait: %s", exc)
            return
        for item in due:
            claimed = await asyncio.to_thread(
                self.store.claim_notification, item.id, now, CLAIM_LEASE
            )
            if not claimed:
                continue
            error, retry_at = await self._send(item, channels, now)
            await asyncio.to_thread(
                self.store.finish_notification, item.id, now, error=error, retry_at=retry_at
            )
            if error is None:
                report.sent += 1
            elif retry_at is None:
                report.failed += 1
                log.warning("alert notification %s to %s failed: %s", item.id, item.channel, error)

    async def _send(
        self, item: NotificationRecord, channels: Mapping[str, Any], now: float
    ) -> tuple[str | None, float | None]:
        """(error, retry time): (None, None) when sent."""
        from plait.notify import ChannelError, send

        channel = channels.get(item.channel) or channels.get(item.channel.lower())
        if channel is None:
            return f"channel {item.channel!r} is not configured", None
        source = self.services.extras.get("connections")
        try:
            await send(
                channel,
                to_notice(item.notice),
                connection=(lambda name: source.get("*", name)) if source else None,
            )
        except ChannelError as exc:
            attempt = item.attempts + 1
            if exc.retryable and attempt < MAX_ATTEMPTS:
                return str(exc), now + RETRY_DELAY * 2 ** (attempt - 1)
            return str(exc), None
        return None, None


def to_notice(body: Mapping[str, Any]) -> Notice:
    """A stored alert notice as a :class:`~plait.notify.Notice`: the title and text for
    people; status ``firing`` or ``resolved``; the alert's fields for webhooks."""
    from plait.notify import Notice, run_link

    run_id = body.get("run_id")
    extra = {
        k: body.get(k)
        for k in (
            "alert",
            "event",
            "key",
            "state",
            "severity",
            "value",
            "threshold",
            "labels",
            "since",
            "resolved_at",
        )
    }
    return Notice(
        str(body.get("text") or ""),
        title=body.get("title"),
        workflow=body.get("workflow"),
        run_id=run_id,
        status=str(body.get("state") or "firing"),
        step=body.get("step"),
        link=run_link(run_id) if run_id else None,
        extra=extra,
    )


def start(
    services: Services,
    tasks: list[asyncio.Task[None]],
    stop: asyncio.Event,
    *,
    api_url: str | None = None,
) -> AlertService | None:
    """Start the evaluator as a task of a scheduler process (unless
    ``PLAIT_ALERT_INTERVAL=0``). ``api_url`` is the process's own API, if it serves one:
    its ``/metrics`` feed the HTTP rules."""
    try:
        interval = interval_from_env()
    except PlaitError as exc:  # the server is up already: say so, and alert all the same
        log.error("%s; evaluating alert rules every %g s", exc, DEFAULT_INTERVAL)
        interval = DEFAULT_INTERVAL
    if interval <= 0:
        return None
    import socket

    metrics = f"{api_url.rstrip('/')}/metrics" if api_url else None
    instance = None
    if api_url:
        port = api_url.rsplit(":", 1)[-1].strip("/")
        instance = f"{socket.gethostname()}:{port}"
    service = AlertService(services, interval=interval, metrics_url=metrics, instance=instance)
    services.extras["alerts"] = service
    tasks.append(asyncio.create_task(service.serve(stop), name="alerts"))
    return service


__all__ = ["AlertService", "PassReport", "interval_from_env", "start", "to_notice"]
