"""Failure alerts end to end: a real job run fails on the dev server (sandboxed workflow, real
PostgreSQL, real SMTP server) and exactly one alert per run reaches PETCARE_OPS_EMAIL; the logs of
that failing path are structured and carry no secret."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiohttp import ClientSession
from pydantic import SecretStr
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.alerts import OpsAlertActivities
from devstack.smtp_sink import SmtpSink
from petcare.alerts import FailedRun
from petcare.config import Settings
from petcare.jobs import FINANCIAL_EXPORT
from petcare.logs import JsonFormatter
from petcare.mail import Mailer
from petcare.models.exports import FinancialExportInput
from petcare.models.reminders import DRY_RUN_WORKFLOW_TYPE
from worker_main import WorkerResources, workers_running
from workflows.alerts import OpsAlertInterceptor

SECRETS = ("db-secret-7f3a", "sftp-secret-91c2", "sms-secret-44d0", "api-secret-0b8e")
OPS = "ops@petcare.test"
WEB_UI = "http://temporal-ui.test:8233"


@pytest.fixture
def alert_settings(settings: Settings, smtp_sink: SmtpSink) -> Settings:
    """Every kind of secret configured, as in production; the database URL carries a password
    (the test server trusts local connections, so it is sent but never checked)."""
    url = settings.require_database_url().replace("postgres:@", f"postgres:{SECRETS[0]}@", 1)
    assert SECRETS[0] in url
    return settings.model_copy(
        update={
            "database_url": SecretStr(url),
            "ops_email": OPS,
            "web_ui_url": WEB_UI,
            "smtp": settings.smtp.model_copy(update={"port": smtp_sink.port}),
            "sftp": settings.sftp.model_copy(update={"password": SecretStr(SECRETS[1])}),
            "sms": settings.sms.model_copy(update={"auth_token": SecretStr(SECRETS[2])}),
            "api": settings.api.model_copy(update={"token": SecretStr(SECRETS[3])}),
        }
    )


async def test_a_failed_run_sends_exactly_one_alert_and_logs_no_secret(
    dev_client: Client,
    task_queue: str,
    alert_settings: Settings,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    url = alert_settings.require_database_url()
    async with (
        asyncpg.create_pool(url, min_size=1, max_size=4) as pool,
        Mailer(alert_settings.smtp) as mailer,
        ClientSession() as http,
    ):
        resources = WorkerResources(
            settings=alert_settings, pool=pool, upload_pool=pool, mailer=mailer, http=http
        )
        run_ids = []
        async with workers_running(dev_client, resources, task_queue=task_queue):
            for _ in range(2):
                # An export id nobody requested: the real export workflow fails, non-retryably.
                handle = await dev_client.start_workflow(
                    FINANCIAL_EXPORT.workflow_type,
                    FinancialExportInput(export_id=uuid.uuid4()),
                    id=f"ops-alert-{uuid.uuid4().hex[:8]}",
                    task_queue=task_queue,
                )
                with pytest.raises(WorkflowFailureError):
                    await handle.result()
                run_ids.append((handle.id, handle.result_run_id))

        # The interceptor sends before it lets the run fail: the mail is already in.
        assert len(smtp_sink.received) == 2, "one alert per failed run"
        for (workflow_id, run_id), mail in zip(run_ids, smtp_sink.received, strict=True):
            assert mail.recipients == [OPS]
            message = mail.message
            assert message["Subject"] == "[petcare] financial-export run failed: ExportNotFound"
            assert message["Message-ID"] == f"<failed-run-{run_id}@petcare.local>"
            body = message.get_content()
            assert f"Workflow id:  {workflow_id}" in body
            assert f"Run id:       {run_id}" in body
            assert "Error:        ExportNotFound: " in body
            assert f"{WEB_UI}/namespaces/default/workflows/{workflow_id}/{run_id}" in body
            assert not any(secret in body for secret in SECRETS)

        # A retry of the alert activity (e.g. the worker died after sending) sends nothing more.
        workflow_id, run_id = run_ids[0]
        assert run_id is not None
        alerts = OpsAlertActivities(pool, mailer, alert_settings)
        replayed = await ActivityEnvironment().run(
            alerts.alert_failed_run,
            FailedRun(
                job=FINANCIAL_EXPORT.key,
                workflow_type=FINANCIAL_EXPORT.workflow_type,
                workflow_id=workflow_id,
                run_id=run_id,
                namespace="default",
                error_type="ExportNotFound",
                error_message="again",
                failed_at=smtp_sink.received[0].message["Date"].datetime,
            ),
        )
        assert (replayed.sent, replayed.reason) == (False, "already sent")
        assert len(smtp_sink.received) == 2
        rows = await pool.fetch("SELECT run_id, sent_at FROM ops_alerts ORDER BY created_at")
        assert [row["run_id"] for row in rows] == [run_id for _, run_id in run_ids]
        assert all(row["sent_at"] is not None for row in rows)

    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    for secret in SECRETS:
        assert not any(secret in line for line in lines), f"secret {secret} in the logs"
    entries = [json.loads(line) for line in lines]
    failed = [entry for entry in entries if entry["message"].startswith("job run failed: ExportNotFound")]
    assert len(failed) == 2
    assert {entry["temporal_workflow"]["workflow_id"] for entry in failed} == {wid for wid, _ in run_ids}
    sent = [entry for entry in entries if entry["message"].startswith("failure alert sent")]
    assert len(sent) == 2
    assert all(entry["temporal_activity"]["activity_type"] == "ops.alert_failed_run" for entry in sent)


def stock_run_failed(error_type: str = "ApplicationError") -> FailedRun:
    return FailedRun(
        job="stock-reconciliation",
        workflow_type="StockReconciliationWorkflow",
        workflow_id="stock-reconciliation-x",
        run_id=str(uuid.uuid4()),
        namespace="default",
        error_type=error_type,
        error_message="boom",
        failed_at=datetime(2026, 11, 28, 2, 5, tzinfo=UTC),
    )


async def test_without_ops_email_the_run_still_fails_and_nothing_is_sent(
    settings: Settings, pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    unset = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={"port": smtp_sink.port})})
    assert unset.ops_email is None
    async with Mailer(unset.smtp) as mailer:
        outcome = await ActivityEnvironment().run(
            OpsAlertActivities(pool, mailer, unset).alert_failed_run,
            stock_run_failed(),
        )
    assert (outcome.sent, outcome.reason) == (False, "no PETCARE_OPS_EMAIL nor PETCARE_OPS_WEBHOOK_URL")
    assert smtp_sink.received == []
    assert await pool.fetchval("SELECT count(*) FROM ops_alerts") == 0


@workflow.defn(name=DRY_RUN_WORKFLOW_TYPE)
class FailingPreview:
    """Stands in for the reminder dry run under its type name: a short preview the API waits for."""

    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("preview failed", type="PreviewFailed", non_retryable=True)


@workflow.defn(name=FINANCIAL_EXPORT.workflow_type)
class FailingExport:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("export failed", type="ExportFailed", non_retryable=True)


async def test_only_job_runs_alert_not_previews(
    dev_client: Client, task_queue: str, alert_settings: Settings, pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    async with Mailer(alert_settings.smtp) as mailer:
        alerts = OpsAlertActivities(pool, mailer, alert_settings)
        async with Worker(
            dev_client,
            task_queue=task_queue,
            workflows=[FailingPreview, FailingExport],
            activities=[alerts.alert_failed_run],
            interceptors=[OpsAlertInterceptor()],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            for workflow_type in (DRY_RUN_WORKFLOW_TYPE, FINANCIAL_EXPORT.workflow_type):
                handle = await dev_client.start_workflow(
                    workflow_type, id=f"ops-alert-{uuid.uuid4().hex[:8]}", task_queue=task_queue
                )
                with pytest.raises(WorkflowFailureError):
                    await handle.result()
    # The export's alert only: the dry run's caller already got its error in the API answer.
    assert [mail.message["Subject"] for mail in smtp_sink.received] == [
        "[petcare] financial-export run failed: ExportFailed"
    ]


async def test_an_ops_email_of_two_addresses_fails_the_alert_clearly_and_mails_nobody(
    settings: Settings, pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    two = settings.model_copy(
        update={
            "ops_email": "ops@petcare.test, boss@petcare.test",
            "smtp": settings.smtp.model_copy(update={"port": smtp_sink.port}),
        }
    )
    async with Mailer(two.smtp) as mailer:
        with pytest.raises(ApplicationError) as raised:
            await ActivityEnvironment().run(
                OpsAlertActivities(pool, mailer, two).alert_failed_run,
                stock_run_failed(),
            )
    assert (raised.value.type, raised.value.non_retryable) == ("MailRejected", True)
    assert "holds 2 addresses" in str(raised.value)
    assert smtp_sink.received == []


async def test_an_error_type_with_line_breaks_is_folded_into_the_alert_subject(
    settings: Settings, pool: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    alerting = settings.model_copy(
        update={"ops_email": OPS, "smtp": settings.smtp.model_copy(update={"port": smtp_sink.port})}
    )
    async with Mailer(alerting.smtp) as mailer:
        outcome = await ActivityEnvironment().run(
            OpsAlertActivities(pool, mailer, alerting).alert_failed_run,
            # Data from the failed run, in the subject: folded onto its one line.
            stock_run_failed(error_type="Boom\r\nBcc: thief@example.net"),
        )
    assert outcome.sent
    [mail] = smtp_sink.received
    assert mail.recipients == [OPS]
    assert (
        mail.message["Subject"].strip()
        == "[petcare] stock-reconciliation run failed: Boom Bcc: thief@example.net"
    )
    assert mail.message["Bcc"] is None
