"""A reminder's words: rendered in the store's zone and the customer's language, as an email or an SMS."""

from __future__ import annotations

import email.policy
import html
import logging
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from typing import TypedDict
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from activities.reminders.templates import (
    LOCALES,
    LocaleTexts,
    TemplateError,
    TemplateOverride,
    render_template,
    resolve_locale,
)
from petcare.mail import MessageTemplate, WireMessage, compose, header_text, stable_message_id
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
    store_email: str | None = None  # the emails' Reply-To, so a reply reaches the salon
    # The store's own words for the customer's locale, if it has any.
    override: TemplateOverride | None = None


@dataclass(frozen=True)
class RenderedReminder:
    locale: str
    starts_at_local: str
    subject: str
    text: str
    html: str
    sms: str
    overridden: bool = False  # the store's own words, in part or whole


def store_zone(name: str) -> ZoneInfo:
    try:
        return parse_zone(name)
    except InvalidTimeZone:
        # A store row with a bad zone must not stop everyone's reminders; UTC is labelled as such.
        log.warning("unknown store time zone %r: rendering in UTC", name)
        return ZoneInfo("UTC")


def local_when(starts_at: datetime, zone: ZoneInfo, texts: LocaleTexts) -> tuple[str, str, str]:
    """(date, time, full date-time with zone) of an instant as seen on the store's wall clock."""
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
    return date, time, texts.when.format(date=date, time=time, zone=zone_label)


def render_reminder(context: ReminderContext) -> RenderedReminder:
    """The store's own words where it has an override for this locale, else the defaults.

    Raises TemplateError only for an override that no longer renders (they are checked when
    written, so only a row edited by hand): that reminder's fault alone (UnsendableMessage)."""
    locale = resolve_locale(context.locale)
    texts = LOCALES[locale]
    plain, time, contact = _values(context, texts)
    escaped = {key: html.escape(value) for key, value in plain.items()}
    own = context.override or TemplateOverride()
    values = {**plain, "time": time, "contact": contact}
    if own.email_body is not None:
        text = render_template(own.email_body, values)
        body_html = _paragraphs(text)
    else:
        text = texts.text.format(**plain, contact=f"{contact}\n\n" if contact else "")
        body_html = texts.html.format(**escaped, contact=html.escape(contact))
    if own.sms is not None:
        sms = fit_segments(render_template(own.sms, values).strip())
    else:
        sms = _sms(texts, plain, contact)
    subject = render_template(own.email_subject, values) if own.email_subject is not None else None
    return RenderedReminder(
        locale=locale,
        starts_at_local=plain["when"],
        subject=subject if subject is not None else texts.subject.format(**plain),
        text=text,
        html=body_html,
        sms=sms,
        overridden=own != TemplateOverride(),
    )


def _values(context: ReminderContext, texts: LocaleTexts) -> tuple[dict[str, str], str, str]:
    """(the default wordings' fields, the local time, the "call us" sentence) of an appointment."""
    starts_at = context.starts_at if context.starts_at.tzinfo else context.starts_at.replace(tzinfo=UTC)
    date, time, when = local_when(starts_at, store_zone(context.store_timezone), texts)
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
    return plain, time, contact


def _paragraphs(text: str) -> str:
    """A store's plain-text body as HTML: escaped, blank lines between paragraphs, line breaks kept."""
    blocks = [block.strip("\n") for block in text.replace("\r\n", "\n").split("\n\n")]
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in block.split("\n")) + "</p>"
        for block in blocks
        if block.strip()
    )


# A long appointment: a store's SMS override must fit two segments even for it.
SAMPLE_CONTEXT = ReminderContext(
    appointment_id="00000000-0000-0000-0000-000000000000",
    first_name="Maximiliana",
    pet_name="Bartholomew",
    service_name="Full grooming and de-shedding",
    store_name="Paws & Whiskers Grooming Salon",
    store_phone="+33 1 40 00 00 00",
    store_timezone="Europe/Paris",
    starts_at=datetime(2026, 9, 30, 14, 30, tzinfo=UTC),  # a Wednesday in September: long names
    locale="en",
    store_email="salon@example.com",
)


