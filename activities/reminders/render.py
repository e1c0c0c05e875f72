"""Turns one appointment into its reminder texts, in the store's time zone and the customer's language."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from activities.reminders.sms_text import MAX_SEGMENTS, fit_segments, sms_segments
from activities.reminders.templates import LOCALES, LocaleTexts, resolve_locale
from petcare.timezones import InvalidTimeZone, parse_zone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReminderContext:
    appointment_id: str
    first_name: str
    pet_name: str
    service_name: str
    store_name: str
    store_phone: str | None
    store_timezone: str
    starts_at: datetime
    locale: str | None


@dataclass(frozen=True)
class RenderedReminder:
    locale: str
    starts_at_local: str
    subject: str
    text: str
    html: str
    sms: str


def store_zone(name: str) -> ZoneInfo:
    try:
        return parse_zone(name)
    except InvalidTimeZone:
        # A store row with a bad zone must not stop everyone's reminders; UTC is labelled as such.
        log.warning("unknown store time zone %r: rendering in UTC", name)
        return ZoneInfo("UTC")


def local_when(starts_at: datetime, zone: ZoneInfo, texts: LocaleTexts) -> tuple[str, str]:
    """(date, full date-time with zone) of an instant as seen on the store's wall clock."""
    local = starts_at.astimezone(zone)
    if texts.twelve_hour:
        hour = local.hour % 12 or 12
        time = f"{hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"
    else:
        time = f"{local.hour:02d}:{local.minute:02d}"
    date = texts.date.format(
        day_name=texts.days[local.weekday()], day=local.day, month=texts.months[local.month - 1]
    )
    zone_label = local.tzname() or zone.key
    return date, texts.when.format(date=date, time=time, zone=zone_label)


def render_reminder(context: ReminderContext) -> RenderedReminder:
    locale = resolve_locale(context.locale)
    texts = LOCALES[locale]
    starts_at = context.starts_at if context.starts_at.tzinfo else context.starts_at.replace(tzinfo=UTC)
    date, when = local_when(starts_at, store_zone(context.store_timezone), texts)
    plain = {
        "first_name": context.first_name,
        "pet": context.pet_name,
        "service": context.service_name,
        "store": context.store_name,
        "store_phone": context.store_phone or "",
        "date": date,
        "when": when,
    }
    contact = texts.contact.format(**plain) if context.store_phone else ""
    escaped = {key: html.escape(value) for key, value in plain.items()}
    return RenderedReminder(
        locale=locale,
        starts_at_local=when,
        subject=texts.subject.format(**plain),
        text=texts.text.format(**plain, contact=f"{contact}\n\n" if contact else ""),
        html=texts.html.format(**escaped, contact=html.escape(contact)),
        sms=_sms(texts, plain, contact),
    )


def _sms(texts: LocaleTexts, fields: dict[str, str], contact: str) -> str:
    for wording in texts.sms:
        candidate = wording.format(**fields, contact=contact).strip()
        if sms_segments(candidate) <= MAX_SEGMENTS:
            return candidate
    # Only absurdly long names get here: cut the shortest wording to two segments.
    return fit_segments(texts.sms[-1].format(**fields, contact=contact).strip())
