"""Cron schedules: validation, next fire times across daylight-saving changes, fire keys.

Transition dates used (2024):
* Europe/Berlin — spring forward Sun 31 March at 02:00 CET -> 03:00 CEST (01:00 UTC);
  fall back Sun 27 October at 03:00 CEST -> 02:00 CET (01:00 UTC).
* America/New_York — spring forward Sun 10 March at 02:00 EST -> 03:00 EDT (07:00 UTC);
  fall back Sun 3 November at 02:00 EDT -> 01:00 EST (06:00 UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from plait.triggers.schedule import Schedule, fire_key, next_fire

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fires(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """``count`` successive fires, each found by a fresh ``next_fire`` call."""
    out: list[datetime] = []
    for _ in range(count):
        after = next_fire(schedule, after)
        out.append(after)
    return out


def walls(times: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).strftime("%m-%d %H:%M %Z") for t in times]


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("", "non-empty"),
        ("0 2 * *", "5 fields"),
        ("0 2 * * * *", "5 fields"),
        ("61 * * * *", "invalid cron expression"),
        ("0 25 * * *", "invalid cron expression"),
        ("every day", "5 fields"),
        ("R 2 * * *", "random"),
        ("0 0 30 2 *", "never fires"),
        ("@reboot", "invalid cron expression"),
    ],
)
def test_bad_cron_is_refused_with_a_clear_message(cron: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule(cron)


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown timezone 'Mars/Olympus'.*IANA"):
        Schedule("0 2 * * *", "Mars/Olympus")
    with pytest.raises(ValueError, match="unknown timezone"):
        Schedule("0 2 * * *", "../../etc/passwd")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"catch_up": "some"}, "catch_up must be one of none, latest, all"),
        ({"max_catch_up": 0}, "between 1 and 1000"),
        ({"max_catch_up": 1001}, "between 1 and 1000"),
        ({"max_catch_up": True}, "integer"),
    ],
)
def test_bad_catch_up_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule("0 2 * * *", **kwargs)  # type: ignore[arg-type]


def test_month_and_weekday_names_are_not_mistaken_for_random_values() -> None:
    schedule = Schedule("0 9 * MAR,APR FRI")
    assert next_fire(schedule, utc(2024, 3, 1)) == utc(2024, 3, 1, 9)


@pytest.mark.parametrize(
    ("cron", "interval"),
    [
        ("@hourly", True),
        ("0 * * * *", True),
        ("*/15 * * * *", True),
        ("0 0-23 * * *", True),
        ("@daily", False),
        ("30 2 * * *", False),
        ("0 */2 * * *", False),
        ("*/15 2 * * *", False),
    ],
)
def test_only_an_every_hour_field_makes_an_interval_schedule(cron: str, interval: bool) -> None:
    assert Schedule(cron).interval is interval


def test_schedules_compare_by_their_settings() -> None:
    assert Schedule("0 2 * * *", "Europe/Berlin") == Schedule("0 2 * * *", "Europe/Berlin")
    assert Schedule("0 2 * * *") != Schedule("0 2 * * *", catch_up="all")


# -- next_fire basics ---------------------------------------------------------------------


def test_next_fire_is_strictly_after_and_in_utc() -> None:
    schedule = Schedule("0 2 * * *")
    first = next_fire(schedule, utc(2024, 5, 1))
    assert first == utc(2024, 5, 1, 2)
    assert first.tzinfo is UTC
    assert next_fire(schedule, first) == utc(2024, 5, 2, 2)
    assert next_fire(schedule, first - timedelta(microseconds=1)) == first


def test_next_fire_evaluates_the_cron_on_the_zone_wall_clock() -> None:
    schedule = Schedule("0 9 * * *", "Europe/Berlin")
    assert next_fire(schedule, utc(2024, 1, 15)) == utc(2024, 1, 15, 8)  # CET, +01:00
    assert next_fire(schedule, utc(2024, 7, 15)) == utc(2024, 7, 15, 7)  # CEST, +02:00


def test_after_in_another_zone_means_the_same_instant() -> None:
    schedule = Schedule("0 9 * * *", "Europe/Berlin")
    tokyo = utc(2024, 1, 15).astimezone(ZoneInfo("Asia/Tokyo"))
    assert next_fire(schedule, tokyo) == next_fire(schedule, utc(2024, 1, 15))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(Schedule("0 2 * * *"), datetime(2024, 1, 1))


def test_sparse_schedules_cross_years() -> None:
    assert next_fire(Schedule("0 0 1 1 *", "Europe/Berlin"), utc(2024, 6, 1)) == utc(
        2024, 12, 31, 23
    )
    assert next_fire(Schedule("0 12 29 2 *"), utc(2024, 3, 1)) == utc(2028, 2, 29, 12)


# -- daylight saving: fixed wall-clock times ---------------------------------------------


def test_berlin_spring_gap_fires_once_at_the_end_of_the_gap() -> None:
    schedule = Schedule("30 2 * * *", "Europe/Berlin")
    got = fires(schedule, utc(2024, 3, 29, 12), 4)
    assert walls(got, BERLIN) == [
        "03-30 02:30 CET",
        "03-31 03:00 CEST",  # 02:30 does not exist: first instant after the gap
        "04-01 02:30 CEST",
        "04-02 02:30 CEST",
    ]
    assert got[1] == utc(2024, 3, 31, 1)


def test_berlin_fall_back_fold_fires_once_at_the_first_occurrence() -> None:
    schedule = Schedule("30 2 * * *", "Europe/Berlin")
    got = fires(schedule, utc(2024, 10, 25, 12), 4)
    assert walls(got, BERLIN) == [
        "10-26 02:30 CEST",
        "10-27 02:30 CEST",  # first occurrence; 02:30 CET an hour later does not fire
        "10-28 02:30 CET",
        "10-29 02:30 CET",
    ]
    assert got[1] == utc(2024, 10, 27, 0, 30)


def test_fold_second_occurrence_is_not_fired_after_the_first_fired() -> None:
    schedule = Schedule("30 2 * * *", "Europe/Berlin")
    # The scheduler fired 02:30 CEST and asks again from there, and from inside the fold.
    assert next_fire(schedule, utc(2024, 10, 27, 0, 30)) == utc(2024, 10, 28, 1, 30)
    assert next_fire(schedule, utc(2024, 10, 27, 1, 10)) == utc(2024, 10, 28, 1, 30)


def test_new_york_spring_gap_fires_at_three_edt() -> None:
    schedule = Schedule("30 2 * * *", "America/New_York")
    got = fires(schedule, utc(2024, 3, 9, 12), 2)
    assert walls(got, NEW_YORK) == ["03-10 03:00 EDT", "03-11 02:30 EDT"]
    assert got[0] == utc(2024, 3, 10, 7)


def test_new_york_fall_back_fold_fires_once() -> None:
    # In New York the repeated hour is 01:00-01:59; 02:30 happens only once (EST).
    at_0130 = fires(Schedule("30 1 * * *", "America/New_York"), utc(2024, 11, 2, 12), 2)
    assert walls(at_0130, NEW_YORK) == ["11-03 01:30 EDT", "11-04 01:30 EST"]
    at_0230 = fires(Schedule("30 2 * * *", "America/New_York"), utc(2024, 11, 2, 12), 2)
    assert walls(at_0230, NEW_YORK) == ["11-03 02:30 EST", "11-04 02:30 EST"]
    assert at_0230[0] == utc(2024, 11, 3, 7, 30)


def test_several_times_in_one_gap_collapse_into_one_fire() -> None:
    schedule = Schedule("*/15 2 * * *", "Europe/Berlin")
    got = fires(schedule, utc(2024, 3, 30, 12), 5)
    assert walls(got, BERLIN) == [
        "03-31 03:00 CEST",
        "04-01 02:00 CEST",
        "04-01 02:15 CEST",
        "04-01 02:30 CEST",
        "04-01 02:45 CEST",
    ]


def test_a_gap_time_and_the_time_after_the_gap_do_not_double() -> None:
    schedule = Schedule("0 2,3 * * *", "Europe/Berlin")
    got = fires(schedule, utc(2024, 3, 30, 12), 3)
    assert walls(got, BERLIN) == ["03-31 03:00 CEST", "04-01 02:00 CEST", "04-01 03:00 CEST"]


def test_every_two_hours_keeps_wall_clock_rules() -> None:
    schedule = Schedule("0 */2 * * *", "Europe/Berlin")
    spring = fires(schedule, utc(2024, 3, 30, 22, 30), 3)
    assert walls(spring, BERLIN) == ["03-31 00:00 CET", "03-31 03:00 CEST", "03-31 04:00 CEST"]
    fall = fires(schedule, utc(2024, 10, 26, 21, 30), 3)
    assert walls(fall, BERLIN) == ["10-27 00:00 CEST", "10-27 02:00 CEST", "10-27 04:00 CET"]


# -- daylight saving: interval schedules (hour field is *) -------------------------------


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize(
    ("cron", "step"), [("0 * * * *", 60), ("*/15 * * * *", 15), ("@hourly", 60)]
)
@pytest.mark.parametrize("day", [(3, 9), (10, 26), (3, 30), (11, 2)])
def test_interval_schedules_fire_evenly_in_real_time_across_changes(
    zone: str, cron: str, step: int, day: tuple[int, int]
) -> None:
    schedule = Schedule(cron, zone)
    got = fires(schedule, utc(2024, *day, 20), 12 * 60 // step)
    gaps = {b - a for a, b in pairwise(got)}
    assert gaps == {timedelta(minutes=step)}


def test_berlin_hourly_repeats_the_folded_hour_in_real_time() -> None:
    got = fires(Schedule("0 * * * *", "Europe/Berlin"), utc(2024, 10, 26, 23, 30), 4)
    assert walls(got, BERLIN) == [
        "10-27 02:00 CEST",
        "10-27 02:00 CET",
        "10-27 03:00 CET",
        "10-27 04:00 CET",
    ]
    assert got[:2] == [utc(2024, 10, 27, 0), utc(2024, 10, 27, 1)]


def test_berlin_hourly_spring_forward_has_no_missing_real_hour() -> None:
    got = fires(Schedule("0 * * * *", "Europe/Berlin"), utc(2024, 3, 30, 23, 30), 3)
    assert walls(got, BERLIN) == ["03-31 01:00 CET", "03-31 03:00 CEST", "03-31 04:00 CEST"]


def test_new_york_quarter_hours_through_the_fold() -> None:
    got = fires(Schedule("*/15 * * * *", "America/New_York"), utc(2024, 11, 3, 4, 50), 10)
    assert walls(got, NEW_YORK) == [
        "11-03 01:00 EDT",
        "11-03 01:15 EDT",
        "11-03 01:30 EDT",
        "11-03 01:45 EDT",
        "11-03 01:00 EST",
        "11-03 01:15 EST",
        "11-03 01:30 EST",
        "11-03 01:45 EST",
        "11-03 02:00 EST",
        "11-03 02:15 EST",
    ]


def test_next_fire_from_inside_the_fold_uses_real_time() -> None:
    schedule = Schedule("*/15 * * * *", "Europe/Berlin")
    assert next_fire(schedule, utc(2024, 10, 27, 0, 40)) == utc(2024, 10, 27, 0, 45)
    assert next_fire(schedule, utc(2024, 10, 27, 0, 50)) == utc(2024, 10, 27, 1, 0)
    assert next_fire(schedule, utc(2024, 10, 27, 1, 40)) == utc(2024, 10, 27, 1, 45)


# -- an independent reference: scan every real minute -------------------------------------


def reference(cron: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The rules, implemented the slow obvious way: look at every real UTC minute.

    Only "which wall-clock times match the cron" comes from croniter (stepping naive
    wall-clock time, where there is no DST); the zone logic is independent of the code
    under test.
    """
    seen: dict[datetime, list[datetime]] = {}
    t = start
    while t <= end:
        seen.setdefault(t.astimezone(zone).replace(tzinfo=None), []).append(t)
        t += timedelta(minutes=1)
    matching, it = [], croniter(cron, min(seen) - timedelta(minutes=1))
    while (wall := it.get_next(datetime)) <= max(seen):
        matching.append(wall)
    if Schedule(cron).interval:
        return sorted(t for wall in matching for t in seen.get(wall, []))
    out: set[datetime] = set()
    for wall in matching:
        if wall in seen:
            out.add(seen[wall][0])  # first occurrence
        else:  # in a gap: the first real minute whose wall time is later
            out.add(min(ts[0] for w, ts in seen.items() if w > wall))
    return sorted(out)


