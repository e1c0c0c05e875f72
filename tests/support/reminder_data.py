"""Rows for the reminder tests and benchmark: stores, customers, pets and appointments."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import ClientSession
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr

from activities.reminders import ReminderActivities, build_gateway
from devstack.smtp_sink import SinkHandler
from petcare.config import Settings, SmsSettings
from petcare.mail import Mailer
from tests.support.api import poll
from tests.support.twilio import TwilioGatewayServer


def soon() -> datetime:
    """Well inside the default window and past its minimum lead."""
    return datetime.now(UTC) + timedelta(hours=3)


async def delivery_states(pool: asyncpg.Pool, detail: str = "channel") -> dict[UUID, tuple[str, str | None]]:
    """(state, channel or reason) of each delivery row, by appointment."""
    rows = await pool.fetch("SELECT appointment_id, state, channel, reason FROM reminder_deliveries")
    return {row["appointment_id"]: (row["state"], row[detail]) for row in rows}


async def add_store(
    pool: asyncpg.Pool, *, name: str = "Paws & Co", timezone: str = "UTC", phone: str | None = "+15550001111"
) -> UUID:
    store_id: UUID = await pool.fetchval(
        "INSERT INTO stores (name, timezone, phone) VALUES ($1, $2, $3) RETURNING id", name, timezone, phone
    )
    return store_id


async def add_appointment(
    pool: asyncpg.Pool,
    *,
    store_id: UUID,
    starts_at: datetime,
    email: str | None = "owner@example.com",
    phone: str | None = None,
    consent: bool = True,
    preferred_channel: str = "email",
    locale: str = "en",
    status: str = "scheduled",
    pet: str = "Rex",
    service: str = "Full grooming",
    first_name: str = "Alex",
) -> UUID:
    async with pool.acquire() as connection, connection.transaction():
        customer_id = await connection.fetchval(
            """INSERT INTO customers (first_name, last_name, email, phone, locale, consent_reminders,
                                      preferred_channel)
               VALUES ($1, 'Doe', $2, $3, $4, $5, $6) RETURNING id""",
            first_name,
            email,
            phone,
            locale,
            consent,
            preferred_channel,
        )
        pet_id = await connection.fetchval(
            "INSERT INTO pets (customer_id, name, species) VALUES ($1, $2, 'dog') RETURNING id",
            customer_id,
            pet,
        )
        service_id = await connection.fetchval(
            "INSERT INTO services (name, duration_minutes) VALUES ($1, 60) RETURNING id", service
        )
        appointment_id: UUID = await connection.fetchval(
            """INSERT INTO appointments (customer_id, pet_id, service_id, store_id, starts_at, status)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            customer_id,
            pet_id,
            service_id,
            store_id,
            starts_at,
            status,
        )
    return appointment_id


async def add_many_appointments(
    pool: asyncpg.Pool, *, store_id: UUID, count: int, first_at: datetime, spacing: timedelta, domain: str
) -> None:
    """`count` consenting email customers, one appointment each, in a few set-based statements."""
    tag = uuid.uuid4().hex[:8]
    async with pool.acquire() as connection, connection.transaction():
        service_id = await connection.fetchval(
            "INSERT INTO services (name, duration_minutes) VALUES ('Bath & brush', 45) RETURNING id"
        )
        await connection.execute(
            """
            WITH customer AS (
                INSERT INTO customers (first_name, last_name, email, consent_reminders)
                SELECT 'Owner' || n, $2, 'owner' || n || '@' || $3, true FROM generate_series(1, $1) AS n
                RETURNING id, email),
            pet AS (
                INSERT INTO pets (customer_id, name, species)
                SELECT id, 'Pet ' || split_part(email, '@', 1), 'dog' FROM customer
                RETURNING id, customer_id)
            INSERT INTO appointments (customer_id, pet_id, service_id, store_id, starts_at)
            SELECT pet.customer_id, pet.id, $4, $5,
                   $6::timestamptz + $7::interval * (row_number() OVER (ORDER BY pet.id) - 1)
            FROM pet
            """,
            count,
            tag,
            domain,
            service_id,
            store_id,
            first_at,
            spacing,
        )


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
    """A real SMTP sink that takes `delay` seconds per message, so a run lasts long enough to disturb."""

    delay: float = 0.0

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
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


async def wait_until(condition: Callable[[], bool], *, timeout: float = 30.0) -> None:
    """Polls a plain condition (what a sink received, say) every 20 ms."""

    async def check() -> bool:
        return condition()

    await poll(check, timeout=timeout, every=0.02)
