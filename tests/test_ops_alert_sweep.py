"""Runs that hit their execution timeout: no workflow code reports them, so the sweep finds them
in visibility on the dev server and sends one alert per run (real worker, PostgreSQL and SMTP)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.alerts import OpsAlertActivities, timed_out_runs_query
from devstack.smtp_sink import SmtpSink
from petcare.alerts import (
    ALERTED_WORKFLOW_TYPES,
    TIMED_OUT_SWEEP_ACTIVITY,
    SweepOutcome,
    TimedOutSweep,
)
from petcare.config import Settings
from petcare.jobs import OPS_ALERT_SWEEP, STOCK_RECONCILIATION
from petcare.mail import Mailer
from petcare.metrics import _counts
from petcare.models.reminders import DRY_RUN_WORKFLOW_TYPE
from petcare.models.stock import StockReconciliationInput
from petcare.schedules import declared_schedules
from tests.support.polling import until_visible
from tests.support.reminder_data import SlowSinkHandler
from tests.support.workers import real_worker
from workflows.alerts import OpsAlertSweepWorkflow

OPS = "ops@petcare.test"


async def timed_out_run(client: Client, workflow_type: str, task_queue: str, argument: object) -> str:
    """A run nobody works on (no worker polls `task_queue`) that times out after a second."""
    handle = await client.start_workflow(
        workflow_type,
        argument,
        id=f"sweep-test-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        execution_timeout=timedelta(seconds=1),
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert handle.result_run_id is not None
    return handle.result_run_id


async def test_one_alert_per_timed_out_job_run_however_often_the_sweep_runs(
    dev_client: Client,
    task_queue: str,
    settings: Settings,
    pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert settings.ops_email is None
    alerting = settings.model_copy(
        update={"ops_email": OPS, "smtp": settings.smtp.model_copy(update={"port": smtp_sink.port})}
    )
    idle_queue = f"{task_queue}-nobody"
    job_run = await timed_out_run(
        dev_client, STOCK_RECONCILIATION.workflow_type, idle_queue, StockReconciliationInput()
    )
    await timed_out_run(dev_client, DRY_RUN_WORKFLOW_TYPE, idle_queue, None)  # a preview: no alert
    sweep = TimedOutSweep(task_queue=idle_queue, workflow_types=sorted(ALERTED_WORKFLOW_TYPES))
    await until_visible(dev_client, f'TaskQueue="{idle_queue}" AND ExecutionStatus="TimedOut"', 2)

    async with real_worker(dev_client, alerting, pool, task_queue):
        outcomes: list[SweepOutcome] = [
            await dev_client.execute_workflow(
                OpsAlertSweepWorkflow.run, sweep, id=f"sweep-{uuid.uuid4().hex[:8]}", task_queue=task_queue
            )
            for _ in range(2)
        ]

    assert [(outcome.timed_out, outcome.sent) for outcome in outcomes] == [(1, 1), (1, 0)]

    # Without PETCARE_OPS_EMAIL the sweep still finds the run and says so in the log, sending nothing.
    caplog.set_level(logging.WARNING)
    async with Mailer(alerting.smtp) as mailer:
        silent = OpsAlertActivities(pool, mailer, settings)
        unsent = await ActivityEnvironment(client=dev_client).run(silent.alert_timed_out_runs, sweep)
    assert (unsent.timed_out, unsent.sent) == (1, 0)
    assert any("no PETCARE_OPS_EMAIL" in record.getMessage() for record in caplog.records)
    [mail] = smtp_sink.received
    assert mail.recipients == [OPS]
    assert mail.message["Subject"] == "[petcare] stock-reconciliation run failed: TimedOut"
    assert mail.message["Message-ID"] == f"<failed-run-{job_run}@petcare.local>"
    body = mail.message.get_content()
    assert f"Run id:       {job_run}" in body
    assert "hit its execution timeout" in body
    assert await pool.fetchval("SELECT count(*) FROM ops_alerts WHERE sent_at IS NOT NULL") == 1


def test_the_sweep_is_scheduled_for_the_workers_task_queue(settings: Settings) -> None:
    [declaration] = [d for d in declared_schedules(settings) if d.job == OPS_ALERT_SWEEP]
    assert isinstance(declaration.argument, TimedOutSweep)
    assert declaration.argument.task_queue == settings.task_queue
    assert set(declaration.argument.workflow_types) == ALERTED_WORKFLOW_TYPES
    # A lookback longer than the interval: a late or skipped sweep misses no run.
    interval = declaration.spec.intervals[0].every
    assert timedelta(seconds=declaration.argument.lookback_seconds) >= 3 * interval


def test_a_name_that_could_end_a_query_literal_stays_one_literal() -> None:
    since = datetime(2026, 11, 29, tzinfo=UTC)
    query = timed_out_runs_query(TimedOutSweep(task_queue="petcare", workflow_types=["A", "B"]), since)
    assert query == (
        'ExecutionStatus="TimedOut" AND TaskQueue="petcare" AND WorkflowType IN ("A", "B") '
        'AND CloseTime > "2026-11-29T00:00:00+00:00"'
    )
    sweep = TimedOutSweep(task_queue='x" OR WorkflowType!="', workflow_types=["A"])
    query = timed_out_runs_query(sweep, since)
    assert 'TaskQueue="x\\" OR WorkflowType!=\\"" AND' in query


def test_the_sweeps_alerts_count_in_the_alerts_sent_metric() -> None:
    # An outcome recorded before the webhook: every alert was an email.
    earlier = SweepOutcome(timed_out=3, sent=2)
    assert _counts(earlier) == [("petcare_ops_alerts_sent", 2, {"channel": "email"})]
    both = SweepOutcome(timed_out=3, sent=2, sent_by_channel={"email": 2, "webhook": 1})
    assert _counts(both) == [
        ("petcare_ops_alerts_sent", 2, {"channel": "email"}),
        ("petcare_ops_alerts_sent", 1, {"channel": "webhook"}),
    ]


@workflow.defn(name="OpsAlertSweepShortHeartbeat")
class ShortHeartbeatSweep:
    """The sweep's activity with a heartbeat timeout shorter than one (slow) SMTP send, retried at once."""

    @workflow.run
    async def run(self, sweep: TimedOutSweep) -> SweepOutcome:
        outcome: SweepOutcome = await workflow.execute_activity(
            TIMED_OUT_SWEEP_ACTIVITY,
            sweep,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=2),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3),
            result_type=SweepOutcome,
        )
        return outcome


