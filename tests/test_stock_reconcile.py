"""The per-store report on real PostgreSQL: computed vs recorded stock, low stock, idempotency."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import asyncpg
import pytest

from activities.stock import StockActivities
from devstack.rows import add_store
from petcare.config import SmtpSettings
from petcare.mail import Mailer
from petcare.models.stock import DueStoresRequest, ReconcileRequest
from tests.support.polling import poll
from tests.support.stock import FROM_ADDRESS, TEST_WORKFLOW_ID, activity_env, add_product, reconcile, target


@pytest.fixture
def activities(pool: asyncpg.Pool) -> StockActivities:
    # These tests never send mail: the mailer points nowhere and is never used.
    return StockActivities(pool, Mailer(SmtpSettings()), from_address=FROM_ADDRESS, fallback_recipient=None)


async def test_computed_stock_against_recorded(pool: asyncpg.Pool, activities: StockActivities) -> None:
    store = await add_store(pool, "Main street")
    other = await add_store(pool, "Elsewhere")
    fine = await add_product(pool, store, "FINE", recorded=7, threshold=2, movements=(10, -3))
    never_moved = await add_product(pool, store, "NEVER", recorded=0, threshold=0)
    phantom = await add_product(pool, store, "PHANTOM", recorded=5, threshold=1)
    negative = await add_product(pool, store, "NEG", recorded=0, threshold=1, movements=(2, -5))
    surplus = await add_product(pool, store, "SURPLUS", recorded=18, threshold=5, movements=(20,))
    at_threshold = await add_product(pool, store, "EDGE", recorded=5, threshold=5, movements=(5,))
    # Another store's movements never leak into this store's report.
    await add_product(pool, other, "NEG", recorded=0, threshold=0, movements=(100,))

    summary = await reconcile(activities, store, run_id="run-of-the-child")

    assert (summary.products_checked, summary.discrepancies, summary.low_stock) == (6, 3, 4)
    rows = await pool.fetch(
        """SELECT product_id, recorded, computed, threshold, discrepancy, low_stock
             FROM stock_reconciliation_lines WHERE reconciliation_id = $1""",
        summary.reconciliation_id,
    )
    lines = {row["product_id"]: tuple(row.values())[1:] for row in rows}
    assert lines == {
        never_moved: (0, 0, 0, False, True),  # no movements computes 0, and 0 <= threshold 0
        phantom: (5, 0, 1, True, True),  # recorded stock with no movement behind it
        negative: (0, -3, 1, True, True),  # more went out than came in
        surplus: (18, 20, 5, True, False),
        at_threshold: (5, 5, 5, False, True),
    }
    assert fine not in lines
    run = await pool.fetchrow("SELECT * FROM stock_reconciliations WHERE id = $1", summary.reconciliation_id)
    assert run is not None
    assert (run["store_id"], run["trigger"]) == (store, "manual")
    # Both name the one workflow execution the activity ran in (the per-store child).
    assert (run["workflow_id"], run["workflow_run_id"]) == (TEST_WORKFLOW_ID, "run-of-the-child")
    assert run["finished_at"] >= run["started_at"]


async def test_a_retry_returns_the_first_report(pool: asyncpg.Pool, activities: StockActivities) -> None:
    store = await add_store(pool, "Retry")
    product = await add_product(pool, store, "A", recorded=3, movements=(1,))

    first = await reconcile(activities, store, run_id="run-1")
    await add_product(pool, store, "B", recorded=1)  # changes the data between the attempts
    again = await reconcile(activities, store, run_id="run-1")

    assert again == first
    assert await pool.fetchval("SELECT count(*) FROM stock_reconciliations") == 1
    assert await pool.fetchval("SELECT count(*) FROM stock_reconciliation_lines") == 1
    assert await pool.fetchval("SELECT product_id FROM stock_reconciliation_lines") == product


async def test_one_scheduled_report_per_store_and_local_day(
    pool: asyncpg.Pool, activities: StockActivities
) -> None:
    store = await add_store(pool, "Daily")
    await add_product(pool, store, "A", recorded=1, movements=(1,))
    day = date(2027, 3, 14)

    def scheduled() -> ReconcileRequest:
        return ReconcileRequest(target=target(store, day, trigger="schedule"))

    first = await activity_env("tick-1").run(activities.reconcile_store, scheduled())
    # A second scheduled run (another tick, a racing schedule) for the same local day does nothing.
    second = await activity_env("tick-2").run(activities.reconcile_store, scheduled())
    # A manual run the same day always reports.
    manual = await reconcile(activities, store, run_id="manual-1", day=day)

    assert first.reconciliation_id is not None
    assert second.reconciliation_id is None
    assert manual.reconciliation_id not in (None, first.reconciliation_id)
    assert manual.products_checked == 1


async def test_the_caller_s_force_decides_a_store_id_only_narrows_the_scope(
    pool: asyncpg.Pool, activities: StockActivities
) -> None:
    store = await add_store(pool, "Done today")
    now = datetime.now(UTC)
    today = await activity_env().run(
        activities.due_stores, DueStoresRequest(now=now, store_id=store, force=True)
    )
    [target] = today.targets
    scheduled = ReconcileRequest(target=target.model_copy(update={"trigger": "schedule"}))
    await activity_env().run(activities.reconcile_store, scheduled)

    unforced = await activity_env().run(
        activities.due_stores, DueStoresRequest(now=now, store_id=store, force=False)
    )
    forced = await activity_env().run(
        activities.due_stores, DueStoresRequest(now=now, store_id=store, force=True)
    )

    assert unforced.targets == []  # already reconciled for its day, and the run was not forced
    assert [(t.store_id, t.trigger) for t in forced.targets] == [(store, "manual")]


async def test_due_stores_come_in_pages_in_id_order(pool: asyncpg.Pool, activities: StockActivities) -> None:
    stores = sorted([await add_store(pool, f"Store {n}") for n in range(3)])
    await add_store(pool, "Nowhere", timezone="Mars/Olympus_Mons")
    now = datetime.now(UTC)

    pages, after = [], None
    while True:
        request = DueStoresRequest(now=now, force=True, after_store_id=after, limit=2)
        page = await activity_env().run(activities.due_stores, request)
        pages.append(page)
        if (after := page.next_after) is None:
            break

    assert [len(page.targets) + len(page.invalid) for page in pages] == [2, 2]
    assert [t.store_id for page in pages for t in page.targets] == stores
    [invalid] = [outcome for page in pages for outcome in page.invalid]
    assert "not an IANA time zone" in (invalid.error or "")


async def test_a_cancelled_reconciliation_stops_its_statement(
    pool: asyncpg.Pool, activities: StockActivities
) -> None:
    store = await add_store(pool, "Slow")
    # A real slow statement: the report's insert sleeps inside PostgreSQL.
    await pool.execute(
        """CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$"""
    )
    await pool.execute(
        "CREATE TRIGGER slow_insert BEFORE INSERT ON stock_reconciliations "
        "FOR EACH ROW EXECUTE FUNCTION slow_insert()"
    )
    env = activity_env()
    heartbeats: list[object] = []
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    running = asyncio.create_task(env.run(activities.reconcile_store, ReconcileRequest(target=target(store))))
    assert await sleeping_statements(pool, until=1) == 1

    env.cancel()  # as Temporal does when the workflow no longer wants the result
    with pytest.raises(asyncio.CancelledError):
        await running

    assert heartbeats  # the ticker ran while the statement did
    assert await sleeping_statements(pool, until=0) == 0  # and the statement died with the activity
    assert await pool.fetchval("SELECT count(*) FROM stock_reconciliations") == 0


async def sleeping_statements(pool: asyncpg.Pool, *, until: int) -> int:
    """Statements sleeping in pg_sleep, polled for up to 5 s until there are `until` of them."""

    async def reached() -> bool:
        sleeping: int = await pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity
                WHERE wait_event = 'PgSleep' AND datname = current_database()"""
        )
        return sleeping == until

    await poll(reached, timeout=5, every=0.05, what=f"{until} statements in pg_sleep")
    return until
