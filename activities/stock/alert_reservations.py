"""SQL of stock alert emails: reserving a store's pending alerts for one run, then recording the send.

An alert is pending while open and not yet emailed (`notified_at` NULL). A run reserves the
pending alerts no other live run holds (`notified_by` = the run, until `reserved_until`), emails
them, then sets `notified_at`. A run whose email is refused releases its reservation; one that
stops retrying lets it lapse. Either way the next run lists those alerts again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import asyncpg

from petcare.db import Connection
from petcare.models.stock import AlertStatus


@dataclass(frozen=True)
class ReservedAlert:
    id: UUID
    kind: str
    sku: str
    name: str
    recorded: int | None
    computed: int
    threshold: int | None


RESERVE = """
WITH reserved AS (
    UPDATE stock_alerts a
       SET notified_by = $1, reserved_until = now() + $3::interval
     WHERE a.store_id = $2 AND a.resolved_at IS NULL AND a.notified_at IS NULL
       AND (a.notified_by IS NULL OR a.notified_by = $1 OR a.reserved_until < now())
    RETURNING a.id, a.product_id, a.kind, a.recorded, a.computed, a.threshold
)
SELECT r.id, r.kind, r.recorded, r.computed, r.threshold, p.sku, p.name
  FROM reserved r JOIN products p ON p.id = r.product_id
 ORDER BY p.sku, r.kind
"""

# A retry of the same run: exactly the alerts its first attempt reserved and has not yet sent.
RESERVED = """
SELECT a.id, a.kind, a.recorded, a.computed, a.threshold, p.sku, p.name
  FROM stock_alerts a JOIN products p ON p.id = a.product_id
 WHERE a.notified_by = $1 AND a.notified_at IS NULL
 ORDER BY p.sku, a.kind
"""

PENDING_COUNT = """
SELECT count(*) FROM stock_alerts WHERE store_id = $1 AND resolved_at IS NULL AND notified_at IS NULL
"""

SET_STATUS = """
UPDATE stock_reconciliations
   SET alerts_diffed_at = coalesce(alerts_diffed_at, now()), alert_status = $2,
       alert_message_id = coalesce($3, alert_message_id), alert_recipient = coalesce($4, alert_recipient),
       alert_error = $5
 WHERE id = $1
"""

MARK_SENT = """
WITH notified AS (
    UPDATE stock_alerts SET notified_at = now(), reserved_until = NULL
     WHERE id = ANY($2::uuid[]) AND notified_by = $1 AND notified_at IS NULL
)
UPDATE stock_reconciliations SET alert_status = 'sent', alert_sent_at = now(), alert_error = NULL
 WHERE id = $1
"""

RELEASE = """
WITH released AS (
    UPDATE stock_alerts SET notified_by = NULL, reserved_until = NULL
     WHERE notified_by = $1 AND notified_at IS NULL
)
UPDATE stock_reconciliations SET alert_status = $2, alert_error = $3 WHERE id = $1
"""


async def reserve(
    connection: Connection, reconciliation_id: UUID, store_id: UUID, lease: timedelta
) -> list[ReservedAlert]:
    """The store's pending alerts not held by another live run, now held by this one."""
    rows = await connection.fetch(RESERVE, reconciliation_id, store_id, lease)
    return [ReservedAlert(**dict(row)) for row in rows]


async def reserved(connection: Connection, reconciliation_id: UUID) -> list[ReservedAlert]:
    rows = await connection.fetch(RESERVED, reconciliation_id)
    return [ReservedAlert(**dict(row)) for row in rows]


async def pending_count(connection: Connection, store_id: UUID) -> int:
    return int(await connection.fetchval(PENDING_COUNT, store_id))


async def set_status(
    connection: Connection,
    reconciliation_id: UUID,
    status: AlertStatus,
    *,
    message_id: str | None = None,
    recipient: str | None = None,
) -> None:
    await connection.execute(SET_STATUS, reconciliation_id, status, message_id, recipient, None)


async def mark_sent(pool: asyncpg.Pool, reconciliation_id: UUID, alert_ids: list[UUID]) -> None:
    await pool.execute(MARK_SENT, reconciliation_id, alert_ids)


async def release(pool: asyncpg.Pool, reconciliation_id: UUID, status: AlertStatus, error: str) -> None:
    """The email will not go out in this run: its alerts are free for the next one."""
    await pool.execute(RELEASE, reconciliation_id, status, error)
