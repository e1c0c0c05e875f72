"""Failure alerts to operators: the alert's data and its email, I/O-free (workflows import it)."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote

from pydantic import BaseModel

from petcare import visibility
from petcare.jobs import JOBS, STORE_STOCK_RECONCILIATION_TYPE

# The activities' registered names: workflows call them by name, importing no I/O code.
ALERT_ACTIVITY = "ops.alert_failed_run"
TIMED_OUT_SWEEP_ACTIVITY = "ops.alert_timed_out_runs"
MESSAGE_DOMAIN = "petcare-workers"
# The jobs' runs, and a store's reconciliation should an operator start one on its own. Short
# previews (the reminder dry run answers an API call that already reports its error) never alert.
ALERTED_WORKFLOW_TYPES = frozenset({*(job.workflow_type for job in JOBS), STORE_STOCK_RECONCILIATION_TYPE})


class FailedRun(BaseModel):
    """One job run that failed after its retries."""

    job: str
    workflow_type: str
    workflow_id: str
    run_id: str
    namespace: str
    error_type: str
    error_message: str
    failed_at: datetime


class AlertOutcome(BaseModel):
    sent: bool
    reason: str  # "sent", "already sent", "no PETCARE_OPS_EMAIL"


class TimedOutSweep(BaseModel):
    """Which runs the sweep looks at: the task queue's runs that timed out in the last `lookback`.

    The lookback is far longer than the sweep's interval, so a late or skipped sweep misses
    nothing; a run already alerted is skipped (`ops_alerts`), so the overlap sends nothing twice.
    """

    task_queue: str
    workflow_types: list[str]
    lookback_seconds: float = 3600.0


class SweepOutcome(BaseModel):
    timed_out: int  # top-level runs of the job types found timed out in the lookback
    sent: int  # alerts sent by this sweep (the others were sent before)


def timed_out_runs_query(sweep: TimedOutSweep, since: datetime) -> str:
    """The visibility query of the sweep's runs: timed out, closed since `since`, of its types."""
    return visibility.all_of(
        visibility.equals(visibility.EXECUTION_STATUS, "TimedOut"),
        visibility.equals(visibility.TASK_QUEUE, sweep.task_queue),
        visibility.one_of(visibility.WORKFLOW_TYPE, sweep.workflow_types),
        visibility.after(visibility.CLOSE_TIME, since),
    )


def web_ui_link(web_ui_url: str, run: FailedRun) -> str:
    """The run's page in the Temporal Web UI."""
    parts = (run.namespace, run.workflow_id, run.run_id)
    namespace, workflow_id, run_id = (quote(part, safe="") for part in parts)
    return f"{web_ui_url.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}/{run_id}"


def message_id(run: FailedRun) -> str:
    # Deterministic: should a retry ever send twice, mail clients show one message.
    return f"<failed-run.{run.run_id}@{MESSAGE_DOMAIN}>"


def alert_email(run: FailedRun, *, sender: str, recipient: str, web_ui_url: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = f"[petcare] {run.job} run failed: {run.error_type}"
    message["Message-ID"] = message_id(run)
    message["Date"] = format_datetime(run.failed_at)
    message.set_content(
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
    )
    return message
