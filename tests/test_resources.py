"""Connections and statement budgets under load, on real PostgreSQL, SFTP and the Temporal dev server:
exports held open by a hung destination never starve the short jobs, a busy pool fails an attempt
retryably with a clear message, and long statements run on their activity's budget rather than the
pool's command timeout."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.exports import ExportActivities
from activities.exports.destinations import LocalDestination, SftpDestination
from activities.exports.streaming import StreamLimits
from activities.stock import StockActivities
from devstack.rows import add_appointment, add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import Settings, SmtpSettings
from petcare.db import DatabaseBusy, create_pool, create_upload_pool, is_unreachable
from petcare.mail import Mailer
from petcare.models.exports import BeginRequest, FileRequest, FinancialExportInput, export_workflow_id
from petcare.models.reminders import ReminderRunInput
from petcare.models.stock import ReconcileRequest
from tests.support import reminder_data, stock
from tests.support.exports import export_status, request_export, seed, tables_locked, upload_environment
from tests.support.polling import poll
from tests.support.sftp import SftpFixture
from tests.support.workers import real_worker
from workflows.exports import FinancialExportWorkflow
from workflows.reminders import AppointmentReminderWorkflow

# What "within seconds" means on a loaded 2-core CI machine: a short job normally takes well
# under one; without the separate upload queue and pool it would wait for an hours-long upload.
SHORT_JOB_DEADLINE = 20.0
EXPORTS = 8  # 24 data files: far more than the upload slots and the main pool together
UPLOAD_SLOTS = 2

# A statement-level trigger: the stock aggregate (which inserts the report's lines) sleeps for real.
SLOW_AGGREGATE = """
CREATE FUNCTION test_slow_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(2.5);
    RETURN NULL;
END $$;
CREATE TRIGGER test_slow_lines BEFORE INSERT ON stock_reconciliation_lines
    FOR EACH STATEMENT EXECUTE FUNCTION test_slow_statement();
