"""Stock reconciliation over HTTP: run it now (all stores or one), and read the persisted reports."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from aiohttp import web
from temporalio.client import Client
from temporalio.common import SearchAttributePair

from api.backends import POOL, SETTINGS, TEMPORAL, database_call, require_store, start_or_join, temporal_call
from api.middlewares import ApiError
from api.models import (
    CamelModel,
    CamelRequest,
    Keyset,
    PageQuery,
    StartedRun,
    cursor_scope,
    json_model,
    keyset_page,
    path_uuid,
    read_model,
    read_query,
)
from api.openapi import documented
from petcare import stock_repository as reports
from petcare.jobs import JOB_ATTRIBUTE, STOCK_RECONCILIATION, STORE_ATTRIBUTE
from petcare.models.stock import MANUAL_WORKFLOW_ID, AlertStatus, StockReconciliationInput, Trigger


class StockTriggerRequest(CamelRequest):
    store_id: UUID | None = None  # absent: every store, whether due or not
    # Every movement, not the checkpoint's sums plus the new ones, and the sums rebuilt: after the
    # main backend edited or deleted old movements (the ledger is meant to be append-only).
    full_recompute: bool = False


class ReportLine(CamelModel):
    product_id: UUID
    sku: str
    name: str
    recorded: int
    computed: int  # the sum of the product's stock movements
    difference: int  # computed - recorded
    threshold: int


class ReconciliationReport(CamelModel):
    id: UUID
    store_id: UUID
    business_date: date  # the store-local day the reconciliation counts for
    trigger: Trigger
    # The per-store child workflow execution that made the report (`<parent id>/store-<storeId>`).
    workflow_id: str
    workflow_run_id: str
    started_at: datetime
    finished_at: datetime
    products_checked: int
    discrepancy_count: int
    low_stock_count: int
    alert_status: AlertStatus
    alert_sent_at: datetime | None
    discrepancies: list[ReportLine]
    low_stock: list[ReportLine]


class ReportQuery(PageQuery):
    store_id: UUID | None = None
    latest: bool = False  # only each store's latest reconciliation


class ReportList(CamelModel):
    reconciliations: list[ReconciliationReport]
    next_cursor: str | None = None  # null on the last page


@documented(
    "Reconcile stock now: every store, or one with storeId; fullRecompute reads every movement and "
    "rebuilds the checkpointed sums (a run of the same kind already going is returned instead)",
    request=StockTriggerRequest,
    response=StartedRun,
    status=202,
    errors=(400, 404, 422, 503),
    tags=("workers",),
)
async def trigger_stock_reconciliation(request: web.Request) -> web.Response:
    # The old endpoint took no body: an empty one reconciles every store.
    body = await read_model(request, StockTriggerRequest, optional=True)
    if body.store_id is not None:
        async with database_call(), request.app[POOL].acquire() as connection:
            await require_store(connection, body.store_id)
    async with temporal_call():
        accepted = await start_or_find(
            request.app[TEMPORAL], request.app[SETTINGS].task_queue, body.store_id, body.full_recompute
        )
    return json_model(accepted, status=202)


async def start_or_find(
    client: Client, task_queue: str, store_id: UUID | None, full_recompute: bool = False
) -> StartedRun:
    """A new forced run, or the manual run of the same scope and kind that is still going (a full
    recompute has ids of its own: an incremental run going does not answer for one)."""
    workflow_id = MANUAL_WORKFLOW_ID + ("-full" if full_recompute else "")
    if store_id is not None:
        workflow_id += f"-{store_id}"
    attributes = [SearchAttributePair(JOB_ATTRIBUTE, STOCK_RECONCILIATION.key)]
    if store_id is not None:
        attributes.append(SearchAttributePair(STORE_ATTRIBUTE, str(store_id)))
    kind = "manual run, full recompute" if full_recompute else "manual run"
    scope = "every store" if store_id is None else f"store {store_id}"
    return await start_or_join(
        client,
        STOCK_RECONCILIATION.workflow_type,
        StockReconciliationInput(store_id=store_id, force=True, full_recompute=full_recompute),
        workflow_id=workflow_id,
        task_queue=task_queue,
        attributes=attributes,
        summary=f"Stock reconciliation ({kind}): {scope}",
    )


@documented(
    "One store's persisted reconciliation: counts, discrepancies and low-stock items, alert status",
    response=ReconciliationReport,
    errors=(400, 404),
    path_formats={"runId": "uuid"},
    tags=("stock-reconciliations",),
)
async def get_reconciliation(request: web.Request) -> web.Response:
    run_id = path_uuid(request, "runId")
    async with database_call(), request.app[POOL].acquire() as connection:
        found = await reports.report(connection, run_id)
    if found is None:
        raise ApiError(404, "not_found", f"no stock reconciliation with id {run_id}")
    return json_model(ReconciliationReport.model_validate(found))


@documented(
    "Recent reconciliations, newest first (by finish time); storeId for one store, latest=true for "
    "each store's latest; page on with nextCursor",
    response=ReportList,
    query=ReportQuery,
    errors=(400, 422),
    tags=("stock-reconciliations",),
)
async def list_reconciliations(request: web.Request) -> web.Response:
    query = read_query(request, ReportQuery)
    scope = cursor_scope("stock-reconciliations", query)
    after = Keyset.from_cursor(scope, query.cursor)
    async with database_call(), request.app[POOL].acquire() as connection:
        found = await reports.recent_reports(
            connection,
            query.store_id,
            latest_only=query.latest,
            limit=query.limit + 1,  # one more: is there a next page?
            after=None if after is None else (after.time, after.id),
        )
    page, next_cursor = keyset_page(
        [ReconciliationReport.model_validate(report) for report in found],
        query.limit,
        scope,
        lambda report: Keyset(report.finished_at, report.id),
    )
    return json_model(ReportList(reconciliations=page, next_cursor=next_cursor))
