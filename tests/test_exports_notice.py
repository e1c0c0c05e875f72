"""The completion notice: who gets it, what it names, one per completed run (a retried activity
sends nothing more, a run that skips an already-completed export sends none); real PostgreSQL,
SMTP and, for the runs, the dev server with the real worker."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.exports import ExportNoticeActivities
from devstack.rows import add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import ExportSettings, Settings, SmtpSettings
from petcare.errors import ErrorType
from petcare.mail import Mailer
from petcare.models.exports import ExportedFile, FinancialExportInput, NoticeRequest, export_workflow_id
from tests.support.exports import OCTOBER, request_export
from tests.support.workers import real_worker
from workflows.exports import FinancialExportWorkflow

NOTIFY = "accounts@petcare.test"
FILE = ExportedFile(
    name="invoices.csv",
    kind="invoices",
    rows=12,
    bytes=3456,
    sha256="ab" * 32,
    remote_path="/exports/2025-10-01_2025-10-31/x/invoices.csv",
)


def notices(pool: asyncpg.Pool, sink: SmtpSink, **export: object) -> ExportNoticeActivities:
    mailer = Mailer(SmtpSettings(port=sink.port, timeout_seconds=5.0))
    settings = ExportSettings.model_validate(export)
    return ExportNoticeActivities(pool, mailer, settings, sender="Petcare <exports@petcare.test>")


async def notify(activities: ExportNoticeActivities, export_id: UUID, run_id: str | None = None) -> str:
    """The notice of one run (by default the export's only one)."""
    run_id = run_id or f"run-of-{export_id}"
    outcome = await ActivityEnvironment().run(
        activities.notify_completed, NoticeRequest(export_id=export_id, run_id=run_id, files=[FILE])
    )
    return outcome.reason


async def test_one_notice_per_run_to_the_store_whatever_the_retries(
    pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    store = await add_store(
        pool, "Downtown\r\nBcc: thief@evil.test", "America/New_York", email="downtown@petcare.test"
    )
    async with pool.acquire() as connection:
        export_id = await request_export(connection, store_id=store)
    activities = notices(pool, smtp_sink, notify_email=NOTIFY)
    assert await notify(activities, export_id) == "sent"
    assert await notify(activities, export_id) == "already sent"  # the activity retried
    assert await notify(activities, export_id, run_id="run-2") == "sent"  # a forced re-export's run
    assert len(smtp_sink.received) == 2
    mail = smtp_sink.received[0]
    assert mail.recipients == ["downtown@petcare.test"]
    subject = mail.message["Subject"]
    assert "\n" not in subject
    assert "2025-10 csv" in subject
    text = mail.message.get_content()
    for fragment in (
        str(export_id),
        "2025-10-01 to 2025-10-31",
        "Format:  csv",
        "invoices.csv: 12 rows, 3456 bytes",
    ):
        assert fragment in text
    assert FILE.sha256 in text
    assert FILE.remote_path in text
    assert mail.message["Message-ID"] != smtp_sink.received[1].message["Message-ID"]


async def test_recipients(pool: asyncpg.Pool, smtp_sink: SmtpSink) -> None:
    store = await add_store(pool, "Uptown", email="uptown@petcare.test")
    bare = await add_store(pool, "No mail")
    async with pool.acquire() as connection:
        all_stores = await request_export(connection)
        of_store = await request_export(connection, store_id=store)
        of_bare = await request_export(connection, store_id=bare)
    assert await notify(notices(pool, smtp_sink), all_stores) == "no recipient"
    assert await notify(notices(pool, smtp_sink), of_bare) == "no recipient"
    assert smtp_sink.received == []
    assert await notify(notices(pool, smtp_sink, notify_email=NOTIFY), all_stores) == "sent"
    assert await notify(notices(pool, smtp_sink, notify_email=NOTIFY), of_bare) == "sent"
    overridden = notices(pool, smtp_sink, notify_email=NOTIFY, notify_override=True)
    assert await notify(overridden, of_store) == "sent"
    assert [mail.recipients for mail in smtp_sink.received] == [[NOTIFY]] * 3
    assert "all stores" in smtp_sink.received[0].message["Subject"]


async def test_a_skipped_export_sends_no_second_notice(
    dev_client: Client,
    settings: Settings,
    task_queue: str,
    pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    store = await add_store(pool, "Downtown", "America/New_York", email="downtown@petcare.test")
    async with pool.acquire() as connection:
        export_id = await request_export(connection, store_id=store)
    job_settings = settings.model_copy(
        update={
            "task_queue": task_queue,
            "smtp": settings.smtp.model_copy(update={"port": smtp_sink.port, "timeout_seconds": 5.0}),
            "export": ExportSettings(destination="local", local_dir=tmp_path / "exports"),
        }
    )
    async with real_worker(dev_client, job_settings, pool):
        for _ in range(2):  # the second run finds the export completed and skips it
            result = await dev_client.execute_workflow(
                FinancialExportWorkflow.run,
                FinancialExportInput(export_id=export_id),
                id=export_workflow_id(export_id),
                task_queue=task_queue,
            )
    assert result.skipped
    assert len(smtp_sink.received) == 1
    assert OCTOBER[0].isoformat() in smtp_sink.received[0].message.get_content()


async def test_a_store_email_of_two_addresses_fails_the_notice_for_good(
    pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, "Twins", email="a@petcare.test, b@petcare.test")
    async with pool.acquire() as connection:
        export_id = await request_export(connection, store_id=store)
    with pytest.raises(ApplicationError) as raised:
        await notify(notices(pool, smtp_sink), export_id)
    assert raised.value.type == ErrorType.MAIL_REJECTED
    assert raised.value.non_retryable
    assert "2 addresses" in raised.value.message
    assert smtp_sink.received == []
