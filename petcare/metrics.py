"""Prometheus metrics of the worker: the Temporal SDK runtime's endpoint, plus the jobs' business
counters, recorded from activity results by an activity interceptor (no job code changes needed).

Counters land on the same endpoint as the SDK's own metrics (PETCARE_METRICS__WORKER_BIND_ADDRESS),
with the SDK's `namespace`, `task_queue` and `activity_type` labels added; names are documented
in docs/operations.md.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from petcare.alerts import AlertOutcome as OpsAlertOutcome
from petcare.alerts import FailedStoresOutcome, SweepOutcome
from petcare.config import ENV_PREFIX, Settings, SettingsError
from petcare.models.exports import ExportedFile
from petcare.models.reminders import DuePage, ReminderCounts
from petcare.models.stock import AlertOutcome as StockAlertOutcome
from petcare.models.stock import ReconciliationSummary

# name: (description, unit). Every counter the worker records, in one place.
COUNTERS: dict[str, tuple[str, str]] = {
    "petcare_reminders_sent": ("Reminders delivered, by channel (email, sms)", "reminders"),
    "petcare_reminders_failed": (
        "Reminders that could not be delivered (rejected address, number, unusable data, deferred too long)",
        "reminders",
    ),
    "petcare_reminders_deferred": (
        "Reminders whose recipient the provider refused for now, left for a later run",
        "reminders",
    ),
    "petcare_reminders_skipped": ("Due appointments not reminded, by reason", "reminders"),
    "petcare_reminders_due": (
        "Due appointments found by reminder runs (eligible, not yet reminded)",
        "appointments",
    ),
    "petcare_export_files": ("Financial export files uploaded, by kind", "files"),
    "petcare_export_rows": ("Rows written to financial export files, by kind", "rows"),
    "petcare_export_bytes": ("Bytes written to financial export files, by kind", "bytes"),
    "petcare_stock_products_checked": ("Products whose stock was reconciled", "products"),
    "petcare_stock_discrepancies": ("Products whose recorded stock differs from the movements", "products"),
    "petcare_stock_low_stock": ("Products at or under their low-stock threshold", "products"),
    "petcare_stock_alerts_opened": ("New stock alerts emailed to stores", "alerts"),
    "petcare_stock_stores_failed": ("Stores a stock run could not reconcile or alert", "stores"),
    "petcare_ops_alerts_sent": (
        "Failure alerts sent, by channel (email to PETCARE_OPS_EMAIL, webhook to PETCARE_OPS_WEBHOOK_URL)",
        "alerts",
    ),
}


def worker_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime serving Prometheus metrics, or None (the default runtime) when turned off."""
    address = settings.metrics.worker_bind_address.strip()
    if not address:
        return None
    # Counters as `<name>_total` and durations in seconds: what Prometheus users expect.
    prometheus = PrometheusConfig(bind_address=address, counters_total_suffix=True, durations_as_seconds=True)
    try:
        runtime = Runtime(telemetry=TelemetryConfig(metrics=prometheus))
    except ValueError as error:  # "Failed starting Prometheus exporter: Address already in use"
        raise SettingsError(
            f"cannot serve the worker's metrics on {address} ({error}): set "
            f"{ENV_PREFIX}METRICS__WORKER_BIND_ADDRESS to a free host:port, or empty to turn them off"
        ) from None
    announce_counters(runtime.metric_meter)
    return runtime


def record_result(meter: MetricMeter, result: Any) -> None:
    """Count what one completed activity did, from the model it returned."""
    counts = _counts(result)
    for name, value, labels in counts:
        if value > 0:
            description, unit = COUNTERS[name]
            meter.create_counter(name, description, unit).add(value, labels)


def _counts(result: Any) -> list[tuple[str, int, dict[str, str]]]:
    if isinstance(result, ReminderCounts):
        return [
            ("petcare_reminders_sent", result.sent_email, {"channel": "email"}),
            ("petcare_reminders_sent", result.sent_sms, {"channel": "sms"}),
            ("petcare_reminders_failed", result.failed, {}),
            ("petcare_reminders_deferred", result.deferred, {}),
            ("petcare_reminders_skipped", result.skipped_no_consent, {"reason": "no_consent"}),
            ("petcare_reminders_skipped", result.skipped_no_address, {"reason": "no_address"}),
            ("petcare_reminders_skipped", result.skipped_not_due, {"reason": "not_due"}),
        ]
    if isinstance(result, DuePage):
        return [
            ("petcare_reminders_due", len(result.appointment_ids), {}),
            ("petcare_reminders_failed", result.late_deferrals, {}),
        ]
    if isinstance(result, ExportedFile):
        kind = {"kind": str(result.kind)}
        return [
            ("petcare_export_files", 1, kind),
            ("petcare_export_rows", result.rows, kind),
            ("petcare_export_bytes", result.bytes, kind),
        ]
    if isinstance(result, ReconciliationSummary):
        return [
            ("petcare_stock_products_checked", result.products_checked, {}),
            ("petcare_stock_discrepancies", result.discrepancies, {}),
            ("petcare_stock_low_stock", result.low_stock, {}),
        ]
    if isinstance(result, StockAlertOutcome):
        return [("petcare_stock_alerts_opened", result.new_alerts, {})]
    if isinstance(result, OpsAlertOutcome):
        return [("petcare_ops_alerts_sent", 1, {"channel": channel}) for channel in result.channels]
    if isinstance(result, SweepOutcome | FailedStoresOutcome):
        # An outcome of a worker before the webhook existed: every alert it sent was an email.
        by_channel = result.sent_by_channel or {"email": result.sent}
        counts = [
            ("petcare_ops_alerts_sent", sent, {"channel": channel}) for channel, sent in by_channel.items()
        ]
        if isinstance(result, FailedStoresOutcome):
            counts.append(("petcare_stock_stores_failed", result.failed, {}))
        return counts
    return []


def announce_counters(meter: MetricMeter) -> None:
    """Every counter at 0 from the worker's start, so each name is exported before its first event
    and Prometheus sees the first increase (a series born at 1 shows no increase())."""
    for name, (description, unit) in COUNTERS.items():
        meter.create_counter(name, description, unit).add(0)


class BusinessMetricsInterceptor(Interceptor):
    """Registered on the worker (`build_workers`): records the counters after each activity."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _RecordResults(next)


class _RecordResults(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        if isinstance(result, BaseModel):
            record_result(activity.metric_meter(), result)
        return result
