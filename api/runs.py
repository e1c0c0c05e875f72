"""GET /api/v1/workers/runs: recent runs (visibility); .../runs/{workflowId}: one run, result or failure."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import Field
from temporalio.client import Client
from temporalio.service import RPCError

from api.bodies import json_model, read_query
from api.errors import ApiError
from api.keys import TEMPORAL
from api.models import CamelModel, CamelRequest, RunResponse, RunStatus
from api.openapi import documented
from api.run_views import describe_run, status_name
from api.temporal_calls import CALL_TIMEOUT, is_missing, temporal_call
from petcare.jobs import JOB_ATTRIBUTE, JOBS

routes = web.RouteTableDef()

# Every job's key (tests/test_ops_runs.py checks it against petcare.jobs.JOBS).
JobKey = Literal["appointment-reminder", "financial-export", "stock-reconciliation"]
WORKFLOW_TYPES = {job.key: job.workflow_type for job in JOBS}


class RunsQuery(CamelRequest):
    job: JobKey | None = None
    status: RunStatus | None = None
    limit: int = Field(default=20, ge=1, le=100)


class RunSummary(CamelModel):
    workflow_id: str
    run_id: str
    type: str
    job: str | None  # the Job search attribute; null for runs started without one
    status: RunStatus
    started_at: datetime
    closed_at: datetime | None


class RunList(CamelModel):
    runs: list[RunSummary]


@routes.get("/api/v1/workers/runs")
@documented(
    "Recent runs, newest first, optionally of one job and in one status (Temporal's visibility)",
    response=RunList,
    query=RunsQuery,
    errors=(422, 503),
    tags=("runs",),
)
async def list_runs(request: web.Request) -> web.Response:
    query = read_query(request, RunsQuery)
    async with temporal_call():
        runs = await recent_runs(request.app[TEMPORAL], query)
    return json_model(RunList(runs=runs))


def visibility_query(query: RunsQuery) -> str:
    """Values come from closed sets (validated literals), so building the query text is safe."""
    clauses = []
    if query.job is not None:
        # The Job attribute covers children and manual runs; the type covers runs started without it.
        clauses.append(f'({JOB_ATTRIBUTE.name}="{query.job}" OR WorkflowType="{WORKFLOW_TYPES[query.job]}")')
    if query.status is not None:
        clauses.append(f'ExecutionStatus="{query.status}"')
    return " AND ".join(clauses)


async def recent_runs(client: Client, query: RunsQuery) -> list[RunSummary]:
    runs = [
        RunSummary(
            workflow_id=execution.id,
            run_id=execution.run_id,
            type=execution.workflow_type,
            job=execution.typed_search_attributes.get(JOB_ATTRIBUTE),
            status=status_name(execution),
            started_at=execution.start_time,
            closed_at=execution.close_time,
        )
        async for execution in client.list_workflows(
            visibility_query(query), limit=query.limit, page_size=query.limit, rpc_timeout=CALL_TIMEOUT
        )
    ]
    return sorted(runs, key=lambda run: run.started_at, reverse=True)


@routes.get("/api/v1/workers/runs/{workflowId}")
@documented(
    "The latest run of a workflow: status, times, result or failure (message and type)",
    response=RunResponse,
    errors=(404, 503),
    tags=("runs",),
)
async def get_run(request: web.Request) -> web.Response:
    workflow_id = request.match_info["workflowId"]
    try:
        async with temporal_call():
            run = await describe_run(request.app[TEMPORAL], workflow_id)
    except RPCError as error:
        if is_missing(error):
            raise ApiError(404, "not_found", f"no workflow with id {workflow_id!r}") from None
        raise
    return json_model(run)
