"""Incremental reconciliation on real PostgreSQL: checkpoint sums plus the movements since give the
full aggregate's numbers, also with writers that commit out of id order, and a full recompute agrees."""

from __future__ import annotations

import random
from uuid import UUID

import asyncpg
import pytest

from activities.stock import StockActivities
from devstack.rows import add_store
from petcare.config import SmtpSettings
from petcare.mail import Mailer
from petcare.models.stock import ReconcileRequest
from tests.support.stock import FROM_ADDRESS, activity_env, add_product, move, reconcile, target

FULL_AGGREGATE = """
SELECT p.id, COALESCE(sum(m.quantity), 0) AS computed
  FROM products p LEFT JOIN stock_movements m ON m.product_id = p.id
 WHERE p.store_id = $1 GROUP BY p.id
"""


@pytest.fixture
def activities(pool: asyncpg.Pool) -> StockActivities:
    return StockActivities(pool, Mailer(SmtpSettings()), from_address=FROM_ADDRESS, fallback_recipient=None)


async def computed_in_report(
    pool: asyncpg.Pool, store: UUID, reconciliation_id: UUID | None
) -> dict[UUID, int]:
    """Every product's computed stock as the report saw it (products set to be flagged: recorded -1)."""
    rows = await pool.fetch(
        "SELECT product_id, computed FROM stock_reconciliation_lines WHERE reconciliation_id = $1",
        reconciliation_id,
    )
    return {row["product_id"]: row["computed"] for row in rows}


async def full_aggregate(pool: asyncpg.Pool, store: UUID) -> dict[UUID, int]:
    return {row["id"]: row["computed"] for row in await pool.fetch(FULL_AGGREGATE, store)}


async def checkpoint(pool: asyncpg.Pool) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT upto, candidate_upto FROM stock_checkpoint")
    assert row is not None
    return row


async def full_recompute(activities: StockActivities, store: UUID) -> UUID | None:
    request = ReconcileRequest(target=target(store).model_copy(update={"full_recompute": True}))
    summary = await activity_env().run(activities.reconcile_store, request)
    return summary.reconciliation_id


async def test_writers_committing_out_of_id_order_are_counted_once(
    pool: asyncpg.Pool, activities: StockActivities
) -> None:
    store = await add_store(pool, "Checkpointed")
    # Recorded -1 never matches: every product gets a line, so each report shows every computed stock.
    products = [await add_product(pool, store, f"P{n}", recorded=-1, movements=(5, 3)) for n in range(4)]
    first = await reconcile(activities, store)  # proposes a candidate
    assert await computed_in_report(pool, store, first.reconciliation_id) == await full_aggregate(pool, store)

    # A slow writer takes an id and holds its transaction open; a fast one takes the next id and
    # commits first. Then a run: it must not move the checkpoint over the slow writer's id.
    slow = await pool.acquire()
    try:
        transaction = slow.transaction()
        await transaction.start()
        await slow.execute(
            "INSERT INTO stock_movements (product_id, quantity, kind) VALUES ($1, 100, 'slow')", products[0]
        )
        await move(pool, products[1], 7)  # a higher id, committed before the lower one
        # Two runs while it is open: the second finds a candidate above the open writer's id.
        for _ in range(2):
            while_open = await reconcile(activities, store)
            seen = await computed_in_report(pool, store, while_open.reconciliation_id)
            assert seen[products[0]] == 8  # not committed yet: not in this snapshot
            assert seen[products[1]] == 15
        state = await checkpoint(pool)
        assert state["candidate_upto"] > state["upto"]  # waiting: the open writer might still commit
        assert (await checkpoint(pool))["upto"] > 0  # the first candidate (before both) was folded
        await transaction.commit()
    finally:
        await pool.release(slow)

    # Runs after the slow commit: the lower id is counted exactly once, however the checkpoint moved.
    for _ in range(3):
        summary = await reconcile(activities, store)
        assert await computed_in_report(pool, store, summary.reconciliation_id) == await full_aggregate(
            pool, store
        )
    assert (await full_aggregate(pool, store))[products[0]] == 108
    state = await checkpoint(pool)
    top = await pool.fetchval("SELECT max(id) FROM stock_movements")
    assert state["upto"] == top  # every movement folded once no transaction could still add one


async def test_concurrent_writers_and_runs_agree_with_the_full_aggregate(
    pool: asyncpg.Pool, activities: StockActivities
) -> None:
    """Random writers in transactions of several movements, committing in random order while runs
    go on: after each run, its report equals the full aggregate of the same moment's committed data
    (checked once the writers are quiet), and the checkpoint never loses or doubles a movement."""
    store = await add_store(pool, "Busy")
    products = [await add_product(pool, store, f"B{n}", recorded=-1) for n in range(6)]
    rng = random.Random(15)
    for _round in range(6):
        open_writers = []
        for _ in range(4):
            connection = await pool.acquire()
            transaction = connection.transaction()
            await transaction.start()
            for _ in range(rng.randint(1, 4)):
                await connection.execute(
                    "INSERT INTO stock_movements (product_id, quantity, kind) VALUES ($1, $2, 'w')",
                    rng.choice(products),
                    rng.choice([-3, -1, 1, 2, 5]),
                )
            open_writers.append((connection, transaction))
        rng.shuffle(open_writers)
        # Half commit (in shuffled order, not id order), then a run with the others still open.
        for _connection, transaction in open_writers[:2]:
            await transaction.commit()
        await reconcile(activities, store)
        for _connection, transaction in open_writers[2:]:
            if rng.random() < 0.25:
                await transaction.rollback()  # an id that never appears
            else:
                await transaction.commit()
        for connection, _ in open_writers:
            await pool.release(connection)
        quiet = await reconcile(activities, store)
        assert await computed_in_report(pool, store, quiet.reconciliation_id) == await full_aggregate(
            pool, store
        )


async def test_full_recompute_agrees_with_the_incremental_result_and_repairs_the_sums(
    pool: asyncpg.Pool, activities: StockActivities
) -> None:
    store = await add_store(pool, "Audited")
    products = [await add_product(pool, store, f"A{n}", recorded=-1, movements=(n + 1, 2)) for n in range(5)]
    for _ in range(3):  # propose, fold, then reports from the checkpoint
        incremental = await reconcile(activities, store)
        await move(pool, products[0], 1)
    incremental = await reconcile(activities, store)
    assert (await checkpoint(pool))["upto"] > 0
    full = await full_recompute(activities, store)
    assert await computed_in_report(pool, store, full) == await computed_in_report(
        pool, store, incremental.reconciliation_id
    )
    assert (
        await pool.fetchval("SELECT checkpoint_upto FROM stock_reconciliations WHERE id = $1", full) is None
    )

    # The backend corrects an old movement (the ledger is meant to be append-only): the checkpoint
    # is stale until a full recompute rebuilds the store's sums; later incremental runs agree again.
    await pool.execute(
        "UPDATE stock_movements SET quantity = quantity + 10 WHERE id = (SELECT min(id) FROM stock_movements)"
    )
    repaired = await full_recompute(activities, store)
    after = await reconcile(activities, store)
    expected = await full_aggregate(pool, store)
    assert await computed_in_report(pool, store, repaired) == expected
    assert await computed_in_report(pool, store, after.reconciliation_id) == expected
