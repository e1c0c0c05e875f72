"""Reminder wording per locale: email subject, text and HTML bodies, SMS variants, date formats; and a
store's own overrides, with their placeholders and the safe way to render them."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from petcare.models.reminders import TemplateOverride as TemplateOverride  # stored per store and locale


@dataclass(frozen=True)
class LocaleTexts:
    days: tuple[str, ...]  # Monday first, as datetime.weekday() counts
    months: tuple[str, ...]  # January first
    date: str  # {day_name} {day} {month}
    when: str  # {date} {time} {zone}
    twelve_hour: bool
    subject: str
    text: str
    html: str
    contact: str  # the "call us" sentence, left out when the store has no phone
    # SMS wordings, longest first: the renderer takes the first that fits in two segments.
    sms: tuple[str, ...]


ENGLISH = LocaleTexts(
    days=("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    months=(
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
    date="{day_name}, {month} {day}",
    when="{date} at {time} ({zone})",
    twelve_hour=True,
    subject="Reminder: {pet}'s appointment at {store} on {date}",
    text=(
        "Hello {first_name},\n\nThis is a reminder that {pet} has an appointment for {service} "
        "at {store} on {when}.\n\n{contact}See you soon,\n{store}\n"
    ),
    html=(
        "<p>Hello {first_name},</p><p>This is a reminder that <strong>{pet}</strong> has an appointment "
        "for {service} at {store} on <strong>{when}</strong>.</p>"
        "<p>{contact}</p><p>See you soon,<br>{store}</p>"
    ),
    contact="If you need to reschedule or cancel, please call us at {store_phone}.",
    sms=(
        "Reminder: {pet} has an appointment for {service} at {store} on {when}. {contact}",
        "Reminder: {pet} has an appointment at {store} on {when}.",
        "{pet}: appointment {when}",
    ),
)

FRENCH = LocaleTexts(
    days=("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    months=(
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ),
    date="{day_name} {day} {month}",
    when="{date} à {time} ({zone})",
    twelve_hour=False,
    subject="Rappel : rendez-vous de {pet} chez {store} le {date}",
    text=(
        "Bonjour {first_name},\n\nNous vous rappelons que {pet} a rendez-vous pour {service} "
        "chez {store} le {when}.\n\n{contact}À bientôt,\n{store}\n"
    ),
    html=(
        "<p>Bonjour {first_name},</p><p>Nous vous rappelons que <strong>{pet}</strong> a rendez-vous "
        "pour {service} chez {store} le <strong>{when}</strong>.</p>"
        "<p>{contact}</p><p>À bientôt,<br>{store}</p>"
    ),
    contact="Pour modifier ou annuler, appelez-nous au {store_phone}.",
    sms=(
        "Rappel : {pet} a rendez-vous pour {service} chez {store} le {when}. {contact}",
        "Rappel : {pet} a rendez-vous chez {store} le {when}.",
        "{pet} : rendez-vous le {when}",
    ),
)

SPANISH = LocaleTexts(
    days=("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    months=(
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ),
    date="{day_name} {day} de {month}",
    when="{date} a las {time} ({zone})",
    twelve_hour=False,
    subject="Recordatorio: cita de {pet} en {store} el {date}",
    text=(
        "Hola, {first_name}:\n\nLe recordamos que {pet} tiene una cita de {service} en {store} "
        "el {when}.\n\n{contact}Hasta pronto,\n{store}\n"
    ),
    html=(
        "<p>Hola, {first_name}:</p><p>Le recordamos que <strong>{pet}</strong> tiene una cita de {service} "
        "en {store} el <strong>{when}</strong>.</p>"
        "<p>{contact}</p><p>Hasta pronto,<br>{store}</p>"
    ),
    contact="Si necesita cambiarla o cancelarla, llámenos al {store_phone}.",
    sms=(
        "Recordatorio: {pet} tiene una cita de {service} en {store} el {when}. {contact}",
        "Recordatorio: {pet} tiene una cita en {store} el {when}.",
        "{pet}: cita el {when}",
    ),
)

LOCALES: dict[str, LocaleTexts] = {"en": ENGLISH, "fr": FRENCH, "es": SPANISH}
DEFAULT_LOCALE = "en"


def resolve_locale(locale: str | None) -> str:
    """'fr-CA' and 'fr_FR' use French; anything without templates falls back to English."""
    language = (locale or "").strip().lower().replace("_", "-").split("-")[0]
    return language if language in LOCALES else DEFAULT_LOCALE


# --- A store's own words: per store and locale, each field optional (None: the default wording).

# The placeholders an override may use, documented in the API's GET and in the README. The
# defaults above use the same names.
PLACEHOLDERS: dict[str, str] = {
    "pet": "the pet's name",
    "first_name": "the customer's first name",
    "service": "the service booked",
    "store": "the store's name",
    "date": "the local date, in the customer's language (e.g. Friday, March 27)",
    "time": "the local time (e.g. 2:30 PM, or 14:30)",
    "when": "local date, time and zone (e.g. Friday, March 27 at 2:30 PM (CET))",
    "store_phone": "the store's phone number (empty when it has none)",
    "contact": "the 'call us at <store phone>' sentence in the customer's language (empty without a phone)",
}


class TemplateError(ValueError):
    """A template that cannot be rendered: malformed braces, an unknown placeholder, a format spec."""


def placeholders_in(template: str) -> list[str]:
    """The placeholders a template uses. Raises TemplateError for anything but `{name}` with a
    known name: no attribute or index access, no format spec or conversion, no positional `{}`."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise TemplateError(f"cannot be rendered: {error}") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            known = ", ".join(f"{{{known}}}" for known in PLACEHOLDERS)
            raise TemplateError(f"unknown placeholder {{{name}}} (known: {known})")
        if spec or conversion:
            raise TemplateError(f"placeholder {{{name}}} takes no format spec or conversion")
        names.append(name)
    return names


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Literal text and each placeholder's value, nothing else: never str.format on a stored
    template (which would allow `{pet.__class__}` and friends). Raises TemplateError."""
    placeholders_in(template)
    return "".join(
        literal + (values[name] if name is not None else "")
        for literal, name, _, _ in string.Formatter().parse(template)
    )
