"""Deterministic orchestration of the jobs: every workflow class the worker registers."""

from __future__ import annotations

from workflows.alerts import OpsAlertSweepWorkflow
from workflows.exports import FinancialExportWorkflow, MonthlyFinancialExportWorkflow
from workflows.reminders import AppointmentReminderDryRunWorkflow, AppointmentReminderWorkflow
from workflows.stock import StockReconciliationWorkflow, StoreStockReconciliationWorkflow

# Each job appends its workflow classes here.
WORKFLOWS: list[type] = []
WORKFLOWS += [StockReconciliationWorkflow, StoreStockReconciliationWorkflow]
WORKFLOWS += [AppointmentReminderWorkflow, AppointmentReminderDryRunWorkflow]
WORKFLOWS += [FinancialExportWorkflow, MonthlyFinancialExportWorkflow]
WORKFLOWS += [OpsAlertSweepWorkflow]