"""
SLOW_SECONDS = 2.5
SHORT_COMMAND_TIMEOUT = 1.0


def sized(settings: Settings, **database: float) -> Settings:
    return settings.model_copy(update={"database": settings.database.model_copy(update=database)})


async def test_exports_held_by_a_hung_sftp_server_leave_reminders_and_stock_their_connections(
    dev_client: Client,
    settings: Settings,
    task_queue: str,
    sftp_server: SftpFixture,
    smtp_sink: SmtpSink,
) -> None:
    configured = reminder_data.reminder_settings(
        sized(settings, pool_max_size=4, acquire_timeout_seconds=5.0), smtp_port=smtp_sink.port
    ).model_copy(
        update={
            "task_queue": task_queue,
            "sftp": sftp_server.settings(),
            "export": settings.export.model_copy(
                update={"destination": "sftp", "upload_concurrency": UPLOAD_SLOTS}
            ),
        }
    )
    server = sftp_server.server
    async with (
        create_pool(configured) as pool,
        create_upload_pool(configured) as uploads,
    ):
        async with pool.acquire() as connection:
            await seed(connection)
            export_ids = [await request_export(connection) for _ in range(EXPORTS)]
        salon = await add_store(pool)
        await add_appointment(
            pool, store_id=salon, starts_at=datetime.now(UTC) + timedelta(hours=4), email="due@example.com"
        )
        shop = await add_store(pool, "Busy month")
        await stock.add_product(pool, shop, "DRIFT", recorded=10, movements=(4, 3))

        async with real_worker(dev_client, configured, pool, task_queue, upload_pool=uploads):
            # Released before the worker stops: its shutdown waits for the uploads in flight.
            server.hold_writes()
            try:
                exports = [
                    await dev_client.start_workflow(
                        FinancialExportWorkflow.run,
                        FinancialExportInput(export_id=export_id),
                        id=export_workflow_id(export_id),
                        task_queue=task_queue,
                    )
                    for export_id in export_ids
                ]
                # Every upload slot is taken by a file whose SFTP server no longer answers.
                await poll(lambda: server.writes_held == UPLOAD_SLOTS, timeout=60, every=0.02)

                started = asyncio.get_running_loop().time()
                reminders, stock_run = await asyncio.wait_for(
                    asyncio.gather(
                        dev_client.execute_workflow(
                            AppointmentReminderWorkflow.run,
                            ReminderRunInput(),
                            id=f"busy-reminders-{uuid.uuid4().hex[:8]}",
                            task_queue=task_queue,
                        ),
                        stock.reconcile_store_run(dev_client, shop, task_queue),
                    ),
                    SHORT_JOB_DEADLINE,
                )
                short_jobs_took = asyncio.get_running_loop().time() - started

                # The exports were held all along: the short jobs did not wait for them to end.
                assert server.writes_held == UPLOAD_SLOTS
                statuses = [(await export_status(pool, export_id))[0] for export_id in export_ids]
                assert "completed" not in statuses
                server.release_writes()
                results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in exports)), 120)
            finally:
                server.release_writes()

    assert short_jobs_took < SHORT_JOB_DEADLINE
    assert reminders.counts.sent_email == 1
    assert [m.recipients for m in smtp_sink.received] == [["due@example.com"]]
    [store] = stock_run.stores
    assert store.status == "reconciled", store.error
    assert store.summary is not None
    assert store.summary.discrepancies == 1
    # The uploads waited in Temporal's queue, not in failing attempts: every export completed.
    assert [result.status for result in results] == ["completed"] * EXPORTS
    # Never more SFTP sessions than upload slots: none sat idle on the server waiting for a connection.
    assert server.most_connections <= UPLOAD_SLOTS


async def test_a_busy_pool_fails_the_attempt_retryably_before_any_sftp_session(
    settings: Settings, sftp_server: SftpFixture
) -> None:
    tight = sized(settings, acquire_timeout_seconds=0.5).model_copy(
        update={"export": settings.export.model_copy(update={"upload_concurrency": 1})}
    )
    async with create_pool(tight) as pool, create_upload_pool(tight) as uploads:
        async with pool.acquire() as connection:
            export_id = await request_export(connection)
        activities = ExportActivities(
            pool, SftpDestination(sftp_server.settings()), StreamLimits(), upload_pool=uploads
        )
        begin = BeginRequest(export_id=export_id, force=False, workflow_id="busy-pool")
        plan = await upload_environment().run(activities.begin, begin)
        async with uploads.acquire():  # its one connection is busy
            with pytest.raises(ApplicationError) as raised:
                await upload_environment().run(activities.write_file, FileRequest(plan=plan, kind="invoices"))

    assert raised.value.type == "DatabaseBusy"
    assert not raised.value.non_retryable
    assert raised.value.message.startswith("no database connection free within 0.5 s")
    assert "all 1 connections of the export upload pool are in use" in raised.value.message
    assert is_unreachable(raised.value)  # the API answers 503 for it, not 500
    assert sftp_server.server.most_connections == 0  # no SFTP session without its database connection


async def test_the_stock_aggregate_runs_past_the_pool_command_timeout_on_its_activity_budget(
    dev_client: Client, settings: Settings, task_queue: str
) -> None:
    short = sized(settings, command_timeout_seconds=SHORT_COMMAND_TIMEOUT)
    async with create_pool(short) as pool:
        await pool.execute(SLOW_AGGREGATE)
        # The pool's default really cuts a statement that long...
        with pytest.raises(TimeoutError):
            await pool.fetchval("SELECT pg_sleep($1)", SLOW_SECONDS)
        shop = await add_store(pool, "Large store")
        await stock.add_product(pool, shop, "DRIFT", recorded=10, movements=(4, 3))

        # ...but the aggregate, run by the real worker, has its 10 min activity's budget.
        async with real_worker(dev_client, short, pool, task_queue):
            started = asyncio.get_running_loop().time()
            result = await stock.reconcile_store_run(dev_client, shop, task_queue)
            took = asyncio.get_running_loop().time() - started

    [store] = result.stores
    assert store.status == "reconciled", store.error
    assert store.summary is not None
    assert store.summary.discrepancies == 1
    assert took >= SLOW_SECONDS > SHORT_COMMAND_TIMEOUT  # slowed for real, and past the pool's default


async def test_the_stock_aggregate_past_its_budget_fails_retryably_and_keeps_no_report(
    settings: Settings,
) -> None:
    async with create_pool(settings) as pool:  # the default 60 s command timeout: not what cuts it
        await pool.execute(SLOW_AGGREGATE)
        shop = await add_store(pool, "Large store")
        await stock.add_product(pool, shop, "DRIFT", recorded=10, movements=(4, 3))
        activities = StockActivities(
            pool, Mailer(SmtpSettings()), from_address=stock.FROM_ADDRESS, fallback_recipient=None
        )
        environment = stock.activity_env()
        # An attempt budget of 2 s: 90 % of it, 1.8 s, is less than the 2.5 s the aggregate takes.
        environment.info = dataclasses.replace(environment.info, start_to_close_timeout=timedelta(seconds=2))
        with pytest.raises(ApplicationError) as raised:
            await environment.run(activities.reconcile_store, ReconcileRequest(target=stock.target(shop)))
        reports = await pool.fetchval("SELECT count(*) FROM stock_reconciliations WHERE store_id = $1", shop)

    assert raised.value.type == "StatementTimeout"
    assert not raised.value.non_retryable
    assert f"stock aggregate of store {shop} ran past its statement timeout of 1.8 s" in raised.value.message
    assert reports == 0  # the transaction rolled back: a retry starts clean


async def test_the_export_copy_runs_past_the_pool_command_timeout(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    short = sized(settings, command_timeout_seconds=SHORT_COMMAND_TIMEOUT)
    async with create_pool(short) as pool, create_upload_pool(short) as uploads:
        async with pool.acquire() as connection:
            await seed(connection)
            export_id = await request_export(connection)
        activities = ExportActivities(pool, LocalDestination(tmp_path), StreamLimits(), upload_pool=uploads)
        plan = await upload_environment().run(
            activities.begin, BeginRequest(export_id=export_id, force=False, workflow_id="slow-copy")
        )
        async with tables_locked(database_url, "transactions"):  # the COPY waits for the lock
            upload = asyncio.create_task(
                upload_environment().run(activities.write_file, FileRequest(plan=plan, kind="transactions"))
            )
            await poll(lambda: copy_waits_for_a_lock(pool), timeout=30, every=0.05)
            started = asyncio.get_running_loop().time()
            # The injected slowness itself: the lock is held past the pool's command timeout.
            await asyncio.sleep(SLOW_SECONDS)
        exported = await upload
        waited = asyncio.get_running_loop().time() - started

    assert waited >= SLOW_SECONDS > SHORT_COMMAND_TIMEOUT
    assert exported.rows > 0
    assert await asyncio.to_thread(Path(exported.remote_path).is_file)


async def copy_waits_for_a_lock(pool: asyncpg.Pool) -> bool:
    # Waiting already while asyncpg prepares the query (to quote its arguments), before the COPY.
    waiting: int = await pool.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted")
    return waiting > 0


async def test_an_awaited_acquire_of_a_busy_pool_says_database_busy_too(settings: Settings) -> None:
    """`connection = await pool.acquire()` (released by hand) times out like `async with`."""
    async with create_pool(sized(settings, acquire_timeout_seconds=0.3), max_size=1, min_size=1) as pool:
        held = await pool.acquire()
        try:
            with pytest.raises(DatabaseBusy, match="all 1 connections of the main pool"):
                await pool.acquire()
        finally:
            await pool.release(held)
        again = await pool.acquire()  # free again: the pool is usable after the refusal
        await pool.release(again)
