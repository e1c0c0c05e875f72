"""Failure alerts, the activity side: a run's alert to PETCARE_OPS_EMAIL, once whatever the retries.

Two ways in (workflows/alerts.py): the workflow interceptor reports a run that fails (its code
still runs), and the sweep finds runs that hit their execution timeout (no workflow code runs
then) in visibility.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import quote

import asyncpg
from temporalio import activity
from temporalio.client import WorkflowExecution

from activities.heartbeat import heartbeat_interval, heartbeating
from petcare import visibility
from petcare.alerts import (
    ALERT_ACTIVITY,
    TIMED_OUT_SWEEP_ACTIVITY,
    AlertOutcome,
    FailedRun,
    SweepOutcome,
    TimedOutSweep,
)
from petcare.config import Settings
from petcare.errors import DeliveryError, DeliveryRejected, delivery_failure
from petcare.jobs import job_key_of
from petcare.mail import Mailer, compose

MESSAGE_DOMAIN = "petcare-workers"

# The claim row exists before the send; only a run with `sent_at` set is skipped on retry.
_CLAIM = """
INSERT INTO ops_alerts (run_id, workflow_id, job, error)
VALUES ($1, $2, $3, $4)
ON CONFLICT (run_id) DO UPDATE SET run_id = EXCLUDED.run_id
RETURNING sent_at IS NOT NULL
"""
_MARK_SENT = "UPDATE ops_alerts SET sent_at = now() WHERE run_id = $1"


class OpsAlertActivities:
    def __init__(self, pool: asyncpg.Pool, mailer: Mailer, settings: Settings) -> None:
        self._pool = pool
        self._mailer = mailer
        self._settings = settings

    @activity.defn(name=ALERT_ACTIVITY)
    async def alert_failed_run(self, run: FailedRun) -> AlertOutcome:
        try:
            return await self._alert(run)
        except DeliveryError as error:  # PETCARE_OPS_EMAIL refused for good, our settings, or retry
            raise delivery_failure(error) from None

    @activity.defn(name=TIMED_OUT_SWEEP_ACTIVITY)
    async def alert_timed_out_runs(self, sweep: TimedOutSweep) -> SweepOutcome:
        """One alert per top-level job run of the task queue that timed out within the lookback
        (without PETCARE_OPS_EMAIL, a warning in the log per run and sweep). An alert refused for
        good is that run's alone: logged and counted, the sweep goes on with the others."""
        since = datetime.now(UTC) - timedelta(seconds=sweep.lookback_seconds)
        client = activity.client()
        timed_out = sent = failed = 0
        # Heartbeats all along, a slow SMTP call included: were they to stop for the heartbeat
        # timeout, a retry would start, find the alert in flight not yet sent, and send it again.
        async with heartbeating(lambda: timed_out, every=heartbeat_interval()):
            async for execution in client.list_workflows(timed_out_runs_query(sweep, since)):
                if execution.parent_id is not None:
                    # The parent handles its child's timeout (the stock job records that store as
                    # failed in its report and carries on), as it does the child's other failures.
                    continue
                timed_out += 1
                # Before the send as well: an attempt that overran its timeout learns it here and
                # stops, instead of sending alongside its retry (both would find the run unsent).
                activity.heartbeat(timed_out)
                try:
                    outcome = await self._alert(_timed_out_run(execution, client.namespace))
                except DeliveryRejected as error:
                    failed += 1
                    activity.logger.error(
                        "failure alert refused: %s", error, extra={"failed_run_id": execution.run_id}
                    )
                    continue
                except DeliveryError as error:
                    raise delivery_failure(error) from None
                sent += outcome.sent
        return SweepOutcome(timed_out=timed_out, sent=sent, failed=failed)

    async def _alert(self, run: FailedRun) -> AlertOutcome:
        """Raises the mailer's DeliveryError: DeliveryRejected (this alert, for good),
        DeliveryMisconfigured (our SMTP settings) or DeliveryUnavailable (retry later)."""
        recipient = self._settings.ops_email
        log_extra = {"workflow_id": run.workflow_id, "failed_run_id": run.run_id, "job": run.job}
        if not recipient:
            activity.logger.warning("job run failed; no PETCARE_OPS_EMAIL to alert", extra=log_extra)
            return AlertOutcome(sent=False, reason="no PETCARE_OPS_EMAIL")
        already_sent = await self._pool.fetchval(
            _CLAIM, run.run_id, run.workflow_id, run.job, f"{run.error_type}: {run.error_message}"
        )
        if already_sent:
            return AlertOutcome(sent=False, reason="already sent")
        message = alert_email(
            run,
            sender=self._settings.smtp.from_address,
            recipient=recipient,
            web_ui_url=self._settings.web_ui_url,
        )
        await self._mailer.send(message)
        # A crash between the send and this update re-sends on retry, with the same Message-ID.
        await self._pool.execute(_MARK_SENT, run.run_id)
        activity.logger.info("failure alert sent", extra=log_extra)
        return AlertOutcome(sent=True, reason="sent")


