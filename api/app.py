"""The aiohttp application factory: its resources and their lifetimes, its middlewares, every route."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from temporalio.client import Client

from activities.exports.destinations import destination_for
from api import exports, metrics, openapi, reminders, schedules, stock, workers
from api.backends import DESTINATION, POOL, SETTINGS, TEMPORAL
from api.metrics import API_METRICS, ApiMetrics, metrics_middleware
from api.middlewares import auth_middleware, error_middleware
from api.workers import (
    HEALTH_CACHE,
    HEALTH_CACHE_SECONDS,
    RUNNING_REMINDER_CACHE,
    RUNNING_RUN_CACHE_SECONDS,
    TtlCache,
)
from petcare.config import Settings
from petcare.db import create_pool
from petcare.temporal_client import connect_temporal


def create_app(
    settings: Settings, *, temporal: Client | None = None, pool: asyncpg.Pool | None = None
) -> web.Application:
    """The API; it owns (connects and closes) the Temporal client and the pool it is not given."""
    # Metrics outermost: they count the status the client actually received.
    app = web.Application(middlewares=[metrics_middleware, error_middleware, auth_middleware(settings.api)])
    app[SETTINGS] = settings
    app[API_METRICS] = ApiMetrics()
    app[HEALTH_CACHE] = TtlCache(HEALTH_CACHE_SECONDS, stale=HEALTH_CACHE_SECONDS)
    app[RUNNING_REMINDER_CACHE] = TtlCache(RUNNING_RUN_CACHE_SECONDS)
    app[DESTINATION] = destination_for(settings)
    if temporal is not None:
        app[TEMPORAL] = temporal
    else:
        app.cleanup_ctx.append(_temporal_client)
    if pool is not None:
        app[POOL] = pool
    else:
        app.cleanup_ctx.append(_database_pool)
    setup_routes(app)
    return app


def setup_routes(app: web.Application) -> None:
    """Every route of the API. Each handler carries its OpenAPI contract (`api.openapi.documented`)."""
    app.add_routes(
        [
            web.get("/api/v1/workers/health", workers.get_health),
            web.get("/api/v1/workers/runs", workers.list_runs),
            web.get("/api/v1/workers/runs/{workflowId}", workers.get_run),
            web.post("/api/v1/workers/appointment-reminder/trigger", workers.trigger_reminders),
            web.post("/api/v1/workers/financial-export/trigger", exports.trigger_exports),
            web.post("/api/v1/workers/financial-export/process/{exportId}", exports.process_export),
            web.post("/api/v1/workers/stock-reconciliation/trigger", stock.trigger_stock_reconciliation),
            web.post("/api/v1/financial-exports", exports.create_export),
            web.get("/api/v1/financial-exports", exports.list_exports),
            web.get("/api/v1/financial-exports/{id}", exports.get_export),
            web.get("/api/v1/financial-exports/{id}/files/{name}", exports.download_file),
            web.get("/api/v1/stock-reconciliations", stock.list_reconciliations),
            web.get("/api/v1/stock-reconciliations/{runId}", stock.get_reconciliation),
            web.get("/api/v1/stores/{storeId}/reminder-templates/{locale}", reminders.get_templates),
            web.put("/api/v1/stores/{storeId}/reminder-templates/{locale}", reminders.put_templates),
            web.delete("/api/v1/stores/{storeId}/reminder-templates/{locale}", reminders.delete_templates),
            web.get("/api/v1/reminders/deliveries", reminders.list_deliveries),
            web.post("/api/v1/reminders/deliveries/{appointmentId}/retry", reminders.retry_delivery),
            web.get("/api/v1/schedules", schedules.list_schedules),
            web.post("/api/v1/schedules/{scheduleId}/pause", schedules.pause),
            web.post("/api/v1/schedules/{scheduleId}/unpause", schedules.unpause),
            web.post("/api/v1/schedules/{scheduleId}/trigger", schedules.trigger),
            web.post("/api/v1/schedules/{scheduleId}/backfill", schedules.backfill),
            web.get("/api/v1/openapi.json", openapi.openapi_document),
            web.get("/metrics", metrics.metrics),
        ]
    )


async def _temporal_client(app: web.Application) -> AsyncIterator[None]:
    # Lazy: the API starts while Temporal is down and health reports 503 until it is back.
    app[TEMPORAL] = await connect_temporal(lazy=True)
    yield


async def _database_pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # No connection opened at start: a database down now is a 503 on health, not a crash.
    lazy = settings.model_copy(update={"database": settings.database.model_copy(update={"pool_min_size": 0})})
    async with create_pool(lazy) as pool:
        app[POOL] = pool
        yield
