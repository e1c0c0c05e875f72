"""Record SQL: what a provider did with a claimed reminder (sent, or refused for good)."""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

import asyncpg

from petcare.db import is_transient

log = logging.getLogger(__name__)

# A provider's acceptance is a fact: recorded whoever holds the claim now. The appointment is
# locked first (an InitPlan runs before the scan), the order the claim transaction takes its
# locks in, so a claim by an overlapping attempt and this record never deadlock.
_MARK_SENT = """
    WITH locked AS (SELECT id FROM appointments WHERE id = $1 FOR UPDATE),
    delivery AS (
        UPDATE reminder_deliveries
        SET state = 'sent', sent_at = now(), provider_id = $2, reason = NULL, updated_at = now()
        WHERE appointment_id = (SELECT id FROM locked)
        RETURNING appointment_id)
    UPDATE appointments SET reminder_sent_at = now()
    WHERE id IN (SELECT appointment_id FROM delivery) AND reminder_sent_at IS NULL"""
_MARK_FAILED = """
    UPDATE reminder_deliveries SET state = 'failed', reason = $2, updated_at = now()
    WHERE appointment_id = $1 AND state = 'claimed'"""

# Pauses between local retries of the "sent" record: about 4 s in all.
RECORD_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)


class DeliveryRecords:
    def __init__(self, pool: asyncpg.Pool, *, retry_delays: tuple[float, ...] = RECORD_RETRY_DELAYS) -> None:
        self._pool = pool
        self._retry_delays = retry_delays

    async def mark_sent(self, appointment_id: UUID, provider_id: str | None) -> None:
        """Retried here a few times: the message is out, and failing the activity now would send
        it again on the retry, where a short database blip is better simply waited out."""
        for delay in (*self._retry_delays, None):
            try:
                await self._pool.execute(_MARK_SENT, appointment_id, provider_id)
                return
            except Exception as error:
                if delay is None or not is_transient(error):
                    raise
                log.warning(
                    "recording the sent reminder of %s failed (%s), again in %.2f s",
                    appointment_id,
                    type(error).__name__,
                    delay,
                )
                await asyncio.sleep(delay)

    async def mark_failed(self, appointment_id: UUID, reason: str) -> None:
        await self._pool.execute(_MARK_FAILED, appointment_id, reason[:500])
