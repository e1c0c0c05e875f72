"""Failure alerts that survive an SMTP outage: PETCARE_OPS_WEBHOOK_URL gets each alert once while
the mail server is down (and the email follows once, when it is back), a webhook outage does not
stop the email, the URL never shows; a stock run alerts each failed store once per local day."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import ClientSession
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.alerts import OpsAlertActivities, OpsWebhook
from devstack.ports import free_port
from devstack.rows import add_store
from devstack.smtp_sink import SmtpSink
from petcare.alerts import FailedRun, FailedStore, FailedStores
from petcare.config import Settings
from petcare.errors import ErrorType
from petcare.jobs import FINANCIAL_EXPORT, STOCK_RECONCILIATION
from petcare.logs import JsonFormatter
from petcare.mail import Mailer
from petcare.metrics import _counts
from petcare.models.exports import FinancialExportInput
from petcare.models.stock import StockReconciliationInput, StockReconciliationResult
from tests.support.polling import poll
from tests.support.webhook import SECRET_PATH, WebhookReceiver, webhook
from tests.support.workers import real_worker

__all__ = ["webhook"]  # the fixture, used by name

OPS = "ops@petcare.test"


@pytest.fixture
def smtp_port() -> int:
    """A port where no mail server listens (yet)."""
    return free_port()


@pytest.fixture
def alerting(settings: Settings, webhook: WebhookReceiver, smtp_port: int) -> Settings:
    return Settings.model_validate(
        settings.model_dump()
        | {
            "database_url": settings.database_url,
            "ops_email": OPS,
            "ops_webhook_url": webhook.url,
            "smtp": settings.smtp.model_copy(update={"port": smtp_port}).model_dump(),
        }
    )


@pytest_asyncio.fixture
async def alerts(alerting: Settings, pool: asyncpg.Pool) -> AsyncIterator[OpsAlertActivities]:
    async with Mailer(alerting.smtp) as mailer, ClientSession() as http:
        yield OpsAlertActivities(pool, mailer, alerting, OpsWebhook.from_settings(alerting, http))


def failed_run() -> FailedRun:
    return FailedRun(
        job=STOCK_RECONCILIATION.key,
        workflow_type=STOCK_RECONCILIATION.workflow_type,
        workflow_id="stock-reconciliation-x",
        run_id=str(uuid.uuid4()),
        namespace="default",
        error_type="DatabaseBusy",
        error_message="no connection",
        failed_at=datetime(2026, 11, 28, 2, 5, tzinfo=UTC),
    )


async def attempt(alerts: OpsAlertActivities, run: FailedRun) -> Any:
    """One attempt of the alert activity: its outcome, or the ApplicationError it failed with."""
    try:
        return await ActivityEnvironment().run(alerts.alert_failed_run, run)
    except ApplicationError as error:
        return error


async def test_smtp_down_the_webhook_gets_one_alert_and_the_email_follows_once(
    alerts: OpsAlertActivities,
    webhook: WebhookReceiver,
    smtp_port: int,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    run = failed_run()
    for _ in range(2):  # the first attempt and Temporal's retry, SMTP still down
        error = await attempt(alerts, run)
        assert isinstance(error, ApplicationError)
        assert error.type == ErrorType.MAIL_UNAVAILABLE
        assert not error.non_retryable
    assert len(webhook.received) == 1, "the webhook is posted once, not on every retry"
    text = webhook.received[0]["text"]
    assert text.startswith("[petcare] stock-reconciliation run failed: DatabaseBusy")
    assert f"Run id:       {run.run_id}" in text

    sink = SmtpSink("127.0.0.1", smtp_port)  # the mail server is back
    sink.handler.mail_dir = tmp_path / "mail"
    await sink.start()
    try:
        outcome = await attempt(alerts, run)
        assert (outcome.sent, outcome.channels) == (True, ["email"])
        again = await attempt(alerts, run)
        assert (again.sent, again.reason) == (False, "already sent")
    finally:
        await sink.stop()
    assert len(sink.received) == 1
    assert len(webhook.received) == 1
    assert _counts(outcome) == [("petcare_ops_alerts_sent", 1, {"channel": "email"})]
    # Our log lines (the receiver's access log stands for the chat service's own).
    ours = [record for record in caplog.records if record.name != "aiohttp.access"]
    lines = [JsonFormatter().format(record) for record in ours]
    assert any("failure alert sent by webhook" in line for line in lines)
    assert not any(SECRET_PATH in line for line in lines), "the webhook URL is a secret"


async def test_a_webhook_outage_does_not_stop_the_email(
    alerts: OpsAlertActivities, webhook: WebhookReceiver, smtp_port: int, tmp_path: Any
) -> None:
    sink = SmtpSink("127.0.0.1", smtp_port)
    sink.handler.mail_dir = tmp_path / "mail"
    await sink.start()
    try:
        run = failed_run()
        webhook.status = 503
        error = await attempt(alerts, run)
        assert isinstance(error, ApplicationError)
        assert (error.type, error.non_retryable) == (ErrorType.OPS_WEBHOOK_UNAVAILABLE, False)
        assert len(sink.received) == 1, "the email went out all the same"
        webhook.status = 200
        outcome = await attempt(alerts, run)
        assert outcome.channels == ["webhook"]
        assert len(sink.received) == 1, "the retry does not email again"
        assert len(webhook.received) == 1
    finally:
        await sink.stop()


@pytest.mark.parametrize("status", [404, 302])
async def test_a_refused_or_redirecting_webhook_fails_for_good_without_naming_the_url(
    alerts: OpsAlertActivities, webhook: WebhookReceiver, status: int
) -> None:
    webhook.status = status
    error = await attempt(alerts, failed_run())
    assert isinstance(error, ApplicationError)
    # SMTP is down too: the retryable failure is raised first, so the retry retries both.
    assert error.type == ErrorType.MAIL_UNAVAILABLE
    alerts._settings = alerts._settings.model_copy(update={"ops_email": None})
    error = await attempt(alerts, failed_run())
    assert isinstance(error, ApplicationError)
    assert (error.type, error.non_retryable) == (ErrorType.OPS_WEBHOOK_MISCONFIGURED, True)
    assert f"refused the alert with {status}" in error.message
    assert "PETCARE_OPS_WEBHOOK_URL" in error.message
    assert SECRET_PATH not in error.message
    assert webhook.redirected == [], "no redirect is followed"


async def test_one_alert_per_failed_run_while_smtp_is_down(
    dev_client: Client, alerting: Settings, pool: asyncpg.Pool, webhook: WebhookReceiver, task_queue: str
) -> None:
    async with real_worker(dev_client, alerting, pool, task_queue):
        handles = [
            await dev_client.start_workflow(
                FINANCIAL_EXPORT.workflow_type,
                FinancialExportInput(export_id=uuid.uuid4()),  # nobody requested it: the run fails
                id=f"ops-webhook-{uuid.uuid4().hex[:8]}",
                task_queue=task_queue,
            )
            for _ in range(2)
        ]
        try:

            async def retried() -> bool:
                # Each run's alert activity ran twice, the email failing both times (a pending
                # activity shows the next attempt's number while it waits for its backoff).
                for handle in handles:
                    pending = (await handle.describe()).raw_description.pending_activities
                    if not pending or pending[0].attempt < 3:
                        return False
                return True

            await poll(retried, timeout=30, every=0.5, what="the alerts retried")
            texts = [message["text"] for message in webhook.received]
            assert len(texts) == 2, texts
            for handle in handles:
                assert sum(f"Workflow id:  {handle.id}\n" in text for text in texts) == 1
            assert all("financial-export run failed: ExportNotFound" in text for text in texts)
            marks = await pool.fetch("SELECT sent_at, webhook_sent_at FROM ops_alerts")
            assert len(marks) == 2
            assert all(row["sent_at"] is None and row["webhook_sent_at"] is not None for row in marks)
        finally:
            for handle in handles:
                await handle.terminate(reason="test over")


async def test_one_alert_per_failed_store_and_local_day(
    alerts: OpsAlertActivities, webhook: WebhookReceiver
) -> None:
    alerts._settings = alerts._settings.model_copy(update={"ops_email": None})  # webhook only
    first, second = uuid.uuid4(), uuid.uuid4()
    day = date(2026, 11, 28)

    def report(*stores: tuple[uuid.UUID, date]) -> FailedStores:
        return FailedStores(
            workflow_id=f"stock-reconciliation-{uuid.uuid4().hex[:6]}",
            run_id=str(uuid.uuid4()),
            namespace="default",
            stores=[
                FailedStore(store_id=store, day=on, status="failed", error="boom") for store, on in stores
            ],
            failed_at=datetime(2026, 11, 28, 3, tzinfo=UTC),
        )

    run = ActivityEnvironment().run
    outcome = await run(alerts.alert_failed_stores, report((first, day), (second, day)))
    assert (outcome.failed, outcome.sent, outcome.sent_by_channel) == (2, 2, {"webhook": 2})
    assert _counts(outcome) == [
        ("petcare_ops_alerts_sent", 2, {"channel": "webhook"}),
        ("petcare_stock_stores_failed", 2, {}),
    ]
    # Another run the same local day (a manual trigger, the next hourly tick): nothing new.
    again = await run(alerts.alert_failed_stores, report((first, day), (second, day)))
    assert (again.failed, again.sent) == (2, 0)
    # The next day it fails again: alerted again.
    following = await run(alerts.alert_failed_stores, report((first, day + timedelta(days=1))))
    assert following.sent == 1
    texts = [message["text"] for message in webhook.received]
    assert len(texts) == 3
    assert f"store {first} failed on 2026-11-28" in texts[0]
    assert f"store {first} failed on 2026-11-29" in texts[2]


async def test_a_stock_run_with_a_failed_store_alerts_it_once(
    dev_client: Client,
    settings: Settings,
    pool: asyncpg.Pool,
    webhook: WebhookReceiver,
    smtp_sink: SmtpSink,
    task_queue: str,
) -> None:
    configured = settings.model_copy(
        update={
            "ops_email": OPS,
            "smtp": settings.smtp.model_copy(update={"port": smtp_sink.port}),
        }
    )
    configured = Settings.model_validate(
        configured.model_dump() | {"database_url": settings.database_url, "ops_webhook_url": webhook.url}
    )
    lost = await add_store(pool, "Lost", timezone="Mars/Olympus_Mons")  # fails: not an IANA zone
    await add_store(pool, "Fine")
    async with real_worker(dev_client, configured, pool, task_queue):
        for _ in range(2):
            result = await dev_client.execute_workflow(
                STOCK_RECONCILIATION.workflow_type,
                StockReconciliationInput(force=True),
                id=f"stock-alerts-{uuid.uuid4().hex[:8]}",
                task_queue=task_queue,
                result_type=StockReconciliationResult,
            )
            assert [outcome.store_id for outcome in result.stores if outcome.status == "failed"] == [lost]
    assert len(webhook.received) == 1, "one alert for the store and day, not one per run"
    assert f"stock reconciliation of store {lost} failed" in webhook.received[0]["text"]
    ops_mail = [mail for mail in smtp_sink.received if mail.recipients == [OPS]]
    subjects = [mail.message["Subject"] for mail in ops_mail]
    assert sum(f"store {lost} failed" in subject for subject in subjects) == 1, subjects
