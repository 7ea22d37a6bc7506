"""Cron schedules in a time zone: the next fire time and what is due after downtime.

Everything here is pure: the current time is passed in, never read, so the scheduler
process can be tested with a controllable clock and two scheduler processes computing
the same schedule always agree on the same fire times (and therefore on the same
:func:`fire_key`, which the store makes unique so only one of them starts the run).

Cron expressions are parsed and stepped by ``croniter`` over *naive wall-clock time* in
the schedule's zone; this module then maps each wall-clock time to real instants with
``zoneinfo``. Doing the zone arithmetic here rather than inside croniter keeps the
daylight-saving rules in one place, spelled out below, instead of depending on how a
library version happens to treat aware datetimes.

Daylight saving time
--------------------
A schedule whose hour field restricts the hours (``30 2 * * *``, ``0 9-17 * * 1-5``,
``0 */6 * * *``) names *times on the wall clock*; users expect "02:30" to happen once a
day, every day. So:

* **Gap (spring forward).** A wall-clock time that does not exist that day — 02:30 in
  Europe/Berlin on the last Sunday of March, when clocks jump from 02:00 to 03:00 —
  fires once, at the first real instant after the gap (03:00 local). It is never
  skipped. Several times inside the same gap (``*/15 2 * * *``) collapse into that one
  fire, and a fire at 03:00 itself is not doubled.
* **Fold (fall back).** A wall-clock time that happens twice — 02:30 in Europe/Berlin
  on the last Sunday of October, first in summer time, then again an hour later in
  winter time — fires once, at its first occurrence. It is never run twice.

A schedule whose hour field is ``*`` (``0 * * * *``, ``*/15 * * * *``, ``@hourly``) is
an *interval*: users expect it every hour of real time. It fires at every real instant
whose local wall-clock time matches, so the repeated hour of a fall-back night fires
again (02:00 summer time and 02:00 winter time are an hour apart), while the hour that
does not exist in spring simply has no instants (01:45 is followed by 03:00, fifteen
real minutes later). No instant is ever fired twice.

This is the rule of ISC/Vixie cron ("jobs that run at a particular time" are adjusted,
jobs with a wildcard hour run on the new time as is), of cron-utils (a duplicate in the
fold is skipped only for crons less frequent than hourly) and of Airflow, which moves a
tick in the gap onto the next real instant. Catch-up after downtime follows Kestra's
``recoverMissedSchedules`` (``NONE``/``LAST``/``ALL``), with a bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

CatchUp = Literal["none", "latest", "all"]
CATCH_UP_POLICIES: tuple[CatchUp, ...] = ("none", "latest", "all")
#: The most fires ``catch_up: all`` may start at once; a larger burst is a storm.
MAX_CATCH_UP_LIMIT = 1000
#: How many missed times a plan lists one by one (the newest); the rest are counted.
MISSED_LISTED = 100
#: How late a fire may start under ``catch_up: none`` and still count as on time.
DEFAULT_GRACE = timedelta(seconds=60)

_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated cron schedule; invalid input raises :class:`ValueError` at once.

    Validation happens on construction so that a workflow with a bad schedule is
    refused when it is deployed, not discovered by the scheduler at 02:00.
    """

    cron: str
    timezone: str = "UTC"
    catch_up: CatchUp = "latest"
    max_catch_up: int = 100
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    #: True when the hour field is ``*``: the schedule runs on real time (see module doc).
    interval: bool = field(init=False, repr=False, compare=False)
    #: Fires in a day (an hour) without a clock change, for counting long outages.
    fires_per_day: int = field(init=False, repr=False, compare=False)
    fires_per_hour: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expanded = _parse_cron(self.cron)
        object.__setattr__(self, "zone", _zone(self.timezone))
        if self.catch_up not in CATCH_UP_POLICIES:
            raise ValueError(
                f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, not {self.catch_up!r}"
            )
        if isinstance(self.max_catch_up, bool) or not isinstance(self.max_catch_up, int):
            raise ValueError(f"max_catch_up must be an integer, not {self.max_catch_up!r}")
        if not 1 <= self.max_catch_up <= MAX_CATCH_UP_LIMIT:
            raise ValueError(
                f"max_catch_up must be between 1 and {MAX_CATCH_UP_LIMIT}, not {self.max_catch_up}"
            )
        minutes, hours = _field_size(expanded[0], 60), _field_size(expanded[1], 24)
        object.__setattr__(self, "interval", hours == 24)
        object.__setattr__(self, "fires_per_day", minutes * hours)
        object.__setattr__(self, "fires_per_hour", minutes)


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What a scheduler tick should do for one schedule.

    ``fire`` holds the times to start now, oldest first. Every other scheduled time in
    the window is *missed*: ``missed_count`` counts them all, exactly, however long the
    outage; ``missed`` lists the newest of them (at most :data:`MISSED_LISTED`, oldest
    first) and ``first_missed`` is the oldest, so the store can record and show "N runs
    missed between X and Y" without a row per minute of a year-long outage.
    ``last_due`` is the newest scheduled time in the window: the schedule's new
    ``last_fire`` whether or not it was started.
    """

    fire: list[datetime]
    missed: list[datetime]
    missed_count: int = 0
    first_missed: datetime | None = None
    last_due: datetime | None = None


def next_fire(schedule: Schedule, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, as an aware UTC datetime.

    Evaluated on the wall clock of the schedule's zone under the daylight-saving rules of
    the module docstring: a time in a spring-forward gap fires at the end of the gap, a
    time in a fall-back fold fires at its first occurrence (unless the hour field is
    ``*``, when every real matching instant fires).
    """
    return next(_fires(schedule, _aware("after", after)))


