"""Benchmark: the stock reconciliation activity against one raw SQL aggregate over the same rows.

    .venv/bin/python bench/stock.py [--products 10000] [--movements 1000000] [--repeat 5]

Its own embedded PostgreSQL gets one store with N products and M signed movements (about 5 %
of products with a recorded stock that disagrees, about 5 % at or under their threshold). Then,
alternating, after one warm-up each:

  raw       SELECT computed stock per product (LEFT JOIN + SUM + GROUP BY), fetched by the client
  activity  StockActivities.reconcile_store: the same aggregate, plus the report row and the
            flagged lines persisted in the same transaction (a new workflow run id each time)

It prints the median of each and the ratio activity / raw (target <= 1.5).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import asyncpg
from temporalio.testing import ActivityEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activities.stock import StockActivities
from devstack.postgres import create_database, embedded_postgres
from petcare.config import SmtpSettings
from petcare.mail import Mailer
from petcare.migrate import apply_migrations
from petcare.models.stock import ReconcileRequest, StoreTarget

RAW_AGGREGATE = """
SELECT p.id, p.stock_quantity, p.low_stock_threshold, COALESCE(sum(m.quantity), 0) AS computed
  FROM products p LEFT JOIN stock_movements m ON m.product_id = p.id
 WHERE p.store_id = $1
 GROUP BY p.id
"""


async def prepare(url: str, products: int, movements: int) -> UUID:
    """Set-based data generation: seconds, not minutes, for a million movements."""
    connection = await asyncpg.connect(url)
    try:
        await apply_migrations(connection)
        store: UUID = await connection.fetchval(
            "INSERT INTO stores (name, timezone) VALUES ('Bench', 'Europe/Paris') RETURNING id"
        )
        await connection.execute(
            """INSERT INTO products (store_id, sku, name, stock_quantity, low_stock_threshold)
               SELECT $1, 'SKU-' || g, 'Product ' || g, 0, 0 FROM generate_series(1, $2) g""",
            store,
            products,
        )
        # Quantities in -8..12, never 0 (the table forbids it): stocks drift upwards on average.
        await connection.execute(
            """INSERT INTO stock_movements (product_id, quantity, kind)
               SELECT p.id[1 + (g % $2)], CASE WHEN q = 0 THEN 1 ELSE q END, 'bench'
                 FROM (SELECT array_agg(id) AS id FROM products) p,
                      generate_series(0, $1 - 1) g,
                      LATERAL (SELECT floor(random() * 21)::int - 8 AS q) r""",
            movements,
            products,
        )
        await connection.execute(
            """UPDATE products p
                  SET stock_quantity = s.total + CASE WHEN random() < 0.05 THEN 3 ELSE 0 END,
                      low_stock_threshold = CASE WHEN random() < 0.05 THEN greatest(s.total, 0) ELSE 0 END
                 FROM (SELECT product_id, sum(quantity)::int AS total
                         FROM stock_movements GROUP BY product_id) s
                WHERE s.product_id = p.id"""
        )
        await connection.execute("VACUUM ANALYZE")
        return store
    finally:
        await connection.close()


async def timed(step: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


async def bench(products: int, movements: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="petcare-bench-stock-") as scratch:
        async with embedded_postgres(Path(scratch) / "pg") as postgres:
            url = await create_database(postgres.url(), "bench_stock")
            started = time.perf_counter()
            store = await prepare(url, products, movements)
            print(
                f"data: {products} products, {movements} movements in {time.perf_counter() - started:.1f} s"
            )
            async with (
                asyncpg.create_pool(url, min_size=1, max_size=2) as pool,
                Mailer(SmtpSettings()) as mailer,
            ):
                activities = StockActivities(
                    pool, mailer, from_address="bench@petcare.local", fallback_recipient=None
                )
                target = StoreTarget(
                    store_id=store,
                    timezone="Europe/Paris",
                    business_date=datetime.now(UTC).date(),
                    trigger="manual",
                )
                request = ReconcileRequest(target=target)

                async def raw() -> list[asyncpg.Record]:
                    async with pool.acquire() as connection:
                        return await connection.fetch(RAW_AGGREGATE, store)

                async def activity() -> object:
                    env = ActivityEnvironment()
                    env.info = dataclasses.replace(
                        env.info, workflow_id="bench/store-bench", workflow_run_id=str(uuid.uuid4())
                    )
                    return await env.run(activities.reconcile_store, request)

                summary = await activity()  # warm-up, and the numbers of the report
                rows = await raw()
                raw_times, activity_times = [], []
                for _ in range(repeat):
                    raw_times.append(await timed(raw))
                    activity_times.append(await timed(activity))

    raw_median, activity_median = statistics.median(raw_times), statistics.median(activity_times)
    print(f"report: {summary}")
    print(f"raw aggregate:  {len(rows)} rows, median {raw_median * 1000:.0f} ms over {repeat} runs")
    print(f"activity:       median {activity_median * 1000:.0f} ms over {repeat} runs")
    print(f"ratio activity/raw: {activity_median / raw_median:.2f} (target <= 1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--movements", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(bench(arguments.products, arguments.movements, arguments.repeat))


if __name__ == "__main__":
    main()
