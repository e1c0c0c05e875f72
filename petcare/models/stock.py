"""Stock reconciliation models shared by its workflows, activities and the API (I/O-free)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

Trigger = Literal["schedule", "manual"]
AlertStatus = Literal["pending", "sending", "sent", "nothing", "no_recipient", "failed"]
StoreStatus = Literal["reconciled", "already_done", "alert_failed", "failed"]

# The fixed id of manual runs (`-<storeId>` appended for one store): a second trigger while one
# runs finds it instead of starting another.
MANUAL_WORKFLOW_ID = "stock-reconciliation-manual"

# The alert activity's schedule-to-close timeout (every attempt and backoff), and how long its
# reservation of a store's pending alerts lasts: no attempt can still send once it has lapsed,
# so another run may then take the alerts over without emailing them twice.
ALERT_DEADLINE = timedelta(minutes=30)

# Stores handled by one run before it continues as new: bounds its history (about six events a
# store) and its payloads (the due list, the per-store outcomes).
STORES_PER_RUN = 500
STORES_PER_RUN_MAX = 1000


class Continuation(BaseModel):
    """Where the previous run of a chain stopped: stores are taken in id order, a page per run."""

    after_store_id: UUID
    started_at: datetime  # the first run's workflow.now(): one instant decides due-ness for the chain
    earlier_runs: int
    earlier_stores: int
    earlier_failed: int


class StockReconciliationInput(BaseModel):
    """`{}` (the schedule) reconciles the stores due now; `force` every store; a store id that one."""

    store_id: UUID | None = None
    force: bool = False
    stores_per_run: int = Field(default=STORES_PER_RUN, ge=1, le=STORES_PER_RUN_MAX)
    # Every store's stock from all of its movements (and its checkpoint sums rebuilt) instead of
    # the checkpoint plus the movements since: after the backend edited or deleted old movements.
    full_recompute: bool = False
    continuation: Continuation | None = None  # set only by the run continuing as new

    @property
    def forced(self) -> bool:
        """The one rule: a run for one named store always reconciles it, due or not."""
        return self.force or self.store_id is not None


class DueStoresRequest(BaseModel):
    now: datetime  # workflow.now() of the run, so the decision replays identically
    store_id: UUID | None = None
    force: bool = False  # every store scanned is a target (trigger "manual"); else only those due
    after_store_id: UUID | None = None
    limit: int = STORES_PER_RUN
    full_recompute: bool = False  # copied into each target


class StoreTarget(BaseModel):
    """One store to reconcile in this run, and the local day the reconciliation counts for."""

    store_id: UUID
    timezone: str
    business_date: date
    trigger: Trigger
    full_recompute: bool = False  # see StockReconciliationInput


class StoreReconciliationInput(BaseModel):
    target: StoreTarget


class ReconcileRequest(BaseModel):
    target: StoreTarget


class ReconciliationSummary(BaseModel):
    reconciliation_id: UUID | None  # None: another run already did this store's scheduled day
    products_checked: int = 0
    discrepancies: int = 0
    low_stock: int = 0


class AlertRequest(BaseModel):
    reconciliation_id: UUID


class AlertOutcome(BaseModel):
    status: AlertStatus
    new_alerts: int = 0
    resolved: int = 0
    message_id: str | None = None


class StoreOutcome(BaseModel):
    store_id: UUID
    business_date: date | None  # None when the store could not even be scheduled (bad time zone)
    status: StoreStatus
    summary: ReconciliationSummary | None = None
    alert: AlertOutcome | None = None
    error: str | None = None


class DueStores(BaseModel):
    targets: list[StoreTarget] = Field(default_factory=list)
    invalid: list[StoreOutcome] = Field(default_factory=list)
    next_after: UUID | None = None  # the page was full: stores after this id are the next run's


class StockReconciliationResult(BaseModel):
    """The outcomes of this run's stores; runs before it in a continue-as-new chain are counted."""

    started_at: datetime
    stores: list[StoreOutcome] = Field(default_factory=list)
    earlier_runs: int = 0
    earlier_stores: int = 0
    earlier_failed: int = 0

    @property
    def failed(self) -> int:
        here = sum(outcome.status in ("failed", "alert_failed") for outcome in self.stores)
        return self.earlier_failed + here