def due_fires(
    schedule: Schedule,
    last_fire: datetime | None,
    created: datetime,
    now: datetime,
    *,
    grace: timedelta = DEFAULT_GRACE,
) -> FirePlan:
    """Split the scheduled times in ``(last_fire or created, now]`` into fire and missed.

    * ``none``: fire the newest due time only if it is at most ``grace`` late (a normal
      tick); every other due time is missed, so downtime is never made up for.
    * ``latest``: fire the newest due time, however late; the older ones are missed.
    * ``all``: fire the newest ``max_catch_up`` due times, oldest first; older ones
      beyond that bound are missed. The newest are kept, not the oldest, because they
      are the ones still worth running after a long outage and so the fired block ends
      at ``now`` with no hole before the next regular fire.

    The work is bounded whatever the length of the outage: only the newest few times are
    enumerated and the rest are counted day by day (see :func:`count_fires`).
    """
    start = _aware("last_fire", last_fire) if last_fire else _aware("created", created)
    now = _aware("now", now)
    if now <= start:
        return FirePlan([], [])
    keep = schedule.max_catch_up if schedule.catch_up == "all" else 1
    wanted = keep + MISSED_LISTED
    head = list(islice(_until(_fires(schedule, start), now), wanted + 1))
    if len(head) <= wanted:
        recent, total = head, len(head)
    else:
        recent, total = _newest(schedule, start, now, wanted), count_fires(schedule, start, now)
    if not recent:
        return FirePlan([], [])
    return _plan(schedule, recent, total, head[0], now, grace)


def count_fires(schedule: Schedule, start: datetime, end: datetime) -> int:
    """How many fire times lie in ``(start, end]``, exactly, without listing them all.

    A whole local day (or hour) with no clock change in or at the edge of it that holds
    a fire holds exactly ``fires_per_day`` (``fires_per_hour``) fires, so it is added in
    one step; only the clock-change days and the hours at both ends are enumerated. A
    year of a minutely schedule is about a thousand steps, not half a million.
    """
    start, end = _aware("start", start), _aware("end", end)
    count, cursor = 0, start
    fires = _fires(schedule, cursor)
    while True:
        fire = next(fires)
        if fire > end:
            return count
        counted = _bulk(schedule, cursor, fire, end)
        if counted:
            count, cursor = count + counted[0], counted[1] - _TICK
            fires = _fires(schedule, cursor)
        else:
            count, cursor = count + 1, fire


