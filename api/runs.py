"""GET /api/v1/workers/runs/{workflowId}: one workflow's latest run, its result or its failure."""

from __future__ import annotations

from typing import Any

from aiohttp import web
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

from api.bodies import json_model
from api.errors import ApiError
from api.keys import TEMPORAL
from api.models import RunFailure, RunResponse, RunStatus
from api.openapi import documented
from api.temporal_calls import CALL_TIMEOUT, temporal_call

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
