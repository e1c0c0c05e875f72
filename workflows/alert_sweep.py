"""The sweep that alerts on job runs that timed out: their own code never ran again to report it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.interceptors import ALERT_RETRY

with workflow.unsafe.imports_passed_through():
    from petcare.alerts import TIMED_OUT_SWEEP_ACTIVITY, SweepOutcome, TimedOutSweep
    from petcare.jobs import OPS_ALERT_SWEEP

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
