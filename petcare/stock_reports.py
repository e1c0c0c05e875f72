"""Read-only SQL of persisted stock reconciliation reports: the API reads them without activity code."""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

import asyncpg

from petcare.db import Connection

BY_ID = """
SELECT r.id, r.store_id, r.business_date, r.trigger, r.workflow_id, r.workflow_run_id, r.started_at,
       r.finished_at, r.products_checked, r.discrepancy_count, r.low_stock_count, r.alert_status,
       r.alert_sent_at
  FROM stock_reconciliations r
 WHERE r.id = $1
"""

# Newest first; with $2 only each store's latest one. The same columns as BY_ID.
RECENT = """
SELECT r.id, r.store_id, r.business_date, r.trigger, r.workflow_id, r.workflow_run_id, r.started_at,
       r.finished_at, r.products_checked, r.discrepancy_count, r.low_stock_count, r.alert_status,
       r.alert_sent_at
  FROM stock_reconciliations r
 WHERE ($1::uuid IS NULL OR r.store_id = $1)
   AND (NOT $2 OR r.id IN (SELECT DISTINCT ON (l.store_id) l.id
                             FROM stock_reconciliations l
                            WHERE $1::uuid IS NULL OR l.store_id = $1
                            ORDER BY l.store_id, l.finished_at DESC))
 ORDER BY r.finished_at DESC, r.id
 LIMIT $3
"""

LINES = """
SELECT reconciliation_id, product_id, sku, name, recorded, computed, computed - recorded AS difference,
       threshold, discrepancy, low_stock
  FROM stock_reconciliation_lines
 WHERE reconciliation_id = ANY($1::uuid[])
 ORDER BY sku
"""

STORE_EXISTS = "SELECT EXISTS (SELECT 1 FROM stores WHERE id = $1)"


async def report(connection: Connection, reconciliation_id: UUID) -> dict[str, object] | None:
    row = await connection.fetchrow(BY_ID, reconciliation_id)
    if row is None:
        return None
    return (await _with_lines(connection, [row]))[0]


async def recent_reports(
    connection: Connection, store_id: UUID | None, *, latest_only: bool, limit: int
) -> list[dict[str, object]]:
    rows = await connection.fetch(RECENT, store_id, latest_only, limit)
    return await _with_lines(connection, rows)


async def store_exists(connection: Connection, store_id: UUID) -> bool:
    return bool(await connection.fetchval(STORE_EXISTS, store_id))


async def _with_lines(connection: Connection, rows: list[asyncpg.Record]) -> list[dict[str, object]]:
    """Each report with its flagged lines split into discrepancies and low-stock items."""
    lines = await connection.fetch(LINES, [row["id"] for row in rows])
    by_report: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
    for line in lines:
        by_report[line["reconciliation_id"]].append(line)
    reports = []
    for row in rows:
        flagged = by_report[row["id"]]
        reports.append(
            {
                **dict(row),
                "discrepancies": [dict(line) for line in flagged if line["discrepancy"]],
                "low_stock": [dict(line) for line in flagged if line["low_stock"]],
            }
        )
    return reports
