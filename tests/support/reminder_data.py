"""Rows for the reminder tests and benchmark: stores, customers, pets and appointments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import ClientSession
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr

from activities.reminders import ReminderActivities
from devstack.smtp_sink import SinkHandler
from petcare.config import Settings, SmsSettings
from petcare.mail import Mailer
from petcare.sms import build_gateway
from tests.support.twilio import TwilioGatewayServer


def soon() -> datetime:
    """Well inside the default window and past its minimum lead."""
    return datetime.now(UTC) + timedelta(hours=3)


async def delivery_states(pool: asyncpg.Pool, detail: str = "channel") -> dict[UUID, tuple[str, str | None]]:
    """(state, channel or reason) of each delivery row, by appointment."""
    rows = await pool.fetch("SELECT appointment_id, state, channel, reason FROM reminder_deliveries")
    return {row["appointment_id"]: (row["state"], row[detail]) for row in rows}


@asynccontextmanager
async def reminder_activities(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    smtp_port: int,
    twilio: TwilioGatewayServer | None = None,
    **reminders: Any,
) -> AsyncIterator[ReminderActivities]:
    """The real activity object, pointed at the test's SMTP sink and Twilio-compatible gateway."""
    adjusted = reminder_settings(settings, smtp_port=smtp_port, twilio=twilio, **reminders)
    async with reminder_mailer(adjusted) as mailer, ClientSession() as http:
        yield ReminderActivities(pool, mailer, build_gateway(http, adjusted.sms), adjusted)


def reminder_mailer(settings: Settings) -> Mailer:
    """Built as worker_main builds it: as many SMTP sessions as the reminder setting allows."""
    return Mailer(settings.smtp, max_connections=settings.reminders.smtp_concurrency)


def reminder_settings(
    settings: Settings, *, smtp_port: int, twilio: TwilioGatewayServer | None = None, **reminders: Any
) -> Settings:
    sms = SmsSettings(provider="log")
    if twilio is not None:
        sms = SmsSettings(
            provider="twilio",
            base_url=twilio.base_url,
            account_sid=twilio.account_sid,
            auth_token=SecretStr(twilio.auth_token),
            from_number="+15550009999",
            timeout_seconds=reminders.pop("sms_timeout_seconds", 5.0),
        )
    return settings.model_copy(
        update={
            "smtp": settings.smtp.model_copy(update={"port": smtp_port, "timeout_seconds": 5.0}),
            "sms": sms,
            "reminders": settings.reminders.model_copy(update=reminders),
        }
    )


@dataclass
class SlowSinkHandler(SinkHandler):
    """A real SMTP sink that takes `delay` seconds per message (only for the `slow` recipients, when
    given), so a run lasts long enough to disturb."""

    delay: float = 0.0
    slow: frozenset[str] = frozenset()

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if not self.slow or self.slow & set(envelope.rcpt_tos):
            await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@dataclass
class FullMailboxHandler(SinkHandler):
    """A real SMTP sink whose `full` mailboxes refuse RCPT TO for now with `answer` (a full mailbox,
    by default); the other recipients, in the same session, are taken as usual."""

    full: set[str] = field(default_factory=set)
    answer: str = "452 4.2.2 mailbox full, try again later"

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.full:
            return self.answer
        return await super().handle_RCPT(server, session, envelope, address, options)
