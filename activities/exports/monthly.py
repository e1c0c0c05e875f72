"""The monthly close's activities: create the month's export of each store (idempotently), and
start each export's own run (`financial-export-<id>`), never a second one.

The month is the calendar month before the one the run's time falls in, in each store's own zone
(`previous_month`). The rows are made with INSERT ... ON CONFLICT on the monthly key (store,
period, format, origin 'monthly'), so a second trigger in the month, or a retried activity, finds
the rows the first one made. Runs start with `id_reuse_policy=ALLOW_DUPLICATE_FAILED_ONLY`: a run
going is joined, a completed one is not run again, a failed or terminated one is.
"""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

import asyncpg
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from petcare import exports_repository
from petcare.jobs import FINANCIAL_EXPORT
from petcare.models.exports import (
    FinancialExportInput,
    MonthlyExport,
    MonthlyExportsPage,
    MonthlyExportsRequest,
    StartedExports,
    StartExportsRequest,
    export_run_attributes,
    export_workflow_id,
    previous_month,
)
from petcare.summaries import export_summaries
from petcare.timezones import InvalidTimeZone, parse_zone

CREATE_MONTHLY_ACTIVITY = "financial_export.create_monthly"
START_RUNS_ACTIVITY = "financial_export.start_runs"
# Workflow starts in flight at once: bounds the load on Temporal.
START_CONCURRENCY = 16
UTC = ZoneInfo("UTC")


class MonthlyExportActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name=CREATE_MONTHLY_ACTIVITY)
    async def create_monthly(self, request: MonthlyExportsRequest) -> MonthlyExportsPage:
        """The month's export of each store of the page: created now, or found from before."""
        async with self._pool.acquire() as connection:
            stores = await exports_repository.stores_page(connection, request.after_store_id, request.limit)
            periods = []
            for store_id, zone_name in stores:
                try:
                    zone = parse_zone(zone_name)
                except InvalidTimeZone as error:
                    # The month in UTC; the export itself then fails naming the store and its
                    # zone (an ops alert), and runs again once the zone is fixed.
                    activity.logger.warning("store %s: %s; its month is taken in UTC", store_id, error)
                    zone = UTC
                periods.append((store_id, *previous_month(request.as_of, zone)))
            exports = await exports_repository.create_monthly(connection, periods, request.format)
        following = stores[-1][0] if len(stores) == request.limit else None
        return MonthlyExportsPage(exports=exports, next_after_store_id=following)

    @activity.defn(name=START_RUNS_ACTIVITY)
    async def start_runs(self, request: StartExportsRequest) -> StartedExports:
        """Start each export's run on this activity's task queue (the jobs' queue); completed
        exports are counted, not started. Heartbeats after each start."""
        client = activity.client()
        task_queue = activity.info().task_queue
        pending = [export for export in request.exports if export.status != "completed"]
        async with self._pool.acquire() as connection:
            summaries = await export_summaries(connection, [export.export_id for export in pending])
        slots = asyncio.Semaphore(START_CONCURRENCY)

        async def start(export: MonthlyExport) -> str:
            async with slots:
                outcome = await _start_or_find(client, task_queue, export, summaries.get(export.export_id))
                activity.heartbeat()
                return outcome

        outcomes = await asyncio.gather(*(start(export) for export in pending))
        return StartedExports(
            started=outcomes.count("started"),
            running=outcomes.count("running"),
            done=outcomes.count("done") + len(request.exports) - len(pending),
        )


async def _start_or_find(client: Client, task_queue: str, export: MonthlyExport, summary: str | None) -> str:
    """ "started", "running" (a run is going: joined) or "done" (its run completed before)."""
    workflow_id = export_workflow_id(export.export_id)
    try:
        await client.start_workflow(
            FINANCIAL_EXPORT.workflow_type,
            FinancialExportInput(export_id=export.export_id),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes(export_run_attributes(export.export_id, export.store_id)),
            static_summary=summary,
        )
    except WorkflowAlreadyStartedError:
        described = await client.get_workflow_handle(workflow_id).describe()
        return "running" if described.status == WorkflowExecutionStatus.RUNNING else "done"
    return "started"
