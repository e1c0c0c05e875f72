"""Sends the failure alert of a job run to PETCARE_OPS_EMAIL, once per run whatever the retries."""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from petcare.alerts import ALERT_ACTIVITY, AlertOutcome, FailedRun, alert_email
from petcare.config import Settings
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
