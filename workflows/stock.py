"""Stock reconciliation: the stores due now, a child workflow each; past a page, it continues as new."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError

from workflows.alerts import ALERT_RETRY, ALERT_TIMEOUT

with workflow.unsafe.imports_passed_through():
    from activities.stock.activities import StockActivities
    from petcare.alerts import FAILED_STORES_ACTIVITY, FailedStore, FailedStores, FailedStoresOutcome
    from petcare.errors import ErrorType, describe_failure, non_retryable, root_cause
    from petcare.jobs import STOCK_RECONCILIATION, STORE_STOCK_RECONCILIATION_TYPE
    from petcare.models.stock import (
        ALERT_DEADLINE,
        AlertRequest,
        Continuation,
        DueStoresRequest,
        ReconcileRequest,
        StockReconciliationInput,
        StockReconciliationResult,
        StoreOutcome,
        StoreReconciliationInput,
        StoreTarget,
    )

# Stores reconciled at once: bounds the load on PostgreSQL and SMTP, and the open children.
MAX_PARALLEL_STORES = 8

DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
    non_retryable_error_types=non_retryable(ErrorType.UNKNOWN_STORE, ErrorType.UNKNOWN_RECONCILIATION),
)
# SMTP outages last longer than database blips; alerts not sent in time go out with the next run.
MAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=8,
    non_retryable_error_types=non_retryable(
        ErrorType.MAIL_REJECTED, ErrorType.MAIL_MISCONFIGURED, ErrorType.UNKNOWN_RECONCILIATION
    ),
)

# Each activity's schedule-to-close timeout bounds all its attempts and backoffs; the child's
# execution timeout covers both, plus room for its own workflow tasks. So a store is never
# reported failed by a timeout while one of its activities could still succeed.
RECONCILE_ATTEMPT = timedelta(minutes=10)
RECONCILE_DEADLINE = timedelta(minutes=30)
ALERT_ATTEMPT = timedelta(minutes=2)
STORE_TIMEOUT = RECONCILE_DEADLINE + ALERT_DEADLINE + timedelta(minutes=5)
# Runs recorded before the failed-store alerts existed replay without them.
FAILED_STORES_PATCH = "alert-failed-stores"


@workflow.defn(name=STOCK_RECONCILIATION.workflow_type)
class StockReconciliationWorkflow:
    @workflow.run
    async def run(self, request: StockReconciliationInput) -> StockReconciliationResult:
        chain = request.continuation
        now = chain.started_at if chain else workflow.now()
        due = await workflow.execute_activity_method(
            StockActivities.due_stores,
            DueStoresRequest(
                now=now,
                store_id=request.store_id,
                force=request.forced,
                after_store_id=chain.after_store_id if chain else None,
                limit=request.stores_per_run,
                full_recompute=request.full_recompute,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
        )
        slots = asyncio.Semaphore(MAX_PARALLEL_STORES)
        outcomes = await asyncio.gather(*(self._reconcile(target, slots) for target in due.targets))
        stores = [*due.invalid, *outcomes]
        if workflow.patched(FAILED_STORES_PATCH):
            await _alert_failed_stores(stores, now)
        result = StockReconciliationResult(
            started_at=now,
            stores=stores,
            earlier_runs=chain.earlier_runs if chain else 0,
            earlier_stores=chain.earlier_stores if chain else 0,
            earlier_failed=chain.earlier_failed if chain else 0,
        )
        if due.next_after is not None:
            # A bounded page per run: the next one starts with a fresh history.
            following = Continuation(
                after_store_id=due.next_after,
                started_at=now,
                earlier_runs=result.earlier_runs + 1,
                earlier_stores=result.earlier_stores + len(result.stores),
                earlier_failed=result.failed,
            )
            workflow.continue_as_new(request.model_copy(update={"continuation": following}))
        return result

    async def _reconcile(self, target: StoreTarget, slots: asyncio.Semaphore) -> StoreOutcome:
        parent_id = workflow.info().workflow_id
        async with slots:
            try:
                return await workflow.execute_child_workflow(
                    StoreStockReconciliationWorkflow.run,
                    StoreReconciliationInput(target=target),
                    id=f"{parent_id}/store-{target.store_id}",
                    execution_timeout=STORE_TIMEOUT,
                    static_summary=f"Stock reconciliation {target.business_date}, store {target.store_id}",
                    # A memo rather than search attributes: it needs no registration on the
                    # server (Temporal's test server hangs on unregistered ones) and shows in the UI.
                    memo={"storeId": str(target.store_id), "businessDate": target.business_date.isoformat()},
                )
            except ChildWorkflowError as error:
                # One store's failure is reported; the other stores carry on.
                return StoreOutcome(
                    store_id=target.store_id,
                    business_date=target.business_date,
                    status="failed",
                    error=describe_failure(error)[1],
                )


async def _alert_failed_stores(stores: list[StoreOutcome], now: datetime) -> None:
    """One ops alert per store that failed (or whose alert email failed), once per local day; the
    run itself still completes, and its failures are in its result and the report."""
    failed = [
        FailedStore(
            store_id=outcome.store_id,
            day=outcome.business_date or now.date(),
            status=outcome.status,
            error=outcome.error,
        )
        for outcome in stores
        if outcome.status in ("failed", "alert_failed")
    ]
    if not failed:
        return
    info = workflow.info()
    report = FailedStores(
        workflow_id=info.workflow_id,
        run_id=info.run_id,
        namespace=info.namespace,
        stores=failed,
        failed_at=workflow.now(),
    )
    workflow.logger.error("stock run: %d stores failed", len(failed))
    try:
        outcome: FailedStoresOutcome = await workflow.execute_activity(
            FAILED_STORES_ACTIVITY,
            report,
            start_to_close_timeout=ALERT_TIMEOUT * 4,
            heartbeat_timeout=ALERT_TIMEOUT,
            retry_policy=ALERT_RETRY,
            result_type=FailedStoresOutcome,
        )
    except ActivityError as error:
        workflow.logger.warning("failed-store alerts not sent: %s", root_cause(error))
        return
    workflow.logger.info("failed-store alerts sent: %d", outcome.sent)


@workflow.defn(name=STORE_STOCK_RECONCILIATION_TYPE)
class StoreStockReconciliationWorkflow:
    @workflow.run
    async def run(self, request: StoreReconciliationInput) -> StoreOutcome:
        target = request.target
        summary = await workflow.execute_activity_method(
            StockActivities.reconcile_store,
            ReconcileRequest(target=target),
            start_to_close_timeout=RECONCILE_ATTEMPT,
            schedule_to_close_timeout=RECONCILE_DEADLINE,
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
        )
        outcome = StoreOutcome(
            store_id=target.store_id, business_date=target.business_date, status="reconciled", summary=summary
        )
        if summary.reconciliation_id is None:
            return outcome.model_copy(update={"status": "already_done"})
        try:
            alert = await workflow.execute_activity_method(
                StockActivities.alert_store,
                AlertRequest(reconciliation_id=summary.reconciliation_id),
                start_to_close_timeout=ALERT_ATTEMPT,
                schedule_to_close_timeout=ALERT_DEADLINE,
                retry_policy=MAIL_RETRY,
            )
        except ActivityError as error:
            # The report stands; its alerts stay unsent and the store's next run lists them again.
            return outcome.model_copy(update={"status": "alert_failed", "error": describe_failure(error)[1]})
        return outcome.model_copy(update={"alert": alert})
