"""The "once per local day after 02:00" rule as a pure function: time zones and DST days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import ScheduleIntervalSpec, ScheduleOverlapPolicy

from activities.stock.activities import business_date, due_business_date
from petcare.config import Settings
from petcare.jobs import STOCK_RECONCILIATION
from petcare.schedules import declared_schedules
from petcare.timezones import InvalidTimeZone, parse_zone


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("timezone", "now", "expected"),
    [
        # Tokyo, no DST: 02:00 JST is 17:00 UTC the day before.
        ("Asia/Tokyo", "2027-01-10T16:59", date(2027, 1, 10)),
        ("Asia/Tokyo", "2027-01-10T17:00", date(2027, 1, 11)),
        # Kolkata, half-hour offset: 02:00 IST is 20:30 UTC the day before.
        ("Asia/Kolkata", "2027-01-10T20:29", date(2027, 1, 10)),
        ("Asia/Kolkata", "2027-01-10T20:30", date(2027, 1, 11)),
        # London: GMT in winter, BST in summer.
        ("Europe/London", "2027-01-10T01:59", date(2027, 1, 9)),
        ("Europe/London", "2027-01-10T02:00", date(2027, 1, 10)),
        ("Europe/London", "2027-07-10T00:59", date(2027, 7, 9)),
        ("Europe/London", "2027-07-10T01:00", date(2027, 7, 10)),
        # New York, spring forward 2027-03-14: 02:00 EST never happens, clocks read 03:00 EDT at
        # 07:00 UTC; the day starts right then.
        ("America/New_York", "2027-03-14T06:59", date(2027, 3, 13)),
        ("America/New_York", "2027-03-14T07:00", date(2027, 3, 14)),
        ("America/New_York", "2027-03-15T06:00", date(2027, 3, 15)),  # 02:00 EDT the day after
        # New York, fall back 2027-11-07: 01:00-01:59 happens twice, 02:00 EST is 07:00 UTC.
        ("America/New_York", "2027-11-07T05:30", date(2027, 11, 6)),  # 01:30 EDT
        ("America/New_York", "2027-11-07T06:30", date(2027, 11, 6)),  # 01:30 EST, the repeat
        ("America/New_York", "2027-11-07T07:00", date(2027, 11, 7)),
        # Berlin, fall back 2027-10-31: 02:00-02:59 happens twice; the first 02:00 counts.
        ("Europe/Berlin", "2027-10-30T23:59", date(2027, 10, 30)),
        ("Europe/Berlin", "2027-10-31T00:00", date(2027, 10, 31)),  # 02:00 CEST
        ("Europe/Berlin", "2027-10-31T01:30", date(2027, 10, 31)),  # 02:30 CET, the repeat
        # Sydney, southern hemisphere: DST ends 2027-04-04 at 03:00 AEDT -> 02:00 AEST.
        ("Australia/Sydney", "2027-04-03T14:59", date(2027, 4, 3)),
        ("Australia/Sydney", "2027-04-03T15:00", date(2027, 4, 4)),  # 02:00 AEDT
    ],
)
def test_business_date(timezone: str, now: str, expected: date) -> None:
    assert business_date(utc(now), timezone) == expected


def test_due_only_when_the_current_day_has_no_scheduled_run() -> None:
    now = utc("2027-03-14T07:05")
    assert due_business_date(now, "America/New_York", None) == date(2027, 3, 14)
    assert due_business_date(now, "America/New_York", date(2027, 3, 13)) == date(2027, 3, 14)
    assert due_business_date(now, "America/New_York", date(2027, 3, 14)) is None
    # A run missed across midnight is caught up for the day it belongs to.
    assert due_business_date(utc("2027-03-16T04:05"), "America/New_York", date(2027, 3, 14)) == date(
        2027, 3, 15
    )


@pytest.mark.parametrize(
    "timezone",
    [
        "UTC",
        "Asia/Tokyo",
        "Asia/Kolkata",
        "Europe/London",
        "America/New_York",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "America/Santiago",
    ],
)
def test_hourly_ticks_reconcile_every_local_day_exactly_once_just_after_two(timezone: str) -> None:
    """A year of the schedule's ticks (every hour at :05 UTC), DST days included."""
    zone = ZoneInfo(timezone)
    last: date | None = None
    due_at: dict[date, datetime] = {}
    tick = utc("2027-01-01T00:05")
    while tick < utc("2028-01-01T00:05"):
        day = due_business_date(tick, timezone, last)
        if day is not None:
            assert day not in due_at
            due_at[day] = tick
            last = day
        tick += timedelta(hours=1)

    days = sorted(due_at)
    assert days == [days[0] + timedelta(days=n) for n in range(len(days))]  # no day skipped
    assert len(days) == 366  # the first tick catches up the day before, wherever local 02:00 is still ahead
    for day in days[1:]:
        local = due_at[day].astimezone(zone)
        assert local.date() == day
        # The first tick at or after local 02:00 (03:05 on a day whose 02:00 does not exist).
        assert time(2, 0) <= local.time() <= time(3, 5)
        assert business_date(due_at[day] - timedelta(hours=1), timezone) < day


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        business_date(datetime(2027, 1, 1, 3, 0), "UTC")  # naive on purpose


@pytest.mark.parametrize("name", ["Europe/Paris", "UTC", "America/Argentina/Buenos_Aires", "EST5EDT"])
def test_iana_zones_parse(name: str) -> None:
    assert parse_zone(name).key == name


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus_Mons",
        "../etc/passwd",
        "",
        "Europe/paris",
        "America",  # a directory of the zone database
        "zone.tab",  # a data file of it, not a zone
        "right/Europe/Paris",  # counts leap seconds: its clock is 27 s off civil time
        "posix/Europe/Paris",
        "Factory",  # the placeholder for "no zone set"
        "localtime",  # whatever the machine runs in
    ],
)
def test_names_that_are_not_a_place_s_zone_are_refused(name: str) -> None:
    with pytest.raises(InvalidTimeZone, match="is not an IANA time zone"):
        parse_zone(name)
    with pytest.raises(InvalidTimeZone):
        business_date(datetime(2027, 1, 1, 3, 0, tzinfo=UTC), name)


def test_the_schedule_ticks_hourly_and_asks_for_the_due_stores() -> None:
    settings = Settings(_env_file=None)
    [declaration] = [d for d in declared_schedules(settings) if d.job == STOCK_RECONCILIATION]
    assert declaration.schedule_id == "stock-reconciliation"
    assert declaration.spec.intervals == [
        ScheduleIntervalSpec(every=timedelta(hours=1), offset=timedelta(minutes=5))
    ]
    assert declaration.overlap == ScheduleOverlapPolicy.SKIP
    assert declaration.catchup_window == timedelta(days=1)
    argument = declaration.argument.model_dump()
    assert (argument["store_id"], argument["force"], argument["continuation"]) == (None, False, None)
