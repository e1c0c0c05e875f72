"""GET /api/v1/workers/health: each job's state as Temporal sees it; are Temporal and PostgreSQL up."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg
from aiohttp import web
from temporalio.client import Client, WorkflowContinuedAsNewError, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from api.keys import HEALTH_CACHE, POOL, TEMPORAL
from api.models import HealthResponse, LastFailure, LastRun, ServiceStatus, WorkerHealth
from api.openapi import documented
from api.runs import failure_of, status_name
from api.temporal_calls import CALL_TIMEOUT, is_unreachable
from petcare.jobs import JOBS, Job

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# How long one answer is reused: health is polled by load balancers and dashboards, and each
# answer costs ~10 visibility queries.
CACHE_SECONDS = 1.5
# Enough recent runs to find the latest start even when visibility lists running runs first.
RECENT_RUNS = 10

OK = ServiceStatus(status="ok")
UNREACHABLE = ServiceStatus(status="unreachable")


@routes.get("/api/v1/workers/health")
@documented(
    "Each job's state (running, last run, next scheduled run) and the state of Temporal and PostgreSQL",
    response=HealthResponse,
    other_responses={503: HealthResponse},
    tags=("workers",),
)
async def get_health(request: web.Request) -> web.Response:
    app = request.app
    health = await app[HEALTH_CACHE].get(lambda: probe(app[TEMPORAL], app[POOL]))
    return web.json_response(text=health.json_text, status=200 if health.healthy else 503)


async def probe(client: Client, pool: asyncpg.Pool) -> HealthResponse:
    (temporal_ok, workers), database_ok = await asyncio.gather(_workers(client), _database(pool))
    return HealthResponse(
        workers=workers,
        temporal=OK if temporal_ok else UNREACHABLE,
        database=OK if database_ok else UNREACHABLE,
    )


async def _workers(client: Client) -> tuple[bool, list[WorkerHealth]]:
    try:
        async with asyncio.timeout(CALL_TIMEOUT.total_seconds()):
            return True, list(await asyncio.gather(*(_worker(client, job) for job in JOBS)))
    except Exception as error:
        # Health must answer whatever happened; an unexpected error is logged with its traceback.
        log.warning("health: Temporal check failed: %r", error, exc_info=not is_unreachable(error))
        return False, [_unknown(job) for job in JOBS]


async def _worker(client: Client, job: Job) -> WorkerHealth:
    # Visibility, not a flag: right whoever started the run (schedule, API or CLI).
    running, last_run, schedule, last_failure = await asyncio.gather(
        client.count_workflows(
            f'WorkflowType="{job.workflow_type}" AND ExecutionStatus="Running"', rpc_timeout=CALL_TIMEOUT
        ),
        _last_run(client, job),
        _schedule(client, job),
        _last_failure(client, job),
    )
    next_run_at, paused = schedule
    return WorkerHealth(
        name=job.worker_name,
        is_running=running.count > 0,
        last_run=last_run,
        next_run_at=next_run_at,
        schedule_paused=paused,
        last_failure=last_failure,
    )


async def _last_run(client: Client, job: Job) -> LastRun | None:
    recent = [
        execution
        async for execution in client.list_workflows(
            f'WorkflowType="{job.workflow_type}"',
            limit=RECENT_RUNS,
            page_size=RECENT_RUNS,
            rpc_timeout=CALL_TIMEOUT,
        )
    ]
    if not recent:
        return None
    latest = max(recent, key=lambda execution: execution.start_time)
    return LastRun(
        workflow_id=latest.id,
        run_id=latest.run_id,
        status=status_name(latest),
        started_at=latest.start_time,
        closed_at=latest.close_time,
    )


async def _last_failure(client: Client, job: Job) -> LastFailure | None:
    recent = [
        execution
        async for execution in client.list_workflows(
            f'WorkflowType="{job.workflow_type}" AND ExecutionStatus IN ("Failed", "TimedOut")',
            limit=RECENT_RUNS,
            page_size=RECENT_RUNS,
            rpc_timeout=CALL_TIMEOUT,
        )
    ]
    if not recent:
        return None
    latest = max(recent, key=lambda execution: execution.close_time or execution.start_time)
    # The close event only (one small history read), pinned to that run.
    handle = client.get_workflow_handle(latest.id, run_id=latest.run_id)
    try:
        await handle.result(follow_runs=False, rpc_timeout=CALL_TIMEOUT)
    except WorkflowFailureError as error:
        failure = failure_of(error.cause)
    except WorkflowContinuedAsNewError:
        return None  # visibility was behind: this run did not fail after all
    else:
        return None
    return LastFailure(
        workflow_id=latest.id,
        run_id=latest.run_id,
        status=status_name(latest),
        closed_at=latest.close_time,
        message=failure.message,
        type=failure.type,
    )


async def _schedule(client: Client, job: Job) -> tuple[datetime | None, bool | None]:
    try:
        description = await client.get_schedule_handle(job.key).describe(rpc_timeout=CALL_TIMEOUT)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None, None
        raise
    upcoming = description.info.next_action_times
    return (upcoming[0] if upcoming else None), description.schedule.state.paused


async def _database(pool: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(CALL_TIMEOUT.total_seconds()):
            await pool.fetchval("SELECT 1")
        return True
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        log.warning("health: PostgreSQL check failed: %r", error)
        return False


def _unknown(job: Job) -> WorkerHealth:
    return WorkerHealth(
        name=job.worker_name,
        is_running=False,
        last_run=None,
        next_run_at=None,
        schedule_paused=None,
        last_failure=None,
    )
