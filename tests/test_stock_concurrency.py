"""Two alert runs of one store at once, on real PostgreSQL and a real SMTP server: each alert is
emailed once, an older report never diffs over a newer one, a lapsed reservation is taken over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError

from activities.stock import StockActivities
from devstack.rows import add_store
from devstack.smtp_sink import SinkHandler, SmtpSink
from petcare import stock_repository as sql
from petcare.config import SmtpSettings
from petcare.mail import Mailer
from petcare.migrate import apply_migrations, bundled_migrations
from petcare.models.stock import AlertOutcome, AlertRequest
from tests.support.polling import poll
from tests.support.stock import FROM_ADDRESS, activity_env, add_product, move, reconcile, unemailed_alerts

STORE_EMAIL = "manager@store.test"


@dataclass
class HoldingHandler(SinkHandler):
    """Holds the first message's DATA until released: its sender is mid-send for as long as the test wants."""

    holding: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        return await super().handle_DATA(server, session, envelope)


@pytest_asyncio.fixture
async def holding_sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink("127.0.0.1", 0, HoldingHandler())
    await sink.start()
    yield sink
    await sink.stop()


def activities_for(pool: asyncpg.Pool, mailer: Mailer) -> StockActivities:
    return StockActivities(pool, mailer, from_address=FROM_ADDRESS, fallback_recipient=None)


async def alert(activities: StockActivities, reconciliation_id: Any) -> AlertOutcome:
    return await activity_env().run(activities.alert_store, AlertRequest(reconciliation_id=reconciliation_id))


async def test_two_runs_at_once_email_each_alert_once(pool: asyncpg.Pool, holding_sink: SmtpSink) -> None:
    handler = holding_sink.handler
    assert isinstance(handler, HoldingHandler)
    store = await add_store(pool, "Busy", email=STORE_EMAIL)
    await add_product(pool, store, "LOW", recorded=1, threshold=3, movements=(1,))
    await add_product(pool, store, "DRIFT", recorded=9, movements=(4,))
    async with Mailer(SmtpSettings(host=holding_sink.host, port=holding_sink.port)) as mailer:
        activities = activities_for(pool, mailer)
        # The nightly run and a manual one, both reconciled before either sends its alerts.
        scheduled = await reconcile(activities, store, run_id="scheduled")
        manual = await reconcile(activities, store, run_id="manual")

        first = asyncio.create_task(alert(activities, scheduled.reconciliation_id))
        await asyncio.wait_for(handler.holding.wait(), 10)  # the scheduled run is mid-send
        second = await alert(activities, manual.reconciliation_id)
        handler.release.set()
        sent = await first

    assert (sent.status, sent.new_alerts) == ("sent", 2)
    assert second.status == "nothing"  # its alerts are in the email the other run is sending
    assert len(holding_sink.received) == 1
    rows = await pool.fetch("SELECT notified_by FROM stock_alerts")
    assert [row["notified_by"] for row in rows] == [scheduled.reconciliation_id] * 2
    assert await unemailed_alerts(pool) == 0


async def test_an_older_report_waiting_for_the_lock_does_not_diff_over_a_newer_one(
    pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, "Racing", email=STORE_EMAIL)
    product = await add_product(pool, store, "LOW", recorded=1, threshold=5, movements=(1,))
    async with Mailer(SmtpSettings(host=smtp_sink.host, port=smtp_sink.port)) as mailer:
        activities = activities_for(pool, mailer)
        older = await reconcile(activities, store, run_id="older")
        await move(pool, product, 1)  # stock moves: the newer report computes 2
        newer = await reconcile(activities, store, run_id="newer")
        assert older.reconciliation_id
        assert newer.reconciliation_id

        async with pool.acquire() as holder, holder.transaction():
            # The newer run holds the store's alert lock; the older one starts and has to wait.
            run = await sql.lock_run(holder, newer.reconciliation_id)
            assert run is not None
            waiting = asyncio.create_task(alert(activities, older.reconciliation_id))
            await until_a_backend_waits_for_an_advisory_lock(pool)
            await sql.diff_alerts(holder, run)
            await sql.set_status(holder, run.id, "nothing")
        outcome = await waiting

    assert outcome.status == "nothing"  # superseded, seen once it held the lock
    rows = await pool.fetch("SELECT kind, computed, opened_by FROM stock_alerts WHERE resolved_at IS NULL")
    assert {tuple(row.values()) for row in rows} == {
        ("discrepancy", 2, newer.reconciliation_id),  # recorded 1, computed 2: the newer numbers
        ("low_stock", 2, newer.reconciliation_id),
    }
    assert smtp_sink.received == []


async def until_a_backend_waits_for_an_advisory_lock(pool: asyncpg.Pool) -> None:
    async def waiting() -> int:
        return int(
            await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )

    await poll(waiting, timeout=10, every=0.05, what="a backend waiting for the store's alert lock")


