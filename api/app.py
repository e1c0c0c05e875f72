"""The aiohttp application factory: resources, middlewares and every route of the API."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from temporalio.client import Client

from api.cache import TtlCache
from api.health import CACHE_SECONDS
from api.keys import HEALTH_CACHE, POOL, RUNNING_REMINDER_CACHE, SETTINGS, TEMPORAL
from api.metrics import API_METRICS, ApiMetrics, metrics_middleware
from api.middleware import auth_middleware, error_middleware
from api.starts import RUNNING_RUN_CACHE_SECONDS
from petcare.config import Settings
from petcare.db import create_pool
from petcare.temporal_client import connect_temporal

# Route registration. Each module named here exposes `routes = web.RouteTableDef()` (handlers
# decorated with `api.openapi.documented` so the OpenAPI document describes them). A job adds
# its routes with one line in this tuple, e.g. "api.reminders".
ROUTE_MODULES: tuple[str, ...] = (
    "api.health",
    "api.runs",
    "api.schedules",
    "api.metrics",
    "api.reminders",
    "api.exports",
    "api.stock",
    "api.openapi",
)


def route_tables() -> list[web.RouteTableDef]:
    tables = []
    for name in ROUTE_MODULES:
        table = getattr(importlib.import_module(name), "routes", None)
        if not isinstance(table, web.RouteTableDef):
            raise TypeError(f"{name} is listed in ROUTE_MODULES but has no `routes = web.RouteTableDef()`")
        tables.append(table)
    return tables


def create_app(
    settings: Settings, *, temporal: Client | None = None, pool: asyncpg.Pool | None = None
) -> web.Application:
    """The API; it owns (connects and closes) the Temporal client and the pool it is not given."""
    # Metrics outermost: they count the status the client actually received.
    app = web.Application(middlewares=[metrics_middleware, error_middleware, auth_middleware])
    app[SETTINGS] = settings
    app[API_METRICS] = ApiMetrics()
    app[HEALTH_CACHE] = TtlCache(CACHE_SECONDS, stale=CACHE_SECONDS)
    app[RUNNING_REMINDER_CACHE] = TtlCache(RUNNING_RUN_CACHE_SECONDS)
    if temporal is not None:
        app[TEMPORAL] = temporal
    else:
        app.cleanup_ctx.append(_temporal_client)
    if pool is not None:
        app[POOL] = pool
    else:
        app.cleanup_ctx.append(_database_pool)
    for table in route_tables():
        app.add_routes(table)
    return app


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