def web_ui_link(web_ui_url: str, run: FailedRun) -> str:
    """The run's page in the Temporal Web UI."""
    parts = (run.namespace, run.workflow_id, run.run_id)
    namespace, workflow_id, run_id = (quote(part, safe="") for part in parts)
    return f"{web_ui_url.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}/{run_id}"


def message_id(run: FailedRun) -> str:
    # Deterministic: should a retry ever send twice, mail clients show one message.
    return f"<failed-run.{run.run_id}@{MESSAGE_DOMAIN}>"


def alert_email(run: FailedRun, *, sender: str, recipient: str, web_ui_url: str) -> EmailMessage:
    """The alert; its subject names the job and error type, folded safe by `compose` like every
    header built from data. Raises UnsendableMessage when PETCARE_OPS_EMAIL is not one address."""
    return compose(
        sender=sender,
        recipient=recipient,
        subject=f"[petcare] {run.job} run failed: {run.error_type}",
        message_id=message_id(run),
        sent_at=run.failed_at,
        text=(
            f"A {run.job} run failed after its retries.\n\n"
            f"Job:          {run.job}\n"
            f"Workflow:     {run.workflow_type}\n"
            f"Workflow id:  {run.workflow_id}\n"
            f"Run id:       {run.run_id}\n"
            f"Failed at:    {run.failed_at.isoformat()}\n"
            f"Error:        {run.error_type}: {run.error_message}\n\n"
            f"Web UI: {web_ui_link(web_ui_url, run)}\n"
            f"CLI:    temporal workflow show --namespace {run.namespace} "
            f"--workflow-id {run.workflow_id} --run-id {run.run_id}\n"
        ),
    )


def _timed_out_run(execution: WorkflowExecution, namespace: str) -> FailedRun:
    closed_at = execution.close_time or datetime.now(UTC)
    return FailedRun(
        job=job_key_of(execution.typed_search_attributes, execution.workflow_type),
        workflow_type=execution.workflow_type,
        workflow_id=execution.id,
        run_id=execution.run_id,
        namespace=namespace,
        error_type="TimedOut",
        error_message=f"the run started at {execution.start_time.isoformat()} hit its execution timeout",
        failed_at=closed_at,
    )


def timed_out_runs_query(sweep: TimedOutSweep, since: datetime) -> str:
    """The visibility query of the sweep's runs: timed out, closed since `since`, of its types."""
    return visibility.all_of(
        visibility.equals(visibility.EXECUTION_STATUS, "TimedOut"),
        visibility.equals(visibility.TASK_QUEUE, sweep.task_queue),
        visibility.one_of(visibility.WORKFLOW_TYPE, sweep.workflow_types),
        visibility.after(visibility.CLOSE_TIME, since),
    )