async def test_a_send_slower_than_the_heartbeat_timeout_is_not_sent_again_by_a_retry(
    dev_client: Client, task_queue: str, settings: Settings, pool: asyncpg.Pool
) -> None:
    sink = SmtpSink("127.0.0.1", 0, SlowSinkHandler(delay=4.0))  # twice the heartbeat timeout
    await sink.start()
    alerting = settings.model_copy(
        update={"ops_email": OPS, "smtp": settings.smtp.model_copy(update={"port": sink.port})}
    )
    idle_queue = f"{task_queue}-nobody"
    await timed_out_run(
        dev_client, STOCK_RECONCILIATION.workflow_type, idle_queue, StockReconciliationInput()
    )
    sweep = TimedOutSweep(task_queue=idle_queue, workflow_types=sorted(ALERTED_WORKFLOW_TYPES))
    await until_visible(dev_client, f'TaskQueue="{idle_queue}" AND ExecutionStatus="TimedOut"', 1)
    try:
        async with (
            Mailer(alerting.smtp) as mailer,
            Worker(
                dev_client,
                task_queue=task_queue,
                workflows=[ShortHeartbeatSweep],
                activities=[OpsAlertActivities(pool, mailer, alerting).alert_timed_out_runs],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ),
        ):
            handle = await dev_client.start_workflow(
                ShortHeartbeatSweep.run, sweep, id=f"sweep-{uuid.uuid4().hex[:8]}", task_queue=task_queue
            )
            outcome = await handle.result()
            history = await handle.fetch_history()
    finally:
        await sink.stop()
    assert (outcome.timed_out, outcome.sent) == (1, 1)
    started = [event for event in history.events if event.HasField("activity_task_started_event_attributes")]
    assert [event.activity_task_started_event_attributes.attempt for event in started] == [1]
    assert len(sink.received) == 1
