"""The "once per local day after 02:00" rule, as pure functions of an instant and a time zone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

RECONCILE_AFTER = time(2, 0)


def business_date(now: datetime, timezone: str) -> date:
    """The local day whose 02:00 most recently passed at `now` in `timezone`.

    Before 02:00 local it is still the previous day: a store reconciled late (the worker was
    down across midnight) catches up the day it missed instead of skipping it. On a day whose
    02:00 does not exist (clocks jump 02:00 → 03:00) local time reads 03:00 or later once the
    jump has happened, so that day's run starts right after the jump.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(ZoneInfo(timezone))
    today = local.date()
    return today if local.time() >= RECONCILE_AFTER else today - timedelta(days=1)


def due_business_date(now: datetime, timezone: str, last_scheduled: date | None) -> date | None:
    """The day to reconcile now, or None when the store's latest scheduled run already covers it."""
    current = business_date(now, timezone)
    if last_scheduled is not None and last_scheduled >= current:
        return None
    return current


def valid_timezone(timezone: str) -> bool:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
