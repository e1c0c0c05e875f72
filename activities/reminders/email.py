"""The reminder email: plain-text and HTML alternatives under a deterministic Message-ID."""

from __future__ import annotations

import email.policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from uuid import UUID

from activities.reminders.render import RenderedReminder
from petcare.mail import compose, stable_message_id


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
