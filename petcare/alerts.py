"""Failure alerts, what workflows and activities share: activity names, alerted types, models (I/O-free).

The workflow side is workflows/alerts.py; the activities, their SQL and the email activities/alerts.py.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from petcare.jobs import JOBS, MONTHLY_FINANCIAL_EXPORT, STORE_STOCK_RECONCILIATION_TYPE

# The activities' registered names: workflows call them by name, importing no I/O code.
ALERT_ACTIVITY = "ops.alert_failed_run"
TIMED_OUT_SWEEP_ACTIVITY = "ops.alert_timed_out_runs"
# The jobs' runs, the monthly close, and a store's reconciliation should an operator start one on
# its own. Short previews (the reminder dry run answers an API call that already reports its
# error) never alert.
ALERTED_WORKFLOW_TYPES = frozenset(
    {
        *(job.workflow_type for job in JOBS),
        MONTHLY_FINANCIAL_EXPORT.workflow_type,
        STORE_STOCK_RECONCILIATION_TYPE,
    }
)


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
    failed: int = 0  # alerts refused for good (a recipient or content the mail server refuses)