def _bulk(
    schedule: Schedule, cursor: datetime, fire: datetime, end: datetime
) -> tuple[int, datetime] | None:
    """Count the whole local day, else the whole hour, holding ``fire`` if it is plain.

    Plain means: after ``cursor`` (so ``fire`` is its first fire), ended by ``end``,
    of normal length and with the same UTC offset just before its start as at its end —
    a gap ending exactly at its start would add a gap-collapsed fire the formula does
    not know about.
    """
    zone = schedule.zone
    wall = fire.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    day = wall.replace(hour=0, minute=0)
    hour = wall.replace(minute=0)
    spans = ((day, _DAY, schedule.fires_per_day), (hour, _HOUR, schedule.fires_per_hour))
    for local_start, length, per_span in spans:
        begin = _resolve_wall(zone, local_start)
        finish = _resolve_wall(zone, local_start + length)
        plain = finish - begin == length and _offset(zone, begin - _TICK) == _offset(zone, finish)
        if cursor < begin and finish <= end and plain:
            return per_span, finish
    return None


def fire_key(schedule_id: str, fire_time: datetime) -> str:
    """The unique key of one fire of one schedule: ``"{schedule_id}@{UTC ISO time}"``.

    The store inserts the fire under this key with a unique constraint, so when two
    scheduler processes both find the same time due, exactly one insert succeeds and the
    run starts once. The key is stable: the same instant given in any zone yields the
    same key, and for whole-second times (every cron time) keys sort in time order.
    """
    if not schedule_id:
        raise ValueError("schedule_id must not be empty")
    utc = _aware("fire_time", fire_time).astimezone(UTC)
    spec = "seconds" if utc.microsecond == 0 else "microseconds"
    return f"{schedule_id}@{utc.replace(tzinfo=None).isoformat(timespec=spec)}Z"


# -- validation ---------------------------------------------------------------------


def _parse_cron(expression: str) -> list[list[Any]]:
    """Parse with croniter, accepting only what every scheduler computes identically."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("cron expression must be a non-empty string such as '0 2 * * *'")
    fields = expression.split()
    if not expression.startswith("@") and len(fields) != 5:
        raise ValueError(
            f"cron expression {expression!r} must have 5 fields "
            f"(minute hour day-of-month month day-of-week), not {len(fields)}"
        )
    if any(part.strip().upper().startswith("R") for f in fields for part in f.split(",")):
        # croniter's random "R" would give each scheduler process a different time,
        # breaking the one-fire-per-time guarantee.
        raise ValueError(f"cron expression {expression!r}: random values (R) are not supported")
    try:
        parsed = croniter(expression, datetime(2000, 1, 1))
        parsed.get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"cron expression {expression!r} never fires") from None
    except (CroniterBadCronError, CroniterError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None
    expanded: list[list[Any]] = parsed.expanded
    return expanded


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


def _field_size(values: list[Any], full: int) -> int:
    return full if values == ["*"] else len(set(values))


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not naive {value!r}")
    return value.astimezone(UTC)


# -- wall clock to real instants ----------------------------------------------------


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset
    return offset


def _instants(zone: ZoneInfo, wall: datetime) -> list[datetime]:
    """The real instants (UTC, ascending) whose local time is ``wall``: 0, 1 or 2."""
    found = set()
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            found.add(instant)
    return sorted(found)


def _gap_end(zone: ZoneInfo, wall: datetime) -> datetime:
    """The first real instant after the gap that swallowed the wall time ``wall``.

    The two fold readings of a nonexistent time bracket the transition; zoneinfo does
    not expose transitions, so bisect between them to the second.
    """
    a, b = (wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    lo, hi = int(min(a, b).timestamp()), int(max(a, b).timestamp())
    before = _offset(zone, datetime.fromtimestamp(lo, UTC))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, datetime.fromtimestamp(mid, UTC)) == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _resolve_wall(zone: ZoneInfo, wall: datetime) -> datetime:
    """A wall time's fire instant under the fixed-time rule: first occurrence or gap end."""
    instants = _instants(zone, wall)
    return instants[0] if instants else _gap_end(zone, wall)


