"""Temporal and PostgreSQL as the handlers reach them: typed app keys, every call bounded (unreachable
or misconfigured → 503, never a hang or a 500), jobs started under fixed ids, runs as the API shows them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.exports.destinations import Destination
from api.middlewares import ApiError
from api.models import RunFailure, RunResponse, RunStatus, StartedRun
from petcare import db, temporal_client
from petcare.config import Settings
from petcare.errors import describe_failure

# What the app factory puts on the application (api/app.py).
SETTINGS = web.AppKey("settings", Settings)
TEMPORAL = web.AppKey("temporal", Client)
POOL = web.AppKey("pool", asyncpg.Pool)
# Where exports' files are, read back for downloads (the workers write them).
DESTINATION = web.AppKey("export_destination", Destination)

# Long enough for a healthy server under load, short enough that a health probe answers promptly.
CALL_TIMEOUT = timedelta(seconds=2)
# A request's own queries are small (one row, a short list); this only bounds an unreachable server.
DATABASE_CALL_TIMEOUT_SECONDS = 5.0


@asynccontextmanager
async def temporal_call(timeout: timedelta = CALL_TIMEOUT) -> AsyncIterator[None]:
    """Bound the enclosed Temporal calls; turn "Temporal is unreachable" and "Temporal refuses
    this deployment" (an unregistered search attribute, a missing namespace, a key without the
    rights) into 503 ApiErrors."""
    try:
        async with asyncio.timeout(timeout.total_seconds()):
            yield
    except Exception as error:
        if temporal_client.is_unreachable(error):
            raise ApiError(
                503, "temporal_unavailable", "Temporal is unreachable; try again shortly"
            ) from error
        if isinstance(error, RPCError) and temporal_client.is_configuration_refusal(error):
            # The server's own words name what is missing (e.g. "Namespace default has no mapping
            # defined for search attribute Job"); they hold no secret.
            raise ApiError(
                503,
                "temporal_misconfigured",
                f"Temporal refused the call: {error.message} (an operator must fix the Temporal "
                "namespace or the connection settings; see docs/production.md)",
            ) from error
        raise


@asynccontextmanager
async def database_call(timeout: float = DATABASE_CALL_TIMEOUT_SECONDS) -> AsyncIterator[None]:
    """Bound the enclosed pool work; turn "PostgreSQL is unreachable" into a 503 ApiError."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except Exception as error:
        if db.is_unreachable(error):
            raise ApiError(
                503, "database_unavailable", "PostgreSQL is unreachable; try again shortly"
            ) from error
        raise


def is_missing(error: BaseException) -> bool:
    """The workflow or schedule asked for does not exist (a 404), as opposed to the namespace."""
    return (
        isinstance(error, RPCError)
        and error.status == RPCStatusCode.NOT_FOUND
        and not temporal_client.is_namespace_not_found(error)
    )


async def start_or_join(
    client: Client,
    workflow_type: str,
    argument: BaseModel,
    *,
    workflow_id: str,
    task_queue: str,
    attributes: Sequence[SearchAttributePair[str]],
    summary: str | None,
) -> StartedRun:
    """Every job start: the run under its fixed id, or the one already running under it (never a
    second one). A closed run does not block a new one."""
    try:
        # FAIL on a running id: of two requests at once one starts the run, and the other learns
        # the running run's id (USE_EXISTING would not say which of the two cases happened).
        handle = await client.start_workflow(
            workflow_type,
            argument,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=summary,
            search_attributes=TypedSearchAttributes(list(attributes)),
            rpc_timeout=CALL_TIMEOUT,
        )
    except WorkflowAlreadyStartedError as error:
        return StartedRun(workflow_id=workflow_id, run_id=error.run_id or "", already_running=True)
    return StartedRun(workflow_id=workflow_id, run_id=handle.result_run_id or "", already_running=False)


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


async def _closed_outcome(client: Client, workflow_id: str, run_id: str) -> tuple[Any, RunFailure | None]:
    """A closed run's result as JSON, or why it failed (from its close event only)."""
    # Pinned to the run: a newer run with the same id must not answer for it.
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        return to_jsonable_python(await handle.result(follow_runs=False, rpc_timeout=CALL_TIMEOUT)), None
    except WorkflowFailureError as error:
        return None, failure_of(error.cause)
    except WorkflowContinuedAsNewError:
        return None, None  # its successor carries on, and the result; this run has none of its own


async def closed_failure(client: Client, workflow_id: str, run_id: str) -> RunFailure | None:
    """Why a closed run failed, or None if it did not fail."""
    return (await _closed_outcome(client, workflow_id, run_id))[1]


async def describe_run(client: Client, workflow_id: str) -> RunResponse:
    """The latest run under `workflow_id`: status, times, and its result or failure once closed."""
    description = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=CALL_TIMEOUT)
    status = status_name(description)
    result: Any = None
    failure: RunFailure | None = None
    if status != "Running":
        result, failure = await _closed_outcome(client, workflow_id, description.run_id)
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


async def require_store(connection: db.Connection, store_id: UUID) -> None:
    """A 404 naming the store unless it exists."""
    if not await db.store_exists(connection, store_id):
        raise ApiError(404, "not_found", f"no store with id {store_id}")
