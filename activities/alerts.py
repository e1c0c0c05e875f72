"""Failure alerts, the activity side: a run's alert to PETCARE_OPS_EMAIL and PETCARE_OPS_WEBHOOK_URL,
once per channel whatever the retries.

Three ways in (workflows/alerts.py, workflows/stock.py): the workflow interceptor reports a run that
fails (its code still runs), the sweep finds runs that hit their execution timeout (no workflow
code runs then) in visibility, and a stock run reports its failed stores (one alert per store and
local day). Each channel is tried whatever the other did, and marked sent on its own, so an SMTP
outage neither silences the webhook nor makes a retry post it twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import aiohttp
import asyncpg
from temporalio import activity
from temporalio.client import WorkflowExecution

from activities.heartbeat import heartbeat_interval, heartbeating
from petcare import visibility
from petcare.alerts import (
    ALERT_ACTIVITY,
    FAILED_STORES_ACTIVITY,
    TIMED_OUT_SWEEP_ACTIVITY,
    AlertOutcome,
    Channel,
    FailedRun,
    FailedStore,
    FailedStores,
    FailedStoresOutcome,
    SweepOutcome,
    TimedOutSweep,
)
from petcare.config import ENV_PREFIX, Settings
from petcare.errors import (
    DeliveryError,
    DeliveryMisconfigured,
    DeliveryRejected,
    DeliveryUnavailable,
    delivery_failure,
    webhook_failure,
)
from petcare.jobs import STOCK_RECONCILIATION, job_key_of
from petcare.mail import Mailer, compose, stable_message_id

WEBHOOK_SETTING = f"{ENV_PREFIX}OPS_WEBHOOK_URL"
# One attempt's bound; Temporal retries (ALERT_RETRY), and a retry posts only if this one did not.
WEBHOOK_TIMEOUT = aiohttp.ClientTimeout(total=10)

# The claim row exists before the sends; a channel whose mark is set is skipped on retry. The row's
# key is the failed run's id, or `stock-store/<storeId>/<local date>` for a stock run's failed store.
_CLAIM = """
INSERT INTO ops_alerts (run_id, workflow_id, job, error)
VALUES ($1, $2, $3, $4)
ON CONFLICT (run_id) DO UPDATE SET run_id = EXCLUDED.run_id
RETURNING sent_at IS NOT NULL AS email, webhook_sent_at IS NOT NULL AS webhook
"""
_MARK_SENT: dict[Channel, str] = {
    "email": "UPDATE ops_alerts SET sent_at = now() WHERE run_id = $1",
    "webhook": "UPDATE ops_alerts SET webhook_sent_at = now() WHERE run_id = $1",
}


@dataclass(frozen=True)
class OpsMessage:
    """One alert, as each channel shows it; `key` makes it once per channel."""

    key: str
    workflow_id: str
    job: str
    error: str
    subject: str
    text: str
    message_id: str
    sent_at: datetime


class OpsWebhook:
    """POSTs `{"text": ...}` (Slack's incoming-webhook shape, which Mattermost, Rocket.Chat and
    most chat and paging tools accept) to PETCARE_OPS_WEBHOOK_URL. The URL is the credential: no
    message, log line or error names it. No redirect is followed (a 3xx is our settings' fault)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self._http = http
        self._url = url

    @classmethod
    def from_settings(cls, settings: Settings, http: aiohttp.ClientSession) -> OpsWebhook | None:
        url = settings.ops_webhook_url
        return cls(http, url.get_secret_value()) if url is not None else None

    async def post(self, text: str) -> None:
        """Raises DeliveryUnavailable (retry later) or DeliveryMisconfigured (our settings)."""
        try:
            async with self._http.post(
                self._url, json={"text": text}, timeout=WEBHOOK_TIMEOUT, allow_redirects=False
            ) as response:
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            # The class only: aiohttp's messages can quote the URL.
            raise DeliveryUnavailable(
                f"the ops webhook ({WEBHOOK_SETTING}) did not answer: {type(error).__name__}"
            ) from None
        if 200 <= status < 300:
            return
        if status == 429 or status >= 500:
            raise DeliveryUnavailable(f"the ops webhook ({WEBHOOK_SETTING}) answered {status}")
        raise DeliveryMisconfigured(
            f"the ops webhook ({WEBHOOK_SETTING}) refused the alert with {status}: check the URL"
        )


class OpsAlertActivities:
    def __init__(
        self, pool: asyncpg.Pool, mailer: Mailer, settings: Settings, webhook: OpsWebhook | None = None
    ) -> None:
        self._pool = pool
        self._mailer = mailer
        self._settings = settings
        self._webhook = webhook

    @activity.defn(name=ALERT_ACTIVITY)
    async def alert_failed_run(self, run: FailedRun) -> AlertOutcome:
        try:
            return await self._alert(run)
        except ChannelsFailed as error:  # each channel's own classification; a retryable one first
            raise error.application_error() from None

    @activity.defn(name=FAILED_STORES_ACTIVITY)
    async def alert_failed_stores(self, report: FailedStores) -> FailedStoresOutcome:
        """One alert per failed store and local day: a store that fails in several runs of a day
        (a retry, a manual trigger) is alerted once, and again on the next day it fails."""
        sent = done = 0
        by_channel: Counter[str] = Counter()
        # Heartbeats all along, as the sweep does: a slow send never lets a retry start beside it.
        async with heartbeating(lambda: done, every=heartbeat_interval()):
            for store in report.stores:
                activity.heartbeat(done)
                message = failed_store_message(
                    report, store, self._settings.web_ui_url, self._settings.smtp.from_address
                )
                try:
                    outcome = await self._deliver(message)
                except ChannelsFailed as error:
                    raise error.application_error() from None
                done += 1
                sent += outcome.sent
                by_channel.update(outcome.channels)
        return FailedStoresOutcome(failed=len(report.stores), sent=sent, sent_by_channel=dict(by_channel))

    @activity.defn(name=TIMED_OUT_SWEEP_ACTIVITY)
    async def alert_timed_out_runs(self, sweep: TimedOutSweep) -> SweepOutcome:
        """One alert per top-level job run of the task queue that timed out within the lookback
        (without PETCARE_OPS_EMAIL, a warning in the log per run and sweep). An alert refused for
        good is that run's alone: logged and counted, the sweep goes on with the others."""
        since = datetime.now(UTC) - timedelta(seconds=sweep.lookback_seconds)
        client = activity.client()
        timed_out = sent = failed = 0
        by_channel: Counter[str] = Counter()
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
                except ChannelsFailed as error:
                    if not error.only_rejections():
                        raise error.application_error() from None
                    failed += 1
                    activity.logger.error(
                        "failure alert refused: %s", error, extra={"failed_run_id": execution.run_id}
                    )
                    continue
                sent += outcome.sent
                by_channel.update(outcome.channels)
        return SweepOutcome(timed_out=timed_out, sent=sent, failed=failed, sent_by_channel=dict(by_channel))

    async def _alert(self, run: FailedRun) -> AlertOutcome:
        return await self._deliver(
            failed_run_message(run, self._settings.web_ui_url, self._settings.smtp.from_address)
        )

    async def _deliver(self, message: OpsMessage) -> AlertOutcome:
        """Each configured channel not yet sent for `message.key`, each whatever the other did.
        Raises ChannelsFailed with every channel's error once both were tried."""
        channels: list[Channel] = []
        if self._settings.ops_email:
            channels.append("email")
        if self._webhook is not None:
            channels.append("webhook")
        log_extra = {"workflow_id": message.workflow_id, "alert_key": message.key, "job": message.job}
        if not channels:
            activity.logger.warning(
                "job failed; no PETCARE_OPS_EMAIL nor PETCARE_OPS_WEBHOOK_URL to alert", extra=log_extra
            )
            return AlertOutcome(sent=False, reason="no PETCARE_OPS_EMAIL nor PETCARE_OPS_WEBHOOK_URL")
        marks = await self._pool.fetchrow(
            _CLAIM, message.key, message.workflow_id, message.job, message.error
        )
        assert marks is not None
        pending = [channel for channel in channels if not marks[channel]]
        if not pending:
            return AlertOutcome(sent=False, reason="already sent")
        sent: list[Channel] = []
        errors: dict[Channel, DeliveryError] = {}
        for channel in pending:
            try:
                await self._send(channel, message)
            except DeliveryError as error:
                errors[channel] = error
                activity.logger.warning("failure alert not sent by %s: %s", channel, error, extra=log_extra)
                continue
            # A crash between the send and this update re-sends on retry (an email with the same
            # Message-ID, so mail clients show one).
            await self._pool.execute(_MARK_SENT[channel], message.key)
            sent.append(channel)
            activity.logger.info("failure alert sent by %s", channel, extra=log_extra)
        if errors:
            raise ChannelsFailed(errors)
        return AlertOutcome(sent=True, reason="sent", channels=sent)

    async def _send(self, channel: Channel, message: OpsMessage) -> None:
        if channel == "webhook":
            assert self._webhook is not None
            await self._webhook.post(f"{message.subject}\n\n{message.text}")
            return
        recipient = self._settings.ops_email
        assert recipient
        await self._mailer.send(
            compose(
                sender=self._settings.smtp.from_address,
                recipient=recipient,
                subject=message.subject,
                message_id=message.message_id,
                sent_at=message.sent_at,
                text=message.text,
            )
        )


class ChannelsFailed(Exception):
    """Some channels of an alert failed (the others were sent and marked)."""

    def __init__(self, errors: dict[Channel, DeliveryError]) -> None:
        super().__init__("; ".join(f"{channel}: {error}" for channel, error in errors.items()))
        self.errors = errors

    def only_rejections(self) -> bool:
        """Only this alert's email was refused for good: another alert may still go through."""
        return all(isinstance(error, DeliveryRejected) for error in self.errors.values())

    def application_error(self) -> Exception:
        """A retryable channel's failure first, so the retry also retries it; else the first."""
        ordered = sorted(self.errors.items(), key=lambda item: not isinstance(item[1], DeliveryUnavailable))
        channel, error = ordered[0]
        return webhook_failure(error) if channel == "webhook" else delivery_failure(error)


def web_ui_link(web_ui_url: str, run: FailedRun) -> str:
    """The run's page in the Temporal Web UI."""
    parts = (run.namespace, run.workflow_id, run.run_id)
    namespace, workflow_id, run_id = (quote(part, safe="") for part in parts)
    return f"{web_ui_url.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}/{run_id}"


def failed_run_message(run: FailedRun, web_ui_url: str, sender: str) -> OpsMessage:
    """The alert of a failed run; its subject names the job and error type (folded safe by
    `compose` like every header built from data)."""
    return OpsMessage(
        key=run.run_id,
        workflow_id=run.workflow_id,
        job=run.job,
        error=f"{run.error_type}: {run.error_message}",
        subject=f"[petcare] {run.job} run failed: {run.error_type}",
        # Deterministic: should a retry ever send twice, mail clients show one message.
        message_id=stable_message_id("failed-run", run.run_id, sender),
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


def failed_store_message(
    report: FailedStores, store: FailedStore, web_ui_url: str, sender: str
) -> OpsMessage:
    """The alert of one store that a stock run could not reconcile (or alert) on its local day."""
    key = f"stock-store/{store.store_id}/{store.day.isoformat()}"
    run = FailedRun(
        job=STOCK_RECONCILIATION.key,
        workflow_type=STOCK_RECONCILIATION.workflow_type,
        workflow_id=report.workflow_id,
        run_id=report.run_id,
        namespace=report.namespace,
        error_type=store.status,
        error_message=store.error or store.status,
        failed_at=report.failed_at,
    )
    return OpsMessage(
        key=key,
        workflow_id=report.workflow_id,
        job=STOCK_RECONCILIATION.key,
        error=f"{store.status}: {store.error}",
        subject=f"[petcare] stock reconciliation of store {store.store_id} failed on {store.day.isoformat()}",
        message_id=stable_message_id("stock-store", f"{store.store_id}.{store.day.isoformat()}", sender),
        sent_at=report.failed_at,
        text=(
            f"The stock reconciliation of a store failed; the other stores carried on.\n\n"
            f"Store id:     {store.store_id}\n"
            f"Local day:    {store.day.isoformat()}\n"
            f"Status:       {store.status}\n"
            f"Error:        {store.error}\n"
            f"Run:          {report.workflow_id} ({report.run_id})\n\n"
            f"Web UI: {web_ui_link(web_ui_url, run)}\n"
            "Report: GET /api/v1/stock-reconciliations?storeId="
            f"{store.store_id}&latest=true; a manual run of the store: POST "
            f'/api/v1/workers/stock-reconciliation/trigger {{"storeId": "{store.store_id}"}}\n'
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