# -- enumeration ----------------------------------------------------------------------


def _fires(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """All fire times strictly after ``after`` (UTC), ascending, without duplicates.

    Wall-clock candidates come from croniter in order. The first occurrences of
    successive wall times are non-decreasing in real time, and so are the second
    occurrences of folded times, so interval schedules merge the two streams with a
    small queue; fixed-time schedules never look at second occurrences.
    """
    zone = schedule.zone
    start = after.astimezone(zone).replace(tzinfo=None) - _fold_margin(zone, after)
    walls = croniter(schedule.cron, start)
    later: deque[datetime] = deque()  # second occurrences not yet due in merge order
    last = after
    while True:
        wall: datetime = walls.get_next(datetime)
        instants = _instants(zone, wall)
        if not instants:
            if schedule.interval:
                continue  # no real instant has this wall time; the hour still runs
            instants = [_gap_end(zone, wall)]
        first = instants[0]
        if schedule.interval and len(instants) == 2:
            later.append(instants[1])
        while later and later[0] < first:
            candidate = later.popleft()
            if candidate > last:
                last = candidate
                yield candidate
        if first > last:
            last = first
            yield first


def _fold_margin(zone: ZoneInfo, after: datetime) -> timedelta:
    """How far before ``after``'s wall time a fold's second occurrence can still be due.

    Only a fall-back within the next day matters: its repeated wall times lie before
    ``after``'s wall time but their second occurrences lie after ``after``.
    """
    return max(timedelta(0), _offset(zone, after) - _offset(zone, after + _DAY))


def _until(fires: Iterator[datetime], end: datetime) -> Iterator[datetime]:
    for fire in fires:
        if fire > end:
            return
        yield fire


def _newest(schedule: Schedule, start: datetime, now: datetime, count: int) -> list[datetime]:
    """The ``count`` newest fire times in ``(start, now]``, ascending.

    croniter steps back over wall-clock candidates (all at or before ``now``'s wall
    time, so their first occurrences are not after ``now``) to find a lower bound,
    which is then checked by enumerating forward, since the forward path owns the DST
    rules; the step back doubles in the rare case that gaps swallowed candidates.
    """
    zone, steps = schedule.zone, count
    while True:
        walls = croniter(schedule.cron, now.astimezone(zone).replace(tzinfo=None) + _TICK)
        wall = datetime.max
        for _ in range(steps):
            wall = walls.get_prev(datetime)
        lower = max(start, _resolve_wall(zone, wall) - _TICK)
        found = list(_until(_fires(schedule, lower), now))
        if len(found) >= count or lower == start:
            return found[-count:]
        steps *= 2


def _plan(
    schedule: Schedule,
    recent: list[datetime],
    total: int,
    oldest: datetime,
    now: datetime,
    grace: timedelta,
) -> FirePlan:
    """Apply the catch-up policy to the newest due times (``total`` are due in all)."""
    newest = recent[-1]
    if schedule.catch_up == "all":
        fire = recent[-schedule.max_catch_up :]
    elif schedule.catch_up == "latest" or now - newest <= grace:
        fire = [newest]
    else:
        fire = []
    missed = recent[: len(recent) - len(fire)][-MISSED_LISTED:]
    missed_count = total - len(fire)
    return FirePlan(
        fire=fire,
        missed=missed,
        missed_count=missed_count,
        first_missed=oldest if missed_count else None,
        last_due=newest,
    )
