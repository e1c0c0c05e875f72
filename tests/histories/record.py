"""Re-record the histories under tests/histories: `.venv/bin/pytest tests/histories/record.py`.

Not part of the suite (pytest collects test_*.py only; this file runs when named). Each function
runs one job's workflow on the dev server with the real worker (`build_workers`: real activities,
the worker's interceptors) against real PostgreSQL, SMTP and SFTP, checks how the run ended, and
saves its history with `history.to_json()` plus an entry in index.json. Re-record after a change
that is meant to break old histories (before any release that has runs in flight), never to make
a failing replay pass: see docs/versioning.md.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import asyncssh
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError

from devstack.rows import add_appointment, add_store
from devstack.smtp_sink import SmtpSink
from devstack.ssh_keys import write_known_hosts
from petcare.alerts import ALERTED_WORKFLOW_TYPES, TimedOutSweep
from petcare.config import ExportSettings, Settings, SmsSettings
from petcare.models.exports import FinancialExportInput, MonthlyExportInput, export_workflow_id
from petcare.models.reminders import ReminderDryRunInput, ReminderRunInput
from petcare.models.stock import StockReconciliationInput
from tests.histories import RecordedHistory, save_history
from tests.support.exports import request_export, seed
from tests.support.polling import until_visible
from tests.support.sftp import SftpFixture
from tests.support.stock import add_product
from tests.support.workers import real_worker
from workflows.alerts import OpsAlertSweepWorkflow
from workflows.exports import FinancialExportWorkflow, MonthlyFinancialExportWorkflow
from workflows.reminders import AppointmentReminderDryRunWorkflow, AppointmentReminderWorkflow
from workflows.stock import StockReconciliationWorkflow

pytestmark = pytest.mark.slow


@pytest.fixture
def job_settings(settings: Settings, task_queue: str, smtp_sink: SmtpSink) -> Settings:
    return settings.model_copy(
        update={
            "task_queue": task_queue,
            "smtp": settings.smtp.model_copy(update={"port": smtp_sink.port, "timeout_seconds": 5.0}),
            "sms": SmsSettings(provider="log"),
            "ops_email": "ops@petcare.test",
        }
    )


async def save(
    client: Client,
    workflow_type: str,
    scenario: str,
    outcome: str,
    workflow_id: str,
    run_id: str | None = None,
) -> None:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    last = history.events[-1].event_type
    assert EventType.Name(last) == f"EVENT_TYPE_WORKFLOW_EXECUTION_{outcome.replace('-', '_').upper()}"
    file = f"{workflow_type}-{scenario.replace(' ', '-')}.json"
    save_history(RecordedHistory(file, workflow_type, workflow_id, scenario, outcome), history)


async def test_record_reminder_runs(
    dev_client: Client, job_settings: Settings, pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    salon = await add_store(pool, name="Salon Lyon", timezone="Europe/Paris", phone="+33472000000")
    starts = datetime.now(UTC) + timedelta(hours=4)
    await add_appointment(pool, store_id=salon, starts_at=starts, email="a@example.com", locale="fr")
    await add_appointment(
        pool, store_id=salon, starts_at=starts + timedelta(minutes=30), email="b@example.com"
    )
    await add_appointment(
        pool,
        store_id=salon,
        starts_at=starts + timedelta(hours=1),
        phone="+15550100400",
        preferred_channel="sms",
    )
    settings = job_settings.model_copy(
        update={"reminders": job_settings.reminders.model_copy(update={"batch_size": 2})}
    )
    async with real_worker(dev_client, settings, pool):
        # Pages of two, one page a run: the first run continues as new, the second completes.
        run = await dev_client.start_workflow(
            AppointmentReminderWorkflow.run,
            ReminderRunInput(pages_per_run=1),
            id=f"history-reminders-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
        result = await run.result()
        dry_run = await dev_client.start_workflow(
            AppointmentReminderDryRunWorkflow.run,
            ReminderDryRunInput(preview_limit=2),
            id=f"history-reminders-dry-run-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
        await dry_run.result()
        # Input that fails validation fails the run (and alerts) instead of retrying its task.
        bad = await dev_client.start_workflow(
            "AppointmentReminderWorkflow",
            {"pages_per_run": 0},
            id=f"history-reminders-bad-input-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
        with pytest.raises(WorkflowFailureError):
            await bad.result()

    assert (result.counts.sent_email, result.counts.sent_sms, result.runs) == (2, 1, 2)
    assert len(smtp_sink.received) >= 2
    name = "AppointmentReminderWorkflow"
    await save(dev_client, name, "first page", "continued-as-new", run.id, run.first_execution_run_id)
    await save(dev_client, name, "last page", "completed", run.id)
    await save(dev_client, name, "bad input", "failed", bad.id)
    await save(dev_client, "AppointmentReminderDryRunWorkflow", "preview", "completed", dry_run.id)


async def test_record_exports(
    dev_client: Client,
    job_settings: Settings,
    pool: asyncpg.Pool,
    sftp_server: SftpFixture,
    tmp_path: Path,
) -> None:
    async with pool.acquire() as connection:
        await seed(connection)
        good = await request_export(connection, export_format="csv")
        refused = await request_export(connection, export_format="json")
    local = job_settings.model_copy(
        update={"export": ExportSettings(destination="local", local_dir=tmp_path / "exports")}
    )
    async with real_worker(dev_client, local, pool):
        await dev_client.execute_workflow(
            FinancialExportWorkflow.run,
            FinancialExportInput(export_id=good),
            id=export_workflow_id(good),
            task_queue=local.task_queue,
        )
    # An SFTP server whose host key is not the pinned one: a permanent fault, the run fails.
    known_hosts = tmp_path / "known_hosts"
    write_known_hosts(
        known_hosts, sftp_server.host, sftp_server.port, asyncssh.generate_private_key("ssh-ed25519")
    )
    untrusted = job_settings.model_copy(
        update={
            "export": ExportSettings(destination="sftp"),
            "sftp": sftp_server.settings().model_copy(update={"known_hosts_path": known_hosts}),
        }
    )
    async with real_worker(dev_client, untrusted, pool):
        with pytest.raises(WorkflowFailureError):
            await dev_client.execute_workflow(
                FinancialExportWorkflow.run,
                FinancialExportInput(export_id=refused),
                id=export_workflow_id(refused),
                task_queue=untrusted.task_queue,
            )

    name = "FinancialExportWorkflow"
    await save(dev_client, name, "csv to local directory", "completed", export_workflow_id(good))
    await save(dev_client, name, "unknown host key", "failed", export_workflow_id(refused))


async def test_record_monthly_close(
    dev_client: Client, job_settings: Settings, pool: asyncpg.Pool, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    async with pool.acquire() as connection:
        seeded = await seed(connection)
    await pool.execute("UPDATE stores SET email = 'tokyo@petcare.test' WHERE id = $1", seeded.tokyo)
    local = job_settings.model_copy(
        update={"export": ExportSettings(destination="local", local_dir=tmp_path / "exports")}
    )
    close_id = f"financial-export-monthly-record-{uuid.uuid4().hex[:8]}"
    async with real_worker(dev_client, local, pool):
        await dev_client.execute_workflow(
            MonthlyFinancialExportWorkflow.run,
            MonthlyExportInput(as_of=datetime(2025, 11, 1, 2, tzinfo=UTC)),
            id=close_id,
            task_queue=local.task_queue,
        )
        tokyo = await pool.fetchval("SELECT id FROM financial_exports WHERE store_id = $1", seeded.tokyo)
        await dev_client.get_workflow_handle(export_workflow_id(tokyo)).result()
    assert len(smtp_sink.received) == 1
    await save(dev_client, "MonthlyFinancialExportWorkflow", "two stores", "completed", close_id)
    await save(
        dev_client,
        "FinancialExportWorkflow",
        "csv with completion notice",
        "completed",
        export_workflow_id(tokyo),
    )


async def test_record_stock_runs(
    dev_client: Client, job_settings: Settings, pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    alerting = await add_store(pool, "Paws Lyon", "Europe/Paris", email="lyon@petcare.test")
    await add_product(pool, alerting, "SHAMPOO", recorded=10, threshold=5, movements=(12, -9))
    quiet = await add_store(pool, "Paws Tokyo", "Asia/Tokyo")
    await add_product(pool, quiet, "BRUSH", recorded=7, movements=(7,))
    parent_id = f"history-stock-{uuid.uuid4().hex[:8]}"
    async with real_worker(dev_client, job_settings, pool):
        result = await dev_client.execute_workflow(
            StockReconciliationWorkflow.run,
            StockReconciliationInput(force=True),
            id=parent_id,
            task_queue=job_settings.task_queue,
        )
        unknown_id = f"history-stock-unknown-{uuid.uuid4().hex[:8]}"
        with pytest.raises(WorkflowFailureError):
            await dev_client.execute_workflow(
                StockReconciliationWorkflow.run,
                StockReconciliationInput(store_id=uuid.uuid4()),
                id=unknown_id,
                task_queue=job_settings.task_queue,
            )

    assert sorted(outcome.status for outcome in result.stores) == ["reconciled", "reconciled"]
    assert any(mail.recipients == ["lyon@petcare.test"] for mail in smtp_sink.received)
    await save(dev_client, "StockReconciliationWorkflow", "two stores forced", "completed", parent_id)
    await save(dev_client, "StockReconciliationWorkflow", "unknown store", "failed", unknown_id)
    child = f"{parent_id}/store-{alerting}"
    await save(dev_client, "StoreStockReconciliationWorkflow", "low stock alert", "completed", child)


async def test_record_alert_sweep(dev_client: Client, job_settings: Settings, pool: asyncpg.Pool) -> None:
    idle_queue = f"{job_settings.task_queue}-nobody"
    timed_out = await dev_client.start_workflow(
        StockReconciliationWorkflow.run,
        StockReconciliationInput(),
        id=f"history-timed-out-{uuid.uuid4().hex[:8]}",
        task_queue=idle_queue,
        execution_timeout=timedelta(seconds=1),
    )
    with pytest.raises(WorkflowFailureError):
        await timed_out.result()
    await until_visible(dev_client, f'TaskQueue="{idle_queue}" AND ExecutionStatus="TimedOut"', 1)
    sweep_id = f"history-sweep-{uuid.uuid4().hex[:8]}"
    async with real_worker(dev_client, job_settings, pool):
        outcome = await dev_client.execute_workflow(
            OpsAlertSweepWorkflow.run,
            TimedOutSweep(task_queue=idle_queue, workflow_types=sorted(ALERTED_WORKFLOW_TYPES)),
            id=sweep_id,
            task_queue=job_settings.task_queue,
        )
    assert (outcome.timed_out, outcome.sent) == (1, 1)
    await save(dev_client, "OpsAlertSweepWorkflow", "one timed-out run", "completed", sweep_id)
