"""The reminder email: plain-text and HTML alternatives under a deterministic Message-ID."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

from activities.reminders.render import RenderedReminder


def build_email(rendered: RenderedReminder, *, sender: str, recipient: str, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    # Identical on every attempt: a resend after a crash is recognisable (and deduplicated by many MTAs).
    message["Message-ID"] = message_id
    message["Content-Language"] = rendered.locale
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text)
    message.add_alternative(
        f'<!doctype html><html lang="{rendered.locale}"><body>{rendered.html}</body></html>', subtype="html"
    )
    return message
