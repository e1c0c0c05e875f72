"""Which appointments are due: keyset pages for a run, and the dry run's counts and first rows."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from activities.reminders.details import DETAILS, DETAILS_JOINS
from petcare.models.reminders import PageCursor, PlannedCounts

# Eligible: active, not reminded, consenting, starting inside [$1, $2], and not finished by this job.
_DUE_FROM = """
    FROM appointments a
    JOIN customers c ON c.id = a.customer_id"""
_DUE_WHERE = """
    a.status IN ('scheduled', 'confirmed')
    AND a.reminder_sent_at IS NULL
    AND c.consent_reminders
    AND a.starts_at >= $1 AND a.starts_at <= $2
    AND NOT EXISTS (
        SELECT 1 FROM reminder_deliveries d
        WHERE d.appointment_id = a.id AND d.state IN ('sent', 'failed'))"""
_FIRST_PAGE = f"SELECT a.id, a.starts_at {_DUE_FROM} WHERE {_DUE_WHERE} ORDER BY a.starts_at, a.id LIMIT $3"
# The plain `>=` lets the starts_at index bound the scan; the row comparison does the exact keyset.
_NEXT_PAGE = f"""SELECT a.id, a.starts_at {_DUE_FROM} WHERE {_DUE_WHERE}
    AND a.starts_at >= $4 AND (a.starts_at, a.id) > ($4, $5::uuid)
    ORDER BY a.starts_at, a.id LIMIT $3"""

# The channel choose_route() picks (preferred if its address is there, else the other), in SQL.
# An address is trimmed of what Python's str.strip() removes (every character with isspace()),
# so an address of only, say, no-break spaces counts as missing here as it does when sending.
_STRIPPED = "".join(char for char in map(chr, range(0x3001)) if char.isspace())  # none above U+3000
_EMAIL = f"NULLIF(btrim(c.email, '{_STRIPPED}'), '')"
_PHONE = f"NULLIF(btrim(c.phone, '{_STRIPPED}'), '')"
_CHANNEL = f"""CASE
    WHEN c.preferred_channel = 'sms' AND {_PHONE} IS NOT NULL THEN 'sms'
    WHEN {_EMAIL} IS NOT NULL THEN 'email'
    WHEN {_PHONE} IS NOT NULL THEN 'sms' END"""
_PLANNED = f"""
    SELECT count(*) AS due,
           count(*) FILTER (WHERE channel = 'email') AS email,
           count(*) FILTER (WHERE channel = 'sms') AS sms,
           count(*) FILTER (WHERE channel IS NULL) AS skipped_no_address
    FROM (SELECT {_CHANNEL} AS channel {_DUE_FROM} WHERE {_DUE_WHERE}) AS routed"""
# The first rows that would be sent (with an address), in run order; LIMIT NULL is every row.
_DETAILED = f"""{DETAILS} {_DUE_FROM} {DETAILS_JOINS}
    WHERE {_DUE_WHERE} AND {_CHANNEL} IS NOT NULL
    ORDER BY a.starts_at, a.id LIMIT $3"""


class DueAppointments:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def page(
        self, earliest: datetime, latest: datetime, after: PageCursor | None, limit: int
    ) -> list[asyncpg.Record]:
        if after is None:
            return await self._pool.fetch(_FIRST_PAGE, earliest, latest, limit)
        return await self._pool.fetch(
            _NEXT_PAGE, earliest, latest, limit, after.starts_at, after.appointment_id
        )

    async def plan(
        self, earliest: datetime, latest: datetime, limit: int | None
    ) -> tuple[PlannedCounts, list[asyncpg.Record]]:
        """Counts by channel over every due appointment (one aggregate), and the first `limit` rows
        to render, from one snapshot so the two agree."""
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            planned = await connection.fetchrow(_PLANNED, earliest, latest)
            assert planned is not None  # an aggregate without GROUP BY answers exactly one row
            due, email, sms, no_address = planned
            rows = await connection.fetch(_DETAILED, earliest, latest, limit)
        counts = PlannedCounts(due=due, email=email, sms=sms, skipped_no_address=no_address)
        return counts, rows
