"""The three jobs: their public names, workflow types, schedule ids and search attributes.

I/O-free, so workflows, activities, the API and the CLI can all import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.common import SearchAttributeKey, TypedSearchAttributes

# Custom search attributes: operators filter runs in the Web UI with them (Job="financial-export").
JOB_ATTRIBUTE = SearchAttributeKey.for_keyword("Job")
STORE_ATTRIBUTE = SearchAttributeKey.for_keyword("StoreId")
EXPORT_ATTRIBUTE = SearchAttributeKey.for_keyword("ExportId")
CUSTOM_SEARCH_ATTRIBUTES = (JOB_ATTRIBUTE, STORE_ATTRIBUTE, EXPORT_ATTRIBUTE)


@dataclass(frozen=True)
class Job:
    """One background job as operators and the old API know it."""

    key: str  # used in workflow ids, schedule ids and the Job search attribute
    worker_name: str  # the name the old NestJS health endpoint reported
    workflow_type: str


APPOINTMENT_REMINDER = Job("appointment-reminder", "AppointmentReminderWorker", "AppointmentReminderWorkflow")
FINANCIAL_EXPORT = Job("financial-export", "FinancialExportWorker", "FinancialExportWorkflow")
STOCK_RECONCILIATION = Job("stock-reconciliation", "StockReconciliationWorker", "StockReconciliationWorkflow")
JOBS = (APPOINTMENT_REMINDER, FINANCIAL_EXPORT, STOCK_RECONCILIATION)
# A store's part of the stock job, a workflow of its own (started by the job, or alone).
STORE_STOCK_RECONCILIATION_TYPE = "StoreStockReconciliationWorkflow"
# The monthly close of the exports: it creates and starts FINANCIAL_EXPORT runs, one per store (not
# in JOBS: health and the runs filter keep the three jobs of the old workers).
MONTHLY_FINANCIAL_EXPORT = Job(
    "financial-export-monthly", "FinancialExportMonthlyWorker", "MonthlyFinancialExportWorkflow"
)
# Not a job of the business (health does not list it): it alerts on the jobs' timed-out runs.
OPS_ALERT_SWEEP = Job("ops-alert-sweep", "OpsAlertSweep", "OpsAlertSweepWorkflow")


def job_key_of(search_attributes: TypedSearchAttributes, workflow_type: str) -> str:
    """A run's job: its Job search attribute, else the job of its workflow type, else the type."""
    recorded = search_attributes.get(JOB_ATTRIBUTE)
    if recorded:
        return recorded
    return next((job.key for job in JOBS if job.workflow_type == workflow_type), workflow_type)


def job_by_key(key: str) -> Job | None:
    return next((job for job in JOBS if job.key == key), None)
