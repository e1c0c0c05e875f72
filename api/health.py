"""GET /api/v1/workers/health: each job's state as Temporal sees it; are Temporal and PostgreSQL up.

Only connectivity errors (no answer, timeouts, refused connections) make a service "unreachable";
any other error is logged with its traceback and reported as "error", so a bug or a
misconfiguration is not mistaken for an outage. Either way the answer is a 503.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiohttp import web
from temporalio.client import Client

from api import database_calls, temporal_calls
from api.job_states import unknown_health, worker_health
from api.keys import HEALTH_CACHE, POOL, TEMPORAL
from api.models import HealthResponse, ServiceStatus, WorkerHealth
from api.openapi import documented
from petcare.db import is_unreachable
from petcare.jobs import JOBS

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# How long one answer is reused: health is polled by load balancers and dashboards, and each
# answer costs ~10 visibility queries.
CACHE_SECONDS = 1.5

OK = ServiceStatus(status="ok")
UNREACHABLE = ServiceStatus(status="unreachable")
ERROR = ServiceStatus(status="error")


@routes.get("/api/v1/workers/health")
@documented(
    "Each job's state (running, last run and the type of its last failure, next scheduled run) and "
    "the state of Temporal and PostgreSQL (ok, unreachable, or error: a failed check that is not "
    "a connectivity problem)",
    response=HealthResponse,
    other_responses={503: HealthResponse},
    tags=("workers",),
)
async def get_health(request: web.Request) -> web.Response:
    app = request.app
    health = await app[HEALTH_CACHE].get(lambda: probe(app[TEMPORAL], app[POOL]))
    return web.json_response(text=health.json_text, status=200 if health.healthy else 503)


async def probe(client: Client, pool: asyncpg.Pool) -> HealthResponse:
    (temporal, workers), database = await asyncio.gather(_workers(client), _database(pool))
    return HealthResponse(workers=workers, temporal=temporal, database=database)


async def _workers(client: Client) -> tuple[ServiceStatus, list[WorkerHealth]]:
    try:
        async with asyncio.timeout(temporal_calls.CALL_TIMEOUT.total_seconds()):
            return OK, list(await asyncio.gather(*(worker_health(client, job) for job in JOBS)))
    except Exception as error:
        # Health must answer whatever happened.
        return _status("Temporal", error, temporal_calls.is_unreachable(error)), [
            unknown_health(job) for job in JOBS
        ]


async def _database(pool: asyncpg.Pool) -> ServiceStatus:
    try:
        async with asyncio.timeout(database_calls.CALL_TIMEOUT_SECONDS):
            await pool.fetchval("SELECT 1")
        return OK
    except Exception as error:
        return _status("PostgreSQL", error, is_unreachable(error))


def _status(service: str, error: Exception, unreachable: bool) -> ServiceStatus:
    if unreachable:
        log.warning("health: %s is unreachable: %r", service, error)
        return UNREACHABLE
    log.error("health: %s check failed: %r", service, error, exc_info=error)
    return ERROR
