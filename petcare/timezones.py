"""Store time zones: one parser for the IANA names stored in `stores.timezone`."""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo, available_timezones

# Names the zone database accepts that are not a place's civil time: the machine's own zone, and
# "Factory" (a placeholder for "not set"). `right/...` leap-second zones are not listed at all.
_NOT_A_PLACE = frozenset({"localtime", "Factory"})


class InvalidTimeZone(ValueError):
    """A store's time zone that is not an IANA time zone name."""


@functools.cache
def _known_zones() -> frozenset[str]:
    # Scans the zone database once per process; ZoneInfo alone accepts too much (`right/UTC`
    # counts leap seconds, so its wall clock is 27 s off).
    return frozenset(available_timezones()) - _NOT_A_PLACE


def parse_zone(name: str) -> ZoneInfo:
    """The zone named `name`, or InvalidTimeZone. What to do with a bad one is the caller's policy:
    stock reconciliation reports the store failed, reminders may fall back to UTC."""
    if name not in _known_zones():
        raise InvalidTimeZone(f"store time zone {name!r} is not an IANA time zone")
    return ZoneInfo(name)