@pytest.mark.parametrize(
    "cron",
    ["30 2 * * *", "0 * * * *", "*/15 * * * *", "*/20 2,3 * * *", "45 1-3 * * 0", "*/7 * * * *"],
)
@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Europe/Berlin", utc(2024, 3, 30, 23)),
        ("Europe/Berlin", utc(2024, 10, 26, 23)),
        ("America/New_York", utc(2024, 3, 10, 5)),
        ("America/New_York", utc(2024, 11, 3, 4)),
        ("Australia/Lord_Howe", utc(2024, 4, 6, 13)),  # a 30-minute fold
        ("Australia/Lord_Howe", utc(2024, 10, 5, 13, 30)),  # a 30-minute gap
    ],
)
def test_next_fire_agrees_with_a_minute_by_minute_reference(
    cron: str, zone: str, start: datetime
) -> None:
    schedule = Schedule(cron, zone)
    end = start + timedelta(hours=6)
    expected = reference(cron, ZoneInfo(zone), start + timedelta(minutes=1), end)
    got: list[datetime] = []
    after = start
    while (after := next_fire(schedule, after)) <= end:
        got.append(after)
    assert got == expected
    assert expected  # the window really contains fires


# -- fire keys ------------------------------------------------------------------------------


def test_fire_key_is_schedule_id_at_utc_iso_time() -> None:
    assert fire_key("deploy/nightly", utc(2024, 3, 31, 1)) == "deploy/nightly@2024-03-31T01:00:00Z"


