"""Failure alerts, what workflows and activities share: activity names, alerted types, models (I/O-free).

The workflow side is workflows/alerts.py; the activities, their SQL and the email activities/alerts.py.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from petcare.jobs import JOBS, MONTHLY_FINANCIAL_EXPORT, STORE_STOCK_RECONCILIATION_TYPE

# The activities' registered names: workflows call them by name, importing no I/O code.
ALERT_ACTIVITY = "ops.alert_failed_run"
TIMED_OUT_SWEEP_ACTIVITY = "ops.alert_timed_out_runs"
FAILED_STORES_ACTIVITY = "ops.alert_failed_stores"
# Where an alert goes: PETCARE_OPS_EMAIL and PETCARE_OPS_WEBHOOK_URL, each sent once per alert.
Channel = Literal["email", "webhook"]
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
    sent: bool  # some channel was sent by this call
    reason: str  # "sent", "already sent", "no PETCARE_OPS_EMAIL nor PETCARE_OPS_WEBHOOK_URL"
    channels: list[Channel] = Field(default_factory=list)  # sent by this call


class FailedStore(BaseModel):
    store_id: UUID
    day: date  # the store's local business date (the run's UTC date when its zone is unusable)
    status: str
    error: str | None


class FailedStores(BaseModel):
    """A stock run's failed stores: one alert per store and local day, however many runs see it."""

    workflow_id: str
    run_id: str
    namespace: str
    stores: list[FailedStore]
    failed_at: datetime


class FailedStoresOutcome(BaseModel):
    failed: int  # stores reported failed by the run
    sent: int  # store alerts sent by this call (on some channel)
    sent_by_channel: dict[str, int] = Field(default_factory=dict)


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
    sent_by_channel: dict[str, int] = Field(default_factory=dict)
