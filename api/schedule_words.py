"""A Temporal schedule's spec and policy in words, for operators reading `GET /api/v1/schedules`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import ScheduleCalendarSpec, ScheduleRange, ScheduleSpec

_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def duration(value: timedelta) -> str:
    """`1h`, `1h 5m`, `30s`, `2d`: the largest units that add up exactly."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)


def spec_in_words(spec: ScheduleSpec) -> str:
    """E.g. "every 1h at +5m" or "at 02:00 Mon-Fri (Europe/Paris)"; clauses joined with "; "."""
    clauses = []
    for interval in spec.intervals:
        offset = f" at +{duration(interval.offset)}" if interval.offset else ""
        clauses.append(f"every {duration(interval.every)}{offset}")
    clauses += [f"cron {expression}" for expression in spec.cron_expressions]
    clauses += [_calendar(calendar) for calendar in spec.calendars]
    words = "; ".join(clauses) or "no times (trigger or backfill only)"
    if spec.skip:
        words += " except " + "; ".join(_calendar(calendar) for calendar in spec.skip)
    if spec.time_zone_name:
        words += f" ({spec.time_zone_name})"
    if spec.jitter:
        words += f", jitter {duration(spec.jitter)}"
    return words


def _calendar(calendar: ScheduleCalendarSpec) -> str:
    hours, minutes = _ranges(calendar.hour), _ranges(calendar.minute, width=2)
    words = f"at {hours}:{minutes}"
    if _ranges(calendar.second) != "0":
        words += f":{_ranges(calendar.second, width=2)}"
    if _ranges(calendar.day_of_week) != "0-6":
        words += " " + _ranges(calendar.day_of_week, names=_DAYS)
    if _ranges(calendar.day_of_month) != "1-31":
        words += " on day " + _ranges(calendar.day_of_month)
    if _ranges(calendar.month) != "1-12":
        words += " in " + _ranges(calendar.month, names=_MONTHS)
    if calendar.year:
        words += " in " + _ranges(calendar.year)
    if calendar.comment:
        words += f" ({calendar.comment})"
    return words


def _ranges(ranges: Sequence[ScheduleRange], *, width: int = 1, names: Sequence[str] = ()) -> str:
    def name(value: int) -> str:
        return names[value] if names and 0 <= value < len(names) else str(value).zfill(width)

    parts = []
    for part in ranges:
        end = max(part.end, part.start)
        text = name(part.start) if end == part.start else f"{name(part.start)}-{name(end)}"
        if part.step > 1:
            text += f"/{part.step}"
        parts.append(text)
    return ",".join(parts) or "*"
