"""The "once per local day after 02:00" rule, as pure functions of an instant and a time zone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from uuid import UUID

from petcare.models.stock import StoreTarget
from petcare.timezones import parse_zone

RECONCILE_AFTER = time(2, 0)


def business_date(now: datetime, timezone: str) -> date:
    """The local day whose 02:00 most recently passed at `now` in `timezone`.

    Before 02:00 local it is still the previous day: a store reconciled late (the worker was
    down across midnight) catches up the day it missed instead of skipping it. On a day whose
    02:00 does not exist (clocks jump 02:00 → 03:00) local time reads 03:00 or later once the
    jump has happened, so that day's run starts right after the jump. Raises InvalidTimeZone.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(parse_zone(timezone))
    today = local.date()
    return today if local.time() >= RECONCILE_AFTER else today - timedelta(days=1)


def due_business_date(now: datetime, timezone: str, last_scheduled: date | None) -> date | None:
    """The day to reconcile now, or None when the store's latest scheduled run already covers it."""
    current = business_date(now, timezone)
    if last_scheduled is not None and last_scheduled >= current:
        return None
    return current


def store_target(
    now: datetime, store_id: UUID, timezone: str, last_scheduled: date | None, *, force: bool
) -> StoreTarget | None:
    """What a run does with one store: reconcile it for a local day, or nothing. Raises InvalidTimeZone."""
    if force:  # a forced run always happens; it is dated, but never counts as the nightly one
        day = business_date(now, timezone)
        return StoreTarget(store_id=store_id, timezone=timezone, business_date=day, trigger="manual")
    due = due_business_date(now, timezone, last_scheduled)
    if due is None:
        return None
    return StoreTarget(store_id=store_id, timezone=timezone, business_date=due, trigger="schedule")
