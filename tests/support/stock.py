"""Hand-made stores, products and movements for the stock reconciliation tests."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime
from uuid import UUID

import asyncpg
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.stock import StockActivities
from petcare.jobs import STOCK_RECONCILIATION
from petcare.models.stock import (
    AlertOutcome,
    AlertRequest,
    ReconcileRequest,
    ReconciliationSummary,
    StockReconciliationInput,
    StockReconciliationResult,
    StoreTarget,
)
from workflows.stock import RECONCILE_ATTEMPT

FROM_ADDRESS = "Petcare Stock <stock@petcare.test>"


async def add_product(
    pool: asyncpg.Pool,
    store_id: UUID,
    sku: str,
    *,
    recorded: int,
    threshold: int = 0,
    movements: tuple[int, ...] = (),
) -> UUID:
    product_id: UUID = await pool.fetchval(
        """INSERT INTO products (store_id, sku, name, stock_quantity, low_stock_threshold)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        store_id,
        sku,
        f"Product {sku}",
        recorded,
        threshold,
    )
    await move(pool, product_id, *movements)
    return product_id


async def move(pool: asyncpg.Pool, product_id: UUID, *quantities: int) -> None:
    await pool.executemany(
        "INSERT INTO stock_movements (product_id, quantity, kind) VALUES ($1, $2, 'adjustment')",
        [(product_id, quantity) for quantity in quantities],
    )


async def set_recorded(pool: asyncpg.Pool, product_id: UUID, recorded: int) -> None:
    await pool.execute("UPDATE products SET stock_quantity = $2 WHERE id = $1", product_id, recorded)


async def unemailed_alerts(pool: asyncpg.Pool) -> int:
    """Alerts (open or not) whose email has not gone out: no run holding them has sent its email.

    Written out here rather than taken from petcare.stock_repository, so the tests check its reading."""
    return int(
        await pool.fetchval(
            """SELECT count(*) FROM stock_alerts a LEFT JOIN stock_reconciliations r ON r.id = a.notified_by
                WHERE r.alert_status IS DISTINCT FROM 'sent'"""
        )
    )


TEST_WORKFLOW_ID = "test-workflow/store-test"


def activity_env(run_id: str | None = None) -> ActivityEnvironment:
    """An activity environment whose activities believe they run in workflow run `run_id`."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        workflow_id=TEST_WORKFLOW_ID,
        workflow_run_id=run_id or uuid.uuid4().hex,
        # The workflow's budget (ActivityEnvironment's default is 1 s): the aggregate's timeout
        # derives from it.
        start_to_close_timeout=RECONCILE_ATTEMPT,
    )
    return env


def target(store_id: UUID, day: date | None = None, trigger: str = "manual") -> StoreTarget:
    return StoreTarget.model_validate(
        {
            "store_id": store_id,
            "timezone": "UTC",
            "business_date": day or datetime.now(UTC).date(),
            "trigger": trigger,
        }
    )


async def reconcile(
    activities: StockActivities, store_id: UUID, *, run_id: str | None = None, day: date | None = None
) -> ReconciliationSummary:
    request = ReconcileRequest(target=target(store_id, day))
    return await activity_env(run_id).run(activities.reconcile_store, request)


async def reconcile_and_alert(
    activities: StockActivities, store_id: UUID
) -> tuple[ReconciliationSummary, AlertOutcome]:
    """One reconciliation run of a store as the child workflow does it: report, then alerts."""
    summary = await reconcile(activities, store_id)
    assert summary.reconciliation_id is not None
    request = AlertRequest(reconciliation_id=summary.reconciliation_id)
    return summary, await activity_env().run(activities.alert_store, request)


async def reconcile_store_run(client: Client, store_id: UUID, task_queue: str) -> StockReconciliationResult:
    """One stock reconciliation run of one store on `task_queue`, as the API's trigger starts it."""
    result: StockReconciliationResult = await client.execute_workflow(
        STOCK_RECONCILIATION.workflow_type,
        StockReconciliationInput(store_id=store_id),
        id=f"stock-test-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        result_type=StockReconciliationResult,
    )
    return result
