"""A reminder's words: rendered in the store's zone and the customer's language, as an email or an SMS."""

from __future__ import annotations

import email.policy
import html
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from uuid import UUID
from zoneinfo import ZoneInfo

from activities.reminders.templates import LOCALES, LocaleTexts, resolve_locale
from petcare.mail import compose, stable_message_id
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


# --- SMS text: GSM-7 fits 160 characters (153 per part when split), anything else UCS-2 70 (67).

MAX_SEGMENTS = 2

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters sent as an escape plus a code: each costs two septets.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


def _units(text: str) -> tuple[int, int, int]:
    """(units used, units per single message, units per part of a split message)."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        return sum(2 if char in GSM7_EXTENSION else 1 for char in text), 160, 153
    utf16_units = len(text.encode("utf-16-le")) // 2
    return utf16_units, 70, 67


def sms_segments(text: str) -> int:
    used, single, part = _units(text)
    if used <= single:
        return 1
    return math.ceil(used / part)


def fit_segments(text: str, segments: int = MAX_SEGMENTS) -> str:
    """The longest prefix of `text` (ending in an ellipsis when cut) within `segments`."""
    if sms_segments(text) <= segments:
        return text
    cut = text
    while cut and sms_segments(cut + "...") > segments:
        cut = cut[:-1]
    return cut.rstrip() + "..."


# --- The email: plain-text and HTML alternatives under a deterministic Message-ID.


class _CachedHeaderRegistry(HeaderRegistry):
    """The stdlib registry builds a new header class on every lookup, over half the cost of a
    message; building each class once keeps rendering well below the cost of sending."""

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = super().__getitem__(name)
        return built


POLICY = email.policy.SMTP.clone(header_factory=_CachedHeaderRegistry())


def build_email(rendered: RenderedReminder, *, sender: str, recipient: str, message_id: str) -> EmailMessage:
    # The Message-ID is identical on every attempt: a resend after a crash is recognisable (and
    # deduplicated by many MTAs).
    message = compose(
        sender=sender,
        recipient=recipient,
        subject=rendered.subject,
        message_id=message_id,
        text=rendered.text,
        html=f'<!doctype html><html lang="{rendered.locale}"><body>{rendered.html}</body></html>',
        policy=POLICY,
    )
    message["Content-Language"] = rendered.locale
    return message


def deliverable_address(address: str) -> bool:
    """What the SMTP client can put in RCPT TO without SMTPUTF8: one @, ASCII, nothing blank.

    Anything else would fail every retry, so it is recorded as a rejected address instead.
    """
    local, at, domain = address.rpartition("@")
    return (
        bool(at and local and domain)
        and address.isascii()
        and address.isprintable()
        and not any(char.isspace() or char in "<>," for char in address)
    )


def reminder_message_id(appointment_id: UUID, sender: str) -> str:
    """One Message-ID per appointment, in the sender's domain, on every attempt."""
    return stable_message_id("reminder", appointment_id, sender)
