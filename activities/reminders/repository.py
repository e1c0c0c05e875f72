"""The reminder job's SQL: due pages, the per-appointment claim transaction, and delivery outcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from activities.reminders.planning import ClaimState, Decision, Route, choose_route, decide
from activities.reminders.render import ReminderContext
from petcare.models.reminders import PageCursor

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

_DETAILS = """
    SELECT a.id, a.starts_at, c.first_name, c.email, c.phone, c.locale, c.preferred_channel,
           p.name AS pet_name, s.name AS service_name,
           st.name AS store_name, st.phone AS store_phone, st.timezone AS store_timezone
"""
_DETAILS_JOINS = """
    JOIN pets p ON p.id = a.pet_id
    JOIN services s ON s.id = a.service_id
    JOIN stores st ON st.id = a.store_id
"""
_PREVIEW = f"{_DETAILS} {_DUE_FROM} {_DETAILS_JOINS} WHERE {_DUE_WHERE} ORDER BY a.starts_at, a.id"

# Locks in id order, so two runs claiming overlapping sets wait for each other instead of deadlocking.
_LOCK = "SELECT id FROM appointments WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"
# Read after the lock, in a new statement, so a delivery committed by a run we waited for is seen.
_CLAIM_READ = f"""{_DETAILS},
           a.status, a.reminder_sent_at IS NOT NULL AS reminder_sent, a.starts_at <= now() AS started,
           c.consent_reminders, d.state AS delivery_state, d.owner AS delivery_owner,
           d.channel AS delivery_channel,
           COALESCE(d.claimed_at < now() - $2::interval, false) AS claim_expired
    FROM appointments a
    JOIN customers c ON c.id = a.customer_id
    {_DETAILS_JOINS}
    LEFT JOIN reminder_deliveries d ON d.appointment_id = a.id
    WHERE a.id = ANY($1::uuid[])"""
_UPSERT_CLAIMED = """
    INSERT INTO reminder_deliveries
        (appointment_id, state, channel, recipient, message_id, owner, attempts, claimed_at, updated_at)
    SELECT id, 'claimed', channel, recipient, message_id, $5, 1, now(), now()
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS t (id, channel, recipient, message_id)
    ON CONFLICT (appointment_id) DO UPDATE SET
        state = 'claimed', channel = EXCLUDED.channel, recipient = EXCLUDED.recipient,
        message_id = EXCLUDED.message_id, owner = EXCLUDED.owner, reason = NULL,
        attempts = reminder_deliveries.attempts + 1, claimed_at = now(), updated_at = now()"""
_UPSERT_SKIPPED = """
    INSERT INTO reminder_deliveries (appointment_id, state, reason, owner, updated_at)
    SELECT id, 'skipped', reason, $3, now() FROM unnest($1::uuid[], $2::text[]) AS t (id, reason)
    ON CONFLICT (appointment_id) DO UPDATE SET
        state = 'skipped', reason = EXCLUDED.reason, owner = EXCLUDED.owner, updated_at = now()"""
# A provider's acceptance is a fact: recorded whoever holds the claim now.
_MARK_SENT = """
    WITH delivery AS (
        UPDATE reminder_deliveries
        SET state = 'sent', sent_at = now(), provider_id = $2, reason = NULL, updated_at = now()
        WHERE appointment_id = $1
        RETURNING appointment_id)
    UPDATE appointments SET reminder_sent_at = now()
    WHERE id IN (SELECT appointment_id FROM delivery) AND reminder_sent_at IS NULL"""
_MARK_FAILED = """
    UPDATE reminder_deliveries SET state = 'failed', reason = $2, updated_at = now()
    WHERE appointment_id = $1 AND state = 'claimed'"""


def message_id_for(appointment_id: UUID) -> str:
    """The same Message-ID for every attempt, so a resend after a crash can be recognised."""
    return f"<reminder-{appointment_id}@petcare>"


@dataclass(frozen=True)
class Claim:
    appointment_id: UUID
    decision: Decision
    context: ReminderContext | None = None
    route: Route | None = None
    skip_reason: str | None = None  # recorded on the delivery when skipped
    finished_state: str | None = None  # for "done_here": what the earlier attempt recorded
    finished_channel: str | None = None


def context_of(row: asyncpg.Record) -> ReminderContext:
    return ReminderContext(
        appointment_id=str(row["id"]),
        first_name=row["first_name"],
        pet_name=row["pet_name"],
        service_name=row["service_name"],
        store_name=row["store_name"],
        store_phone=row["store_phone"],
        store_timezone=row["store_timezone"],
        starts_at=row["starts_at"],
        locale=row["locale"],
    )


def route_of(row: asyncpg.Record) -> Route | None:
    return choose_route(row["preferred_channel"], row["email"], row["phone"])


class ReminderRepository:
    def __init__(self, pool: asyncpg.Pool, *, claim_lease: timedelta = timedelta(minutes=15)) -> None:
        self._pool = pool
        self._lease = claim_lease

    async def due_page(
        self, earliest: datetime, latest: datetime, after: PageCursor | None, limit: int
    ) -> list[asyncpg.Record]:
        if after is None:
            return await self._pool.fetch(_FIRST_PAGE, earliest, latest, limit)
        return await self._pool.fetch(
            _NEXT_PAGE, earliest, latest, limit, after.starts_at, after.appointment_id
        )

    async def due_details(self, earliest: datetime, latest: datetime) -> AsyncIterator[asyncpg.Record]:
        """Every due appointment with what rendering needs, streamed (the dry run counts them all)."""
        async with self._pool.acquire() as connection, connection.transaction(readonly=True):
            async for row in connection.cursor(_PREVIEW, earliest, latest, prefetch=500):
                yield row

    async def claim(self, appointment_ids: list[UUID], owner: str) -> list[Claim]:
        """Re-check everything under the appointments' row locks, then claim each or record a skip.

        One transaction for a small group: the check stays a fraction of a second ahead of the send.
        """
        claims: dict[UUID, Claim] = {}
        claimed: list[tuple[UUID, str, str, str]] = []
        skipped: list[tuple[UUID, str]] = []
        async with self._pool.acquire() as connection, connection.transaction():
            locked = [row["id"] for row in await connection.fetch(_LOCK, appointment_ids)]
            for row in await connection.fetch(_CLAIM_READ, locked, self._lease) if locked else []:
                claim = _decide(row, owner)
                claims[claim.appointment_id] = claim
                if claim.route is not None:
                    claimed.append(
                        (
                            claim.appointment_id,
                            claim.route.channel,
                            claim.route.address,
                            message_id_for(claim.appointment_id),
                        )
                    )
                elif claim.skip_reason is not None:
                    skipped.append((claim.appointment_id, claim.skip_reason))
            if claimed:
                await connection.execute(_UPSERT_CLAIMED, *map(list, zip(*claimed, strict=True)), owner)
            if skipped:
                await connection.execute(_UPSERT_SKIPPED, *map(list, zip(*skipped, strict=True)), owner)
        # An appointment deleted since the fetch has nothing left to remind.
        return [
            claims.get(appointment_id) or Claim(appointment_id, "not_due")
            for appointment_id in appointment_ids
        ]

    async def mark_sent(self, appointment_id: UUID, provider_id: str | None) -> None:
        await self._pool.execute(_MARK_SENT, appointment_id, provider_id)

    async def mark_failed(self, appointment_id: UUID, reason: str) -> None:
        await self._pool.execute(_MARK_FAILED, appointment_id, reason[:500])


def _decide(row: asyncpg.Record, owner: str) -> Claim:
    state = ClaimState(
        status=row["status"],
        started=row["started"],
        reminder_sent=row["reminder_sent"],
        consent=row["consent_reminders"],
        delivery_state=row["delivery_state"],
        delivery_owner=row["delivery_owner"],
        claim_expired=row["claim_expired"],
    )
    route = route_of(row)
    decision = decide(state, owner, route)
    if decision == "send":
        return Claim(row["id"], decision, context_of(row), route)
    skip_reason: str | None = None
    if decision in ("no_consent", "no_address"):
        skip_reason = decision
    elif decision == "not_due":
        skip_reason = "started" if row["started"] else row["status"]
    return Claim(
        row["id"],
        decision,
        skip_reason=skip_reason,
        finished_state=row["delivery_state"],
        finished_channel=row["delivery_channel"],
    )
