"""Starting a job's workflow under a fixed id, so the server decides between concurrent requests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.models import CamelModel
from api.temporal_calls import CALL_TIMEOUT

RUNNING_RUN_CACHE_SECONDS = 1.0


class StartedRun(CamelModel):
    workflow_id: str
    run_id: str
    already_running: bool


@dataclass(frozen=True)
class RunningRun:
    """The run visibility shows as running, if any: cached briefly (`api.keys.RUNNING_REMINDER_CACHE`)
    so that a burst of triggers costs one visibility query, not one each."""

    run: StartedRun | None


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
    """Start the run, or return the one already running under the same id (never a second one)."""
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
