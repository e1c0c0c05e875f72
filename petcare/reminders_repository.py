"""Reminder SQL the API shares with the worker: each store's own words (`reminder_templates`), the
delivery records as an operator reads them, and what a retry needs to know about one appointment.

The worker's own SQL (eligibility, claims, records) is activities/reminders/sql.py; it reads the
templates through `store_overrides` here, so both read them alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from petcare.db import Connection
from petcare.models.reminders import TemplateOverride

# (store id, locale) -> that store's own words for that locale.
Overrides = dict[tuple[UUID, str], TemplateOverride]

# --- Templates.

_OVERRIDES = """
    SELECT store_id, locale, email_subject, email_body, sms FROM reminder_templates
    WHERE store_id = ANY($1::uuid[])"""
_OVERRIDE = """
    SELECT email_subject, email_body, sms FROM reminder_templates WHERE store_id = $1 AND locale = $2"""
_PUT_OVERRIDE = """
    INSERT INTO reminder_templates (store_id, locale, email_subject, email_body, sms, updated_at)
    VALUES ($1, $2, $3, $4, $5, now())
    ON CONFLICT (store_id, locale) DO UPDATE SET
        email_subject = EXCLUDED.email_subject, email_body = EXCLUDED.email_body, sms = EXCLUDED.sms,
        updated_at = now()"""
_DELETE_OVERRIDE = "DELETE FROM reminder_templates WHERE store_id = $1 AND locale = $2"


def _override(row: asyncpg.Record) -> TemplateOverride:
    return TemplateOverride(email_subject=row["email_subject"], email_body=row["email_body"], sms=row["sms"])


async def store_overrides(connection: Connection, store_ids: Iterable[UUID]) -> Overrides:
    ids = list(store_ids)
    if not ids:
        return {}
    rows = await connection.fetch(_OVERRIDES, ids)
    return {(row["store_id"], row["locale"]): _override(row) for row in rows}


async def get_override(connection: Connection, store_id: UUID, locale: str) -> TemplateOverride | None:
    row = await connection.fetchrow(_OVERRIDE, store_id, locale)
    return None if row is None else _override(row)


async def put_override(
    connection: Connection, store_id: UUID, locale: str, override: TemplateOverride
) -> None:
    await connection.execute(
        _PUT_OVERRIDE, store_id, locale, override.email_subject, override.email_body, override.sms
    )


async def delete_override(connection: Connection, store_id: UUID, locale: str) -> bool:
    """True when there was an override to delete."""
    return str(await connection.execute(_DELETE_OVERRIDE, store_id, locale)) != "DELETE 0"


# --- Delivery records, newest change first, keyset paged on (updated_at, appointment_id, starts_at).

_DELIVERIES = """
    SELECT d.appointment_id, a.customer_id, d.starts_at, a.starts_at AS appointment_starts_at, d.channel,
           d.recipient, d.state, d.reason AS error, d.attempts, d.claimed_at, d.sent_at, d.updated_at
    FROM reminder_deliveries d
    JOIN appointments a ON a.id = d.appointment_id
    WHERE ($1::uuid IS NULL OR d.appointment_id = $1)
      AND ($2::uuid IS NULL OR a.customer_id = $2)
      AND ($3::text IS NULL OR d.state = $3)
      AND ($4::timestamptz IS NULL OR d.updated_at >= $4)
      AND ($5::timestamptz IS NULL OR (d.updated_at, d.appointment_id, d.starts_at) < ($5, $6::uuid, $7))
    ORDER BY d.updated_at DESC, d.appointment_id DESC, d.starts_at DESC
    LIMIT $8"""


async def deliveries(
    connection: Connection,
    *,
    appointment_id: UUID | None,
    customer_id: UUID | None,
    state: str | None,
    since: datetime | None,
    after: tuple[datetime, UUID, datetime | None] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest change first; `after` is the previous page's last (updated_at, appointment, start)."""
    position = after or (None, None, None)
    return await connection.fetch(_DELIVERIES, appointment_id, customer_id, state, since, *position, limit)


# --- A retry: the appointment, its customer's addresses and the record of its current start time.

# `reminder_sent_at` set without any reminder sent by this job is the main backend's (or an older
# system's) reminder: taken as covering the appointment. The claims (activities/reminders/sql.py)
# and the retry check read it alike.
REMINDED_ELSEWHERE = """(a.reminder_sent_at IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM reminder_deliveries s WHERE s.appointment_id = a.id AND s.state = 'sent'))"""


def start_against_now(lead: str, window: str) -> str:
    """The appointment's start against now(), as the claims and the retry check both decide on it:
    `started`, `too_soon` (inside the minimum lead, the parameter `lead`), `beyond` (past the
    window, the parameter `window`)."""
    return (
        f"a.starts_at <= now() AS started, a.starts_at < now() + {lead}::interval AS too_soon, "
        f"a.starts_at > now() + {window}::interval AS beyond"
    )


_RETRY_STATE = f"""
    SELECT a.id, a.status, a.starts_at, {start_against_now("$2", "$3")},
           c.consent_reminders, c.preferred_channel, c.email, c.phone,
           c.sms_opted_out_at IS NOT NULL AS sms_opted_out, {REMINDED_ELSEWHERE} AS reminder_sent,
           d.state AS delivery_state,
           EXISTS (SELECT 1 FROM reminder_deliveries o WHERE o.appointment_id = a.id) AS has_records
    FROM appointments a
    JOIN customers c ON c.id = a.customer_id
    LEFT JOIN reminder_deliveries d ON d.appointment_id = a.id AND d.starts_at = a.starts_at
    WHERE a.id = $1"""


async def retry_state(
    connection: Connection, appointment_id: UUID, *, lead: timedelta, window: timedelta
) -> asyncpg.Record | None:
    return await connection.fetchrow(_RETRY_STATE, appointment_id, lead, window)
