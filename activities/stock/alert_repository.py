"""SQL of stock alerts: diffing a report against open alerts, and recording what was emailed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from uuid import UUID

import asyncpg

from petcare.db import Connection
from petcare.models.stock import AlertStatus


@dataclass(frozen=True)
class RunForAlerts:
    id: UUID
    store_id: UUID
    store_name: str
    store_email: str | None
    business_date: date
    alert_status: AlertStatus
    diffed: bool
    superseded: bool  # a later reconciliation of the store already diffed its alerts
    message_id: str | None


@dataclass(frozen=True)
class PendingAlert:
    id: UUID
    kind: str
    sku: str
    name: str
    recorded: int | None
    computed: int
    threshold: int | None


LOCK_RUN = """
SELECT r.id, r.store_id, s.name AS store_name, s.email AS store_email, r.business_date,
       r.alert_status, r.alerts_diffed_at IS NOT NULL AS diffed, r.alert_message_id,
       EXISTS (SELECT 1 FROM stock_reconciliations later
                WHERE later.store_id = r.store_id AND later.alerts_diffed_at IS NOT NULL
                  AND later.finished_at > r.finished_at) AS superseded
  FROM stock_reconciliations r JOIN stores s ON s.id = r.store_id
 WHERE r.id = $1
   FOR UPDATE OF r
"""

# What this report flags, one row per (product, kind) with the numbers that kind is about.
_CURRENT = """
WITH current_flags AS (
    SELECT product_id, 'discrepancy'::text AS kind, recorded, computed, NULL::integer AS threshold
      FROM stock_reconciliation_lines WHERE reconciliation_id = $1 AND discrepancy
    UNION ALL
    SELECT product_id, 'low_stock', NULL, computed, threshold
      FROM stock_reconciliation_lines WHERE reconciliation_id = $1 AND low_stock
)
"""

# Open alerts no longer flagged with the same numbers close: recovered, or changed (a new alert
# with the new numbers is opened by OPEN_NEW right after, in the same transaction).
RESOLVE_STALE = (
    _CURRENT
    + """
UPDATE stock_alerts a
   SET resolved_at = now(), resolved_by = $1,
       resolution = CASE WHEN EXISTS (SELECT 1 FROM current_flags c
                                       WHERE c.product_id = a.product_id AND c.kind = a.kind)
                         THEN 'changed' ELSE 'recovered' END
 WHERE a.store_id = $2 AND a.resolved_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM current_flags c
                    WHERE c.product_id = a.product_id AND c.kind = a.kind
                      AND c.recorded IS NOT DISTINCT FROM a.recorded AND c.computed = a.computed
                      AND c.threshold IS NOT DISTINCT FROM a.threshold)
"""
)

OPEN_NEW = (
    _CURRENT
    + """
INSERT INTO stock_alerts (store_id, product_id, kind, recorded, computed, threshold, opened_by)
SELECT $2, c.product_id, c.kind, c.recorded, c.computed, c.threshold, $1
  FROM current_flags c
 WHERE NOT EXISTS (SELECT 1 FROM stock_alerts a
                    WHERE a.store_id = $2 AND a.product_id = c.product_id AND a.kind = c.kind
                      AND a.resolved_at IS NULL)
"""
)

# Open alerts never confirmed as emailed, this run's and any an earlier run failed to send.
PENDING = """
SELECT a.id, a.kind, a.recorded, a.computed, a.threshold, p.sku, p.name
  FROM stock_alerts a JOIN products p ON p.id = a.product_id
 WHERE a.store_id = $1 AND a.resolved_at IS NULL AND a.notified_at IS NULL
 ORDER BY p.sku, a.kind
"""

COUNTS = """
SELECT (SELECT count(*) FROM stock_alerts WHERE opened_by = $1) AS opened,
       (SELECT count(*) FROM stock_alerts WHERE resolved_by = $1 AND resolution = 'recovered') AS recovered
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
    UPDATE stock_alerts SET notified_at = now(), notified_by = $1
     WHERE id = ANY($2::uuid[]) AND notified_at IS NULL
)
UPDATE stock_reconciliations SET alert_status = 'sent', alert_sent_at = now(), alert_error = NULL
 WHERE id = $1
"""


async def lock_run(connection: Connection, reconciliation_id: UUID) -> RunForAlerts | None:
    row = await connection.fetchrow(LOCK_RUN, reconciliation_id)
    if row is None:
        return None
    # Serialise alert diffs per store: two runs of one store never open the same alert twice.
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('stock-alerts:' || $1::uuid, 0))", row["store_id"]
    )
    return RunForAlerts(
        **{key: row[key] for key in ("id", "store_id", "store_name", "store_email", "business_date")},
        alert_status=row["alert_status"],
        diffed=row["diffed"],
        superseded=row["superseded"],
        message_id=row["alert_message_id"],
    )


async def diff_alerts(connection: Connection, run: RunForAlerts) -> None:
    await connection.execute(RESOLVE_STALE, run.id, run.store_id)
    await connection.execute(OPEN_NEW, run.id, run.store_id)


async def pending_alerts(connection: Connection, store_id: UUID) -> list[PendingAlert]:
    rows = await connection.fetch(PENDING, store_id)
    return [PendingAlert(**dict(row)) for row in rows]


async def counts(connection: Connection, reconciliation_id: UUID) -> tuple[int, int]:
    row = await connection.fetchrow(COUNTS, reconciliation_id)
    assert row is not None
    return row["opened"], row["recovered"]


async def set_status(
    connection: Connection | asyncpg.Pool,
    reconciliation_id: UUID,
    status: AlertStatus,
    *,
    message_id: str | None = None,
    recipient: str | None = None,
    error: str | None = None,
) -> None:
    await connection.execute(SET_STATUS, reconciliation_id, status, message_id, recipient, error)


async def mark_sent(pool: asyncpg.Pool, reconciliation_id: UUID, alert_ids: list[UUID]) -> None:
    await pool.execute(MARK_SENT, reconciliation_id, alert_ids)