def override_problems(locale: str, override: TemplateOverride) -> list[tuple[str, str]]:
    """(field, problem) for each field of an override that would not make a good reminder,
    rendered against SAMPLE_CONTEXT: unknown placeholders and malformed braces, a subject with a
    line break, an SMS over two segments, an empty field."""
    problems: list[tuple[str, str]] = []
    fields = {"emailSubject": override.email_subject, "emailBody": override.email_body, "sms": override.sms}
    for name, template in fields.items():
        if template is not None and not template.strip():
            problems.append((name, "must not be empty (leave the field out to use the default)"))
    if problems:
        return problems
    for name, template in fields.items():
        if template is None:
            continue
        alone = TemplateOverride(**{_FIELDS[name]: template})
        try:
            rendered = render_reminder(replace(SAMPLE_CONTEXT, locale=locale, override=alone))
        except TemplateError as error:
            problems.append((name, str(error)))
            continue
        if name == "emailSubject" and header_text(rendered.subject) != rendered.subject:
            problems.append((name, "would render with a line break (or another control character)"))
        if name == "sms":
            texts = LOCALES[resolve_locale(locale)]
            plain, time, contact = _values(SAMPLE_CONTEXT, texts)
            whole = render_template(template, {**plain, "time": time, "contact": contact}).strip()
            if sms_segments(whole) > MAX_SEGMENTS:
                problems.append(
                    (
                        name,
                        f"renders to {sms_segments(whole)} SMS segments for a long sample; at most "
                        f"{MAX_SEGMENTS} (306 GSM-7 characters, or 134 with characters outside GSM-7)",
                    )
                )
    return problems


_FIELDS = {"emailSubject": "email_subject", "emailBody": "email_body", "sms": "sms"}


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


_GSM7 = GSM7_BASIC | GSM7_EXTENSION


def _units(text: str) -> tuple[int, int, int]:
    """(units used, units per single message, units per part of a split message)."""
    if _GSM7.issuperset(text):
        return len(text) + sum(map(text.count, GSM7_EXTENSION)), 160, 153
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


def build_email(
    rendered: RenderedReminder, *, sender: str, recipient: str, message_id: str, reply_to: str | None = None
) -> EmailMessage:
    """The reminder as the email package builds it: the message ReminderEmails makes faster, and
    what the benchmark's raw sender sends."""
    message = compose(
        sender=sender, policy=POLICY, **_email_values(rendered, recipient, message_id, reply_to)
    )
    message["Content-Language"] = rendered.locale
    return message


class ReminderEmails:
    """The reminder emails of one sender, as bytes for SMTP: each locale's fixed headers (From,
    Content-Language) checked and encoded once, in a MessageTemplate made on its first message."""

    def __init__(self, sender: str) -> None:
        self.sender = sender
        self._templates: dict[str, MessageTemplate] = {}  # by locale: LOCALES' few keys

    def build(
        self, rendered: RenderedReminder, *, recipient: str, message_id: str, reply_to: str | None = None
    ) -> WireMessage:
        """Raises UnsendableMessage as build_email does."""
        template = self._templates.get(rendered.locale)
        if template is None:
            template = MessageTemplate(sender=self.sender, language=rendered.locale)
            self._templates[rendered.locale] = template
        return template.message(**_email_values(rendered, recipient, message_id, reply_to))


class _EmailValues(TypedDict):
    recipient: str
    subject: str
    message_id: str
    reply_to: str | None
    text: str
    html: str


def _email_values(
    rendered: RenderedReminder, recipient: str, message_id: str, store_email: str | None
) -> _EmailValues:
    # The Message-ID is identical on every attempt: a resend after a crash is recognisable (and
    # deduplicated by many MTAs). The store's address is the Reply-To, so a customer's reply
    # reaches the salon, not the no-reply sender; a malformed one is left out rather than
    # failing every reminder of the store.
    reply_to = store_email.strip() if store_email else None
    return {
        "recipient": recipient,
        "subject": rendered.subject,
        "message_id": message_id,
        "reply_to": reply_to if reply_to and deliverable_address(reply_to) else None,
        "text": rendered.text,
        "html": f'<!doctype html><html lang="{rendered.locale}"><body>{rendered.html}</body></html>',
    }


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


def reminder_message_id(appointment_id: UUID, starts_at: datetime, sender: str) -> str:
    """One Message-ID per appointment and start time, in the sender's domain, on every attempt: the
    reminder of a moved appointment is a new message (an MTA must not drop it as a duplicate).

    A name-based UUID of the two, so the header keeps a UUID's length and is not folded; the
    delivery record keeps it beside the appointment id."""
    key = uuid5(appointment_id, str(int(starts_at.timestamp())))
    return stable_message_id("reminder", key, sender)
