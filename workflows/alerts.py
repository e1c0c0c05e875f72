"""Failure alerts, the workflow side: the interceptor of failing runs and the sweep of timed-out ones.

A job run that fails after its retries sends one alert from its own code (the interceptor); a run
that hits its execution timeout runs no more workflow code, so the sweep workflow (every 10
minutes) finds those in visibility. Terminated runs never alert. The activities, their SQL and the
email are in activities/alerts.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError, is_cancelled_exception
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

with workflow.unsafe.imports_passed_through():
    import pydantic

    from petcare.alerts import (
        ALERT_ACTIVITY,
        ALERTED_WORKFLOW_TYPES,
        TIMED_OUT_SWEEP_ACTIVITY,
        FailedRun,
        SweepOutcome,
        TimedOutSweep,
    )
    from petcare.errors import ErrorType, describe_failure, non_retryable, root_cause
    from petcare.jobs import OPS_ALERT_SWEEP, job_key_of

# Sending is retried for a few minutes (a channel already sent is not sent again); after that the
# failure is only in the Web UI, health and the metrics:
# the run's own failure must not wait on the mail server for hours.
ALERT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
    non_retryable_error_types=non_retryable(
        ErrorType.MAIL_REJECTED, ErrorType.MAIL_MISCONFIGURED, ErrorType.OPS_WEBHOOK_MISCONFIGURED
    ),
)
ALERT_TIMEOUT = timedelta(seconds=30)


class OpsAlertInterceptor(Interceptor):
    """Registered on the worker (worker_main); wraps every workflow it runs."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _AlertOnFailure


class _AlertOnFailure(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        try:
            return await super().execute_workflow(input)
        except (FailureError, pydantic.ValidationError) as error:
            if _alerts_for(error):
                await _send_alert(error)
            raise


def _alerts_for(error: BaseException) -> bool:
    """Failures that close the run, of top-level runs only: a child's failure is its parent's to
    report (the stock job records a failed store and carries on), so one failed run is one alert."""
    if is_cancelled_exception(error):
        return False
    info = workflow.info()
    return info.parent is None and info.workflow_type in ALERTED_WORKFLOW_TYPES


async def _send_alert(error: BaseException) -> None:
    info = workflow.info()
    error_type, error_message = describe_failure(error)
    run = FailedRun(
        job=job_key_of(info.typed_search_attributes, info.workflow_type),
        workflow_type=info.workflow_type,
        workflow_id=info.workflow_id,
        run_id=info.run_id,
        namespace=info.namespace,
        error_type=error_type,
        error_message=error_message,
        failed_at=workflow.now(),
    )
    workflow.logger.error("job run failed: %s: %s", run.error_type, run.error_message)
    try:
        await workflow.execute_activity(
            ALERT_ACTIVITY, run, start_to_close_timeout=ALERT_TIMEOUT, retry_policy=ALERT_RETRY
        )
    except ActivityError as alert_error:
        # The run still fails with its own error; the alert's failure is only logged.
        workflow.logger.warning("failure alert not sent: %s", root_cause(alert_error))


# --- The sweep of runs that timed out.

# Retried as a single alert is (ALERT_RETRY); past that the next sweep, whose lookback overlaps
# this one's, catches what this one left.
SWEEP_TIMEOUT = timedelta(minutes=2)
SWEEP_HEARTBEAT = timedelta(seconds=30)  # one heartbeat per run alerted


@workflow.defn(name=OPS_ALERT_SWEEP.workflow_type)
class OpsAlertSweepWorkflow:
    @workflow.run
    async def run(self, sweep: TimedOutSweep) -> SweepOutcome:
        outcome: SweepOutcome = await workflow.execute_activity(
            TIMED_OUT_SWEEP_ACTIVITY,
            sweep,
            start_to_close_timeout=SWEEP_TIMEOUT,
            heartbeat_timeout=SWEEP_HEARTBEAT,
            retry_policy=ALERT_RETRY,
            result_type=SweepOutcome,
        )
        return outcome