def test_fire_key_is_stable_across_zones_and_unique_per_instant() -> None:
    instant = utc(2024, 10, 27, 0, 30)
    assert fire_key("s", instant) == fire_key("s", instant.astimezone(BERLIN))
    assert fire_key("s", instant.astimezone(NEW_YORK)) == fire_key("s", instant)
    # The two 02:30s of the fall-back night are different instants with different keys.
    first = datetime(2024, 10, 27, 2, 30, tzinfo=BERLIN, fold=0)
    second = datetime(2024, 10, 27, 2, 30, tzinfo=BERLIN, fold=1)
    assert fire_key("s", first) != fire_key("s", second)
    assert fire_key("a", instant) != fire_key("b", instant)


def test_fire_keys_sort_in_time_order() -> None:
    schedule = Schedule("*/15 * * * *", "Europe/Berlin")
    times = fires(schedule, utc(2024, 10, 26, 23), 12)
    keys = [fire_key("s", t) for t in times]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_fire_key_keeps_sub_second_precision_and_refuses_bad_input() -> None:
    assert fire_key("s", utc(2024, 1, 1) + timedelta(microseconds=5)).endswith("T00:00:00.000005Z")
    with pytest.raises(ValueError, match="timezone-aware"):
        fire_key("s", datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="schedule_id"):
        fire_key("", utc(2024, 1, 1))


def test_the_triggers_package_exports_its_public_api() -> None:
    import plait.triggers as triggers

    assert sorted(triggers.__all__) == sorted(
        [
            "DELIVERY_HEADER",
            "SIGNATURE_HEADER",
            "TIMESTAMP_HEADER",
            "EventTrigger",
            "FirePlan",
            "Match",
            "Schedule",
            "WebhookRejected",
            "count_fires",
            "delivery_key",
            "due_fires",
            "fire_key",
            "matches",
            "next_fire",
            "parse_body",
            "sign",
            "type_matches",
            "verify",
            "would_loop",
        ]
    )
    assert all(hasattr(triggers, name) for name in triggers.__all__)
