"""Each job's state as Temporal sees it (visibility and its schedule), for the health route."""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError

from api.models import LastFailure, LastRun, WorkerHealth
from api.run_views import closed_failure, status_name
from api.temporal_calls import CALL_TIMEOUT, is_missing
from petcare.jobs import Job

# Enough recent runs to find the latest start even when visibility lists running runs first.
RECENT_RUNS = 10


async def worker_health(client: Client, job: Job) -> WorkerHealth:
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


def unknown_health(job: Job) -> WorkerHealth:
    """What health says of a job while Temporal cannot be asked."""
    return WorkerHealth(
        name=job.worker_name,
        is_running=False,
        last_run=None,
        next_run_at=None,
        schedule_paused=None,
        last_failure=None,
    )


async def _last_run(client: Client, job: Job) -> LastRun | None:
    recent = await _recent(client, f'WorkflowType="{job.workflow_type}"')
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
    recent = await _recent(
        client, f'WorkflowType="{job.workflow_type}" AND ExecutionStatus IN ("Failed", "TimedOut")'
    )
    if not recent:
        return None
    latest = max(recent, key=lambda execution: execution.close_time or execution.start_time)
    failure = await closed_failure(client, latest.id, latest.run_id)
    if failure is None:
        return None  # visibility was behind: this run did not fail after all
    # The type only: this route is public, and a message can name hosts, users and paths.
    return LastFailure(
        workflow_id=latest.id,
        run_id=latest.run_id,
        status=status_name(latest),
        closed_at=latest.close_time,
        type=failure.type,
    )


async def _recent(client: Client, query: str) -> list[WorkflowExecution]:
    """The first RECENT_RUNS runs visibility lists for `query` (its order is not by start time)."""
    return [
        execution
        async for execution in client.list_workflows(
            query, limit=RECENT_RUNS, page_size=RECENT_RUNS, rpc_timeout=CALL_TIMEOUT
        )
    ]


async def _schedule(client: Client, job: Job) -> tuple[datetime | None, bool | None]:
    try:
        description = await client.get_schedule_handle(job.key).describe(rpc_timeout=CALL_TIMEOUT)
    except RPCError as error:
        if is_missing(error):
            return None, None
        raise
    upcoming = description.info.next_action_times
    return (upcoming[0] if upcoming else None), description.schedule.state.paused