async def test_a_lapsed_reservation_is_taken_over_a_live_one_is_not(
    pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, "Outage", email=STORE_EMAIL)
    await add_product(pool, store, "LOW", recorded=0, threshold=3)
    async with Mailer(SmtpSettings(host=smtp_sink.host, port=smtp_sink.port, timeout_seconds=5)) as mailer:
        activities = activities_for(pool, mailer)
        stuck = await reconcile(activities, store)
        await smtp_sink.stop()
        with pytest.raises(ApplicationError, match="SMTP server"):
            await alert(activities, stuck.reconciliation_id)  # reserved, then the send failed
        await smtp_sink.start()

        while_live = await alert(activities, (await reconcile(activities, store)).reconciliation_id)
        # The stuck run's retries have stopped: its reservation lapses.
        await pool.execute("UPDATE stock_alerts SET reserved_until = now() - interval '1 second'")
        later = await reconcile(activities, store)
        after_lapse = await alert(activities, later.reconciliation_id)

    assert while_live.status == "nothing"
    assert after_lapse.status == "sent"
    assert len(smtp_sink.received) == 1
    assert await pool.fetchval("SELECT notified_by FROM stock_alerts") == later.reconciliation_id


async def test_a_sent_runs_alerts_stay_emailed_once_its_reservation_has_lapsed(
    pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    """The send is recorded on the run alone: its alerts keep their reservation's end, which lapses.
    Neither a retry of the run nor a later run emails them again, and they are not owed."""
    store = await add_store(pool, "Lapsed", email=STORE_EMAIL)
    await add_product(pool, store, "LOW", recorded=0, threshold=3)
    async with Mailer(SmtpSettings(host=smtp_sink.host, port=smtp_sink.port, timeout_seconds=5)) as mailer:
        activities = activities_for(pool, mailer)
        first = await reconcile(activities, store)
        sent = await alert(activities, first.reconciliation_id)
        await pool.execute("UPDATE stock_alerts SET reserved_until = now() - interval '1 second'")

        retried = await alert(activities, first.reconciliation_id)
        later = await alert(activities, (await reconcile(activities, store)).reconciliation_id)
        await pool.execute("UPDATE stores SET email = NULL")  # nobody to email: is anything owed?
        unaddressed = await alert(activities, (await reconcile(activities, store)).reconciliation_id)

    assert (sent.status, retried.status, later.status, unaddressed.status) == (
        "sent",
        "sent",
        "nothing",
        "nothing",
    )
    assert retried == sent
    assert len(smtp_sink.received) == 1
    assert await pool.fetchval("SELECT notified_by FROM stock_alerts") == first.reconciliation_id
    assert await unemailed_alerts(pool) == 0


async def test_reservations_written_before_migration_0015_read_the_same(empty_database_url: str) -> None:
    """Before 0015 a send set every alert's notified_at (and cleared reserved_until) in the statement
    that set its run to 'sent'. Those alerts stay emailed; a lapsed or released one is still owed."""
    connection = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(connection, [m for m in bundled_migrations() if m.name < "0015"])
        store = await connection.fetchval(
            "INSERT INTO stores (name, timezone, email) VALUES ('Old', 'UTC', $1) RETURNING id", STORE_EMAIL
        )
        products = {
            sku: await connection.fetchval(
                "INSERT INTO products (store_id, sku, name, stock_quantity, low_stock_threshold) "
                "VALUES ($1, $2, $2, 0, 3) RETURNING id",
                store,
                sku,
            )
            for sku in ("EMAILED", "LAPSED", "RELEASED")
        }

        async def run(status: str) -> UUID:
            run_id: UUID = await connection.fetchval(
                """INSERT INTO stock_reconciliations (store_id, business_date, trigger, workflow_id,
                       workflow_run_id, started_at, finished_at, products_checked, discrepancy_count,
                       low_stock_count, alert_status)
                   VALUES ($1, current_date, 'manual', 'w', gen_random_uuid()::text, now(), now(),
                           3, 0, 3, $2)
                   RETURNING id""",
                store,
                status,
            )
            return run_id

        sent, stuck, refused = await run("sent"), await run("sending"), await run("failed")
        # (product, holder, emailed, reservation's end from now)
        for sku, holder, emailed, lease in (
            ("EMAILED", sent, True, None),
            ("LAPSED", stuck, False, timedelta(minutes=-1)),
            ("RELEASED", None, False, None),
        ):
            await connection.execute(
                """INSERT INTO stock_alerts (store_id, product_id, kind, computed, threshold, opened_by,
                       notified_by, notified_at, reserved_until)
                   VALUES ($1, $2, 'low_stock', 0, 3, $3, $4, CASE WHEN $5 THEN now() END,
                           now() + $6::interval)""",
                store,
                products[sku],
                refused,
                holder,
                emailed,
                lease,
            )

        await apply_migrations(connection)
        later = await run("pending")
        async with connection.transaction():
            owed = await sql.pending_count(connection, store)
            reserved = await sql.reserve(connection, later, store, timedelta(minutes=5))
    finally:
        await connection.close()

    assert owed == 2
    assert sorted(alert.sku for alert in reserved) == ["LAPSED", "RELEASED"]
