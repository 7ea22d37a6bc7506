"""What a scheduler tick fires after normal operation and after downtime, and how the
missed fires are counted — bounded however long the outage was."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from plait.triggers.schedule import (
    MISSED_LISTED,
    CatchUp,
    Schedule,
    count_fires,
    due_fires,
    fire_key,
    next_fire,
)

BERLIN = ZoneInfo("Europe/Berlin")
POLICIES: list[CatchUp] = ["none", "latest", "all"]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def every_fire(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    out: list[datetime] = []
    while (start := next_fire(schedule, start)) <= end:
        out.append(start)
    return out


# -- normal ticks ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_an_on_time_tick_fires_the_due_time(policy: CatchUp) -> None:
    schedule = Schedule("0 2 * * *", "Europe/Berlin", catch_up=policy)
    last = utc(2024, 5, 1, 0)  # 02:00 CEST
    plan = due_fires(schedule, last, utc(2024, 1, 1), utc(2024, 5, 2, 0, 0, 5))
    assert plan.fire == [utc(2024, 5, 2, 0)]
    assert plan.missed == []
    assert plan.missed_count == 0
    assert plan.first_missed is None
    assert plan.last_due == utc(2024, 5, 2, 0)


@pytest.mark.parametrize("policy", POLICIES)
def test_nothing_is_due_before_the_next_time(policy: CatchUp) -> None:
    schedule = Schedule("0 2 * * *", catch_up=policy)
    plan = due_fires(schedule, utc(2024, 5, 1, 2), utc(2024, 1, 1), utc(2024, 5, 2, 1, 59))
    assert plan.fire == []
    assert plan.missed == []
    assert plan.missed_count == 0
    assert plan.last_due is None
    assert due_fires(schedule, utc(2024, 5, 1, 2), utc(2024, 1, 1), utc(2024, 5, 1)).fire == []


def test_a_new_schedule_counts_from_its_creation_not_before() -> None:
    schedule = Schedule("0 * * * *")
    created = utc(2024, 5, 1, 10)  # exactly on a fire time: that one is not due
    assert due_fires(schedule, None, created, utc(2024, 5, 1, 10, 30)).fire == []
    assert due_fires(schedule, None, created, utc(2024, 5, 1, 11)).fire == [utc(2024, 5, 1, 11)]


def test_the_same_tick_in_two_schedulers_gives_the_same_fire_keys() -> None:
    schedule = Schedule("*/5 * * * *", "Europe/Berlin", catch_up="all")
    args = (utc(2024, 10, 27, 0), utc(2024, 1, 1), utc(2024, 10, 27, 2, 1))
    one, two = due_fires(schedule, *args), due_fires(schedule, *args)
    keys = [fire_key("hook", t) for t in one.fire]
    assert keys == [fire_key("hook", t) for t in two.fire]
    assert len(set(keys)) == len(keys) == 24  # two real hours, the folded one included


def test_times_must_be_aware() -> None:
    with pytest.raises(ValueError, match="now must be a timezone-aware"):
        due_fires(Schedule("0 2 * * *"), None, utc(2024, 1, 1), datetime(2024, 1, 2))


# -- catch_up: none -----------------------------------------------------------------------


def test_none_fires_within_the_grace_and_misses_a_late_time() -> None:
    schedule = Schedule("0 * * * *", catch_up="none")
    last = utc(2024, 5, 1, 9)
    on_time = due_fires(schedule, last, last, utc(2024, 5, 1, 10, 1))
    assert on_time.fire == [utc(2024, 5, 1, 10)]
    late = due_fires(schedule, last, last, utc(2024, 5, 1, 10, 1, 1))
    assert late.fire == []
    assert late.missed == [utc(2024, 5, 1, 10)]
    assert late.missed_count == 1
    assert late.first_missed == utc(2024, 5, 1, 10)
    assert late.last_due == utc(2024, 5, 1, 10)


def test_none_grace_can_be_changed() -> None:
    schedule = Schedule("0 * * * *", catch_up="none")
    last = utc(2024, 5, 1, 9)
    plan = due_fires(schedule, last, last, utc(2024, 5, 1, 10, 4), grace=timedelta(minutes=5))
    assert plan.fire == [utc(2024, 5, 1, 10)]


def test_none_after_an_hour_down_fires_the_current_time_only() -> None:
    schedule = Schedule("*/15 * * * *", catch_up="none")
    last = utc(2024, 5, 1, 9)
    plan = due_fires(schedule, last, last, utc(2024, 5, 1, 10, 0, 30))
    assert plan.fire == [utc(2024, 5, 1, 10)]
    assert plan.missed == [utc(2024, 5, 1, 9, 15), utc(2024, 5, 1, 9, 30), utc(2024, 5, 1, 9, 45)]
    assert plan.missed_count == 3


# -- catch_up: latest -----------------------------------------------------------------------


def test_latest_after_an_hour_down_fires_the_newest_only() -> None:
    schedule = Schedule("*/15 * * * *", catch_up="latest")
    last = utc(2024, 5, 1, 9)
    plan = due_fires(schedule, last, last, utc(2024, 5, 1, 10, 7))
    assert plan.fire == [utc(2024, 5, 1, 10)]  # 7 minutes late, still fired
    assert plan.missed == [utc(2024, 5, 1, 9, m) for m in (15, 30, 45)]
    assert plan.missed_count == 3
    assert plan.first_missed == utc(2024, 5, 1, 9, 15)


def test_latest_after_a_day_down_across_the_fall_back_night() -> None:
    schedule = Schedule("0 * * * *", "Europe/Berlin", catch_up="latest")
    last = utc(2024, 10, 26, 22)  # 00:00 CEST on the 27th
    plan = due_fires(schedule, last, last, utc(2024, 10, 27, 23, 0, 10))  # 00:00 CET, 28th
    assert plan.fire == [utc(2024, 10, 27, 23)]
    assert plan.missed_count == 24  # a 25-hour local day: 25 hourly fires, one fired
    assert plan.first_missed == utc(2024, 10, 26, 23)


# -- catch_up: all -------------------------------------------------------------------------


def test_all_after_an_hour_down_fires_every_time_oldest_first() -> None:
    schedule = Schedule("*/15 * * * *", catch_up="all")
    last = utc(2024, 5, 1, 9)
    plan = due_fires(schedule, last, last, utc(2024, 5, 1, 10, 7))
    assert plan.fire == [utc(2024, 5, 1, 9, m) for m in (15, 30, 45)] + [utc(2024, 5, 1, 10)]
    assert plan.missed == []
    assert plan.missed_count == 0
    assert plan.first_missed is None


def test_all_after_a_day_down_keeps_the_newest_up_to_the_bound() -> None:
    schedule = Schedule("0 * * * *", catch_up="all", max_catch_up=10)
    last = utc(2024, 5, 1, 0)
    plan = due_fires(schedule, last, last, utc(2024, 5, 2, 0, 0, 1))
    assert plan.fire == [utc(2024, 5, 1, h) for h in range(15, 24)] + [utc(2024, 5, 2)]
    assert plan.missed == [utc(2024, 5, 1, h) for h in range(1, 15)]
    assert plan.missed_count == 14
    assert plan.first_missed == utc(2024, 5, 1, 1)


def test_all_across_the_spring_gap_fires_the_collapsed_time_once() -> None:
    schedule = Schedule("*/30 2,3 * * *", "Europe/Berlin", catch_up="all")
    last = utc(2024, 3, 30, 12)
    plan = due_fires(schedule, last, last, utc(2024, 3, 31, 12))
    local = [t.astimezone(BERLIN).strftime("%H:%M %Z") for t in plan.fire]
    assert local == ["03:00 CEST", "03:30 CEST"]


# -- long outages: bounded and exactly counted --------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_a_year_of_a_minutely_schedule_is_bounded_and_counted_exactly(policy: CatchUp) -> None:
    schedule = Schedule("* * * * *", "Europe/Berlin", catch_up=policy, max_catch_up=50)
    last, now = utc(2024, 1, 1, 13, 7), utc(2025, 1, 1, 3, 3, 20)
    began = time.perf_counter()
    plan = due_fires(schedule, last, last, now)
    assert time.perf_counter() - began < 5  # about 0.2 s; enumerating would take a minute
    due = int((now - last) / timedelta(minutes=1))  # every real minute, DST or not
    fired = {"none": 1, "latest": 1, "all": 50}[policy]
    assert len(plan.fire) == fired
    assert plan.fire[-1] == utc(2025, 1, 1, 3, 3)
    assert plan.missed_count == due - fired
    assert len(plan.missed) == MISSED_LISTED
    assert plan.missed[-1] == plan.fire[0] - timedelta(minutes=1)
    assert plan.first_missed == utc(2024, 1, 1, 13, 8)


def test_a_year_of_a_daily_schedule_fires_the_newest_hundred() -> None:
    schedule = Schedule("30 2 * * *", "Europe/Berlin", catch_up="all")
    last = utc(2024, 1, 1, 1, 30)
    plan = due_fires(schedule, last, last, utc(2025, 1, 1, 12))
    assert len(plan.fire) == 100
    assert plan.fire == sorted(plan.fire)
    assert plan.fire[-1] == utc(2025, 1, 1, 1, 30)
    assert plan.missed_count == 366 - 100  # 2 Jan 2024 .. 1 Jan 2025, leap year
    assert plan.missed[-1] == plan.fire[0] - timedelta(days=1)
    assert plan.first_missed == utc(2024, 1, 2, 1, 30)


def test_none_after_a_year_down_fires_nothing_and_counts_everything() -> None:
    schedule = Schedule("0 */6 * * *", "America/New_York", catch_up="none")
    last = utc(2023, 6, 1)
    plan = due_fires(schedule, last, last, utc(2024, 6, 1, 0, 30))
    assert plan.fire == []
    assert plan.missed_count == count_fires(schedule, last, utc(2024, 6, 1, 0, 30))
    assert plan.missed_count == 366 * 4  # 00, 06, 12, 18 h are clear of both DST changes


@pytest.mark.parametrize(
    ("cron", "zone", "start", "days"),
    [
        ("* * * * *", "Europe/Berlin", utc(2024, 3, 30, 13, 7), 2),
        ("*/15 * * * *", "America/New_York", utc(2024, 11, 1, 22, 59), 5),
        ("*/15 2 * * *", "Europe/Berlin", utc(2024, 3, 1, 13, 7), 70),
        ("30 2 * * *", "Europe/Berlin", utc(2024, 10, 1, 2), 60),
        ("0 */2 * * *", "America/New_York", utc(2024, 3, 1), 20),
        ("7 * * * 1-5", "Europe/Berlin", utc(2024, 3, 20, 5, 7), 20),
        ("*/10 0 * * *", "America/Santiago", utc(2024, 9, 1), 14),  # midnight gap
        ("0 * * * *", "Australia/Lord_Howe", utc(2024, 4, 5), 3),  # 30-minute fold
    ],
)
def test_counting_by_day_equals_enumerating(
    cron: str, zone: str, start: datetime, days: int
) -> None:
    schedule = Schedule(cron, zone)
    end = start + timedelta(days=days, minutes=13)
    assert count_fires(schedule, start, end) == len(every_fire(schedule, start, end))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    ("cron", "zone", "last", "now"),
    [
        # Four gap times collapse into one fire, so stepping back 101 wall-clock times
        # finds fewer than 101 fires: the look-back has to widen.
        ("*/15 2 * * *", "Europe/Berlin", utc(2024, 1, 1), utc(2024, 3, 31, 12)),
        ("*/15 * * * *", "Europe/Berlin", utc(2024, 10, 25), utc(2024, 10, 27, 1, 40)),
        ("30 1 * * *", "America/New_York", utc(2024, 6, 1), utc(2024, 11, 3, 6, 31)),
    ],
)
def test_a_plan_agrees_with_full_enumeration(
    policy: CatchUp, cron: str, zone: str, last: datetime, now: datetime
) -> None:
    schedule = Schedule(cron, zone, catch_up=policy, max_catch_up=7)
    due = every_fire(schedule, last, now)
    plan = due_fires(schedule, last, last, now)
    assert plan.missed_count + len(plan.fire) == len(due)
    assert (plan.missed + plan.fire) == due[-(len(plan.missed) + len(plan.fire)) :]
    assert plan.first_missed == due[0]
    assert plan.last_due == due[-1]
