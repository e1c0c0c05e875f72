"""One run as the API shows it: Temporal's status names, the result, or the failure's root cause."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python
from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)

from api.models import RunFailure, RunResponse, RunStatus
from api.temporal_calls import CALL_TIMEOUT
from petcare.errors import describe_failure

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


def failure_of(error: BaseException) -> RunFailure:
    """The root cause an operator can act on, not the "activity task failed" wrapper around it."""
    error_type, message = describe_failure(error)
    return RunFailure(message=message, type=error_type)


async def closed_failure(client: Client, workflow_id: str, run_id: str) -> RunFailure | None:
    """Why a closed run failed (its close event only), or None if it did not fail."""
    # Pinned to the run: a newer run with the same id must not answer for it.
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        await handle.result(follow_runs=False, rpc_timeout=CALL_TIMEOUT)
    except WorkflowFailureError as error:
        return failure_of(error.cause)
    except WorkflowContinuedAsNewError:
        return None  # its successor carries on
    return None


async def describe_run(client: Client, workflow_id: str) -> RunResponse:
    description = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=CALL_TIMEOUT)
    status = status_name(description)
    result: Any = None
    failure: RunFailure | None = None
    if status != "Running":
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
