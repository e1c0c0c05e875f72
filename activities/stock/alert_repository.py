"""SQL of stock alerts: a store's alert lock, and diffing a report against the open alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from uuid import UUID

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
    recipient: str | None  # who the alert email went (or is going) to, once decided


# Serialises alert work per store (two runs never open the same alert twice, nor diff an older
# report over a newer one). Taken before anything about the run is read.
LOCK_STORE = """
SELECT pg_advisory_xact_lock(hashtextextended('stock-alerts:' || store_id, 0))
  FROM stock_reconciliations WHERE id = $1
"""

READ_RUN = """
SELECT r.id, r.store_id, s.name AS store_name, s.email AS store_email, r.business_date,
       r.alert_status, r.alerts_diffed_at IS NOT NULL AS diffed, r.alert_message_id AS message_id,
       r.alert_recipient AS recipient,
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

COUNTS = """
SELECT count(*) FILTER (WHERE opened_by = $1) AS opened,
       count(*) FILTER (WHERE resolved_by = $1 AND resolution = 'recovered') AS recovered
  FROM stock_alerts WHERE opened_by = $1 OR resolved_by = $1
"""


async def lock_run(connection: Connection, reconciliation_id: UUID) -> RunForAlerts | None:
    """Take the store's alert lock, then read the run: what it sees cannot change until commit."""
    if await connection.fetchrow(LOCK_STORE, reconciliation_id) is None:
        return None
    row = await connection.fetchrow(READ_RUN, reconciliation_id)
    return None if row is None else RunForAlerts(**dict(row))


async def diff_alerts(connection: Connection, run: RunForAlerts) -> None:
    await connection.execute(RESOLVE_STALE, run.id, run.store_id)
    await connection.execute(OPEN_NEW, run.id, run.store_id)


async def counts(connection: Connection, reconciliation_id: UUID) -> tuple[int, int]:
    """(alerts opened, alerts recovered) by this reconciliation."""
    row = await connection.fetchrow(COUNTS, reconciliation_id)
    assert row is not None  # an aggregate without GROUP BY answers exactly one row
    return row["opened"], row["recovered"]
