"""GET /api/v1/workers/runs: recent runs (visibility); .../runs/{workflowId}: one run, result or failure."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from aiohttp import web
from pydantic import Field, ValidationError
from pydantic_core import to_jsonable_python
from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.service import RPCError, RPCStatusCode

from api.bodies import describe_validation_error, json_model
from api.errors import ApiError
from api.keys import TEMPORAL
from api.models import CamelModel, CamelRequest, RunFailure, RunResponse, RunStatus
from api.openapi import documented
from api.temporal_calls import CALL_TIMEOUT, temporal_call
from petcare.jobs import JOB_ATTRIBUTE, JOBS, job_by_key

routes = web.RouteTableDef()

STATUS_NAMES: dict[WorkflowExecutionStatus, RunStatus] = {
    WorkflowExecutionStatus.RUNNING: "Running",
    WorkflowExecutionStatus.COMPLETED: "Completed",
    WorkflowExecutionStatus.FAILED: "Failed",
    WorkflowExecutionStatus.CANCELED: "Canceled",
    WorkflowExecutionStatus.TERMINATED: "Terminated",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "ContinuedAsNew",
    WorkflowExecutionStatus.TIMED_OUT: "TimedOut",
}


def status_name(execution: WorkflowExecution) -> RunStatus:
    # Visibility leaves the status unset only for a run it has not indexed yet: it is running.
    return STATUS_NAMES.get(execution.status, "Running") if execution.status else "Running"


JobKey = Literal["appointment-reminder", "financial-export", "stock-reconciliation"]
assert set(get_args(JobKey)) == {job.key for job in JOBS}, "JobKey must list every job"


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
    try:
        query = RunsQuery.model_validate(dict(request.query))
    except ValidationError as error:
        raise ApiError(422, "validation_error", describe_validation_error(error)) from None
    async with temporal_call():
        runs = await recent_runs(request.app[TEMPORAL], query)
    return json_model(RunList(runs=runs))


def visibility_query(query: RunsQuery) -> str:
    """Values come from closed sets (validated literals), so building the query text is safe."""
    clauses = []
    if query.job is not None:
        job = job_by_key(query.job)
        assert job is not None
        # The Job attribute covers children and manual runs; the type covers runs started without it.
        clauses.append(f'({JOB_ATTRIBUTE.name}="{job.key}" OR WorkflowType="{job.workflow_type}")')
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
    "The latest run of a workflow: status, times, result or failure",
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
        if error.status == RPCStatusCode.NOT_FOUND:
            raise ApiError(404, "not_found", f"no workflow with id {workflow_id!r}") from None
        raise
    return json_model(run)


async def describe_run(client: Client, workflow_id: str) -> RunResponse:
    description = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=CALL_TIMEOUT)
    status = status_name(description)
    result: Any = None
    failure: RunFailure | None = None
    if status != "Running":
        # Pinned to the described run: a newer run with the same id must not answer for it.
        handle = client.get_workflow_handle(workflow_id, run_id=description.run_id)
        try:
            result = to_jsonable_python(await handle.result(follow_runs=False, rpc_timeout=CALL_TIMEOUT))
        except WorkflowFailureError as error:
            failure = failure_of(error.cause)
        except WorkflowContinuedAsNewError:
            pass  # its successor carries the result; this run has none of its own
    return RunResponse(
        workflow_id=workflow_id,
        run_id=description.run_id,
        type=description.workflow_type,
        status=status,
        started_at=description.start_time,
        closed_at=description.close_time,
        result=result,
        failure=failure,
    )


def failure_of(error: BaseException) -> RunFailure:
    """The root cause an operator can act on, not the "activity task failed" wrapper around it."""
    while isinstance(error, ActivityError | ChildWorkflowError) and error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, ApplicationError):
        return RunFailure(message=error.message, type=error.type or "ApplicationError")
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return RunFailure(message=message, type=type(error).__name__)
