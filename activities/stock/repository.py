"""SQL of the reconciliation itself: which stores are due, and the set-based per-store report."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import asyncpg
from temporalio.exceptions import ApplicationError

from petcare.db import Connection
from petcare.models.stock import ReconciliationSummary, StoreTarget

# One page of stores in id order (a run's share of a chain), each with its latest scheduled day.
STORES_PAGE = """
SELECT s.id, s.timezone,
       (SELECT max(r.business_date) FROM stock_reconciliations r
         WHERE r.store_id = s.id AND r.trigger = 'schedule') AS last_scheduled
  FROM stores s
 WHERE ($1::uuid IS NULL OR s.id = $1) AND ($2::uuid IS NULL OR s.id > $2)
 ORDER BY s.id
 LIMIT $3
"""

# ON CONFLICT covers both keys: a retry of this run (workflow run, store) and a second
# scheduled run for the same store and local day. The caller tells them apart afterwards.
INSERT_RUN = """
INSERT INTO stock_reconciliations
       (store_id, business_date, trigger, workflow_id, workflow_run_id, started_at, finished_at,
        products_checked, discrepancy_count, low_stock_count)
VALUES ($1, $2, $3, $4, $5, now(), now(), 0, 0, 0)
ON CONFLICT DO NOTHING
RETURNING id
"""

FIND_RUN = """
SELECT id, products_checked, discrepancy_count, low_stock_count
  FROM stock_reconciliations WHERE workflow_run_id = $1 AND store_id = $2
"""

# The computed stock of every product of the store in one aggregate (LEFT JOIN: a product
# without movements computes 0); only flagged products are stored as lines.
COMPUTE_AND_STORE = """
WITH computed AS MATERIALIZED (
    SELECT p.id, p.sku, p.name, p.stock_quantity AS recorded, p.low_stock_threshold AS threshold,
           COALESCE(sum(m.quantity), 0) AS computed
      FROM products p
      LEFT JOIN stock_movements m ON m.product_id = p.id
     WHERE p.store_id = $2
     GROUP BY p.id
), flagged AS (
    INSERT INTO stock_reconciliation_lines
           (reconciliation_id, product_id, sku, name, recorded, computed, threshold, discrepancy, low_stock)
    SELECT $1, id, sku, name, recorded, computed, threshold, computed <> recorded, computed <= threshold
      FROM computed
     WHERE computed <> recorded OR computed <= threshold
    RETURNING discrepancy, low_stock
)
UPDATE stock_reconciliations
   SET products_checked = (SELECT count(*) FROM computed),
       discrepancy_count = (SELECT count(*) FROM flagged WHERE discrepancy),
       low_stock_count = (SELECT count(*) FROM flagged WHERE low_stock),
       finished_at = clock_timestamp()
 WHERE id = $1
RETURNING id, products_checked, discrepancy_count, low_stock_count
"""


async def stores_page(
    connection: Connection, store_id: UUID | None, after: UUID | None, limit: int
) -> list[tuple[UUID, str, date | None]]:
    rows = await connection.fetch(STORES_PAGE, store_id, after, limit)
    return [(row["id"], row["timezone"], row["last_scheduled"]) for row in rows]


def _summary(row: asyncpg.Record) -> ReconciliationSummary:
    return ReconciliationSummary(
        reconciliation_id=row["id"],
        products_checked=row["products_checked"],
        discrepancies=row["discrepancy_count"],
        low_stock=row["low_stock_count"],
    )


async def reconcile(
    pool: asyncpg.Pool,
    target: StoreTarget,
    workflow_id: str,
    workflow_run_id: str,
    *,
    aggregate_timeout: float,
) -> ReconciliationSummary:
    """Compute and persist one store's report in one transaction; a retry returns the first one.

    `workflow_id` / `workflow_run_id` name the per-store child workflow execution making it. The
    aggregate may run `aggregate_timeout` seconds: a large store's takes far longer than the
    pool's command timeout, which is sized for short statements.
    """
    async with pool.acquire() as connection, connection.transaction():
        run_id = await connection.fetchval(
            INSERT_RUN,
            target.store_id,
            target.business_date,
            target.trigger,
            workflow_id,
            workflow_run_id,
        )
        if run_id is None:
            existing = await connection.fetchrow(FIND_RUN, workflow_run_id, target.store_id)
            if existing is None:  # another scheduled run already reconciled this local day
                return ReconciliationSummary(reconciliation_id=None)
            return _summary(existing)
        try:
            row = await connection.fetchrow(
                COMPUTE_AND_STORE, run_id, target.store_id, timeout=aggregate_timeout
            )
        except TimeoutError:
            # asyncpg has cancelled the statement; the transaction rolls back. Retryable: the next
            # attempt may find a quieter database, and the operator learns which budget to raise.
            raise ApplicationError(
                f"stock aggregate of store {target.store_id} ran past its statement timeout of "
                f"{aggregate_timeout:g} s (90 % of the reconcile activity's attempt budget)",
                type="StatementTimeout",
            ) from None
        if row is None:  # the row inserted above, in this transaction: only a broken database loses it
            raise ApplicationError(
                f"reconciliation {run_id} vanished inside its own transaction", type="ReconciliationLost"
            )
        return _summary(row)
