"""Stock reconciliation models shared by its workflows, activities and the API (I/O-free)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

Trigger = Literal["schedule", "manual"]
AlertStatus = Literal["pending", "sending", "sent", "nothing", "no_recipient", "failed"]
StoreStatus = Literal["reconciled", "already_done", "alert_failed", "failed"]


class StockReconciliationInput(BaseModel):
    """`{}` (the schedule) reconciles the stores due now; `force` every store; a store id that one."""

    store_id: UUID | None = None
    force: bool = False

    @property
    def forced(self) -> bool:
        return self.force or self.store_id is not None


class DueStoresRequest(BaseModel):
    now: datetime  # workflow.now() of the run, so the decision replays identically
    store_id: UUID | None = None
    force: bool = False


class StoreTarget(BaseModel):
    """One store to reconcile in this run, and the local day the reconciliation counts for."""

    store_id: UUID
    timezone: str
    business_date: date
    trigger: Trigger


class StoreReconciliationInput(BaseModel):
    target: StoreTarget
    parent_workflow_id: str


class ReconcileRequest(BaseModel):
    target: StoreTarget
    workflow_id: str


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


class StockReconciliationResult(BaseModel):
    started_at: datetime
    stores: list[StoreOutcome] = Field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(outcome.status in ("failed", "alert_failed") for outcome in self.stores)
