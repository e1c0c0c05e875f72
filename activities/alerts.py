"""Sends the failure alert of a job run to PETCARE_OPS_EMAIL, once per run whatever the retries.

Two ways in: the workflow interceptor reports a run that fails (its code still runs), and the
sweep finds runs that hit their execution timeout (no workflow code runs then) in visibility.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from temporalio import activity
from temporalio.client import WorkflowExecution
from temporalio.exceptions import ApplicationError

from petcare.alerts import (
    ALERT_ACTIVITY,
    TIMED_OUT_SWEEP_ACTIVITY,
    AlertOutcome,
    FailedRun,
    SweepOutcome,
    TimedOutSweep,
    alert_email,
    timed_out_runs_query,
)
from petcare.config import Settings
from petcare.jobs import job_key_of
from petcare.mail import Mailer, MailRejected, MailUnavailable

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
        return await self._alert(run)

    @activity.defn(name=TIMED_OUT_SWEEP_ACTIVITY)
    async def alert_timed_out_runs(self, sweep: TimedOutSweep) -> SweepOutcome:
        """One alert per top-level job run of the task queue that timed out within the lookback
        (without PETCARE_OPS_EMAIL, a warning in the log per run and sweep)."""
        since = datetime.now(UTC) - timedelta(seconds=sweep.lookback_seconds)
        client = activity.client()
        timed_out = sent = 0
        async for execution in client.list_workflows(timed_out_runs_query(sweep, since)):
            if execution.parent_id is not None:
                # The parent handles its child's timeout (the stock job records that store as
                # failed in its report and carries on), as it does the child's other failures.
                continue
            timed_out += 1
            outcome = await self._alert(_timed_out_run(execution, client.namespace))
            sent += outcome.sent
            # An attempt that overran its timeout learns it here and stops, instead of sending
            # alongside its retry (both would find the same runs not yet sent).
            activity.heartbeat(timed_out)
        return SweepOutcome(timed_out=timed_out, sent=sent)

    async def _alert(self, run: FailedRun) -> AlertOutcome:
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
        try:
            await self._mailer.send(message)
        except MailRejected as error:
            raise ApplicationError(str(error), type="MailRejected", non_retryable=True) from None
        except MailUnavailable as error:
            raise ApplicationError(str(error), type="MailUnavailable") from None
        # A crash between the send and this update re-sends on retry, with the same Message-ID.
        await self._pool.execute(_MARK_SENT, run.run_id)
        activity.logger.info("failure alert sent", extra=log_extra)
        return AlertOutcome(sent=True, reason="sent")


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
