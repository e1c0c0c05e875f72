"""POST /api/v1/workers/appointment-reminder/trigger: start (or find) a reminder run, or a dry run."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import Field
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributePair

from api.bodies import json_model, read_model
from api.cache import TtlCache
from api.errors import ApiError
from api.keys import RUNNING_REMINDER_CACHE, SETTINGS, TEMPORAL
from api.models import CamelModel, CamelRequest
from api.openapi import documented
from api.starts import RunningRun, StartedRun, start_or_join
from api.temporal_calls import CALL_TIMEOUT, temporal_call
from petcare.jobs import APPOINTMENT_REMINDER, JOB_ATTRIBUTE
from petcare.models.reminders import (
    DRY_RUN_TIMEOUT,
    DRY_RUN_WORKFLOW_TYPE,
    MANUAL_WORKFLOW_ID,
    PlannedCounts,
    PreviewMessage,
    ReminderDryRunInput,
    ReminderPreview,
    ReminderRunInput,
)
from petcare.summaries import reminder_summary

routes = web.RouteTableDef()


class TriggerRequest(CamelRequest):
    dry_run: bool = False
    preview_limit: int | None = Field(default=None, ge=0, le=100)


class DryRunCounts(CamelModel, PlannedCounts):
    """The worker's planned counts, in the API's camelCase."""


class DryRunMessage(CamelModel, PreviewMessage):
    """A rendered message of the worker's preview, in the API's camelCase."""


class DryRunResponse(CamelModel):
    dry_run: Literal[True] = True
    as_of: datetime
    counts: DryRunCounts
    messages: list[DryRunMessage]


@routes.post("/api/v1/workers/appointment-reminder/trigger")
@documented(
    "Start a reminder run now (a run already going is returned instead), or with dryRun preview "
    "what it would send without sending or marking anything",
    request=TriggerRequest,
    response=StartedRun,
    status=202,
    other_responses={200: DryRunResponse},
    errors=(400, 422, 503),
    tags=("workers",),
)
async def trigger_reminders(request: web.Request) -> web.Response:
    # The old endpoint took no body: an empty one is a plain trigger.
    body = await read_model(request, TriggerRequest, optional=True)
    client = request.app[TEMPORAL]
    task_queue = request.app[SETTINGS].task_queue
    if body.dry_run:
        preview = await dry_run(client, task_queue, body.preview_limit)
        return json_model(preview)
    async with temporal_call():
        summary = reminder_summary("manual", request.app[SETTINGS].reminders.window_hours)
        accepted = await start_or_find(client, task_queue, request.app[RUNNING_REMINDER_CACHE], summary)
    return json_model(accepted, status=202)


async def start_or_find(
    client: Client, task_queue: str, running: TtlCache[RunningRun], summary: str | None = None
) -> StartedRun:
    """The running reminder run if there is one (scheduled or manual), else a new manual run."""
    found = (await running.get(lambda: _running_reminder_run(client))).run
    if found is not None:
        return found
    return await start_or_join(
        client,
        APPOINTMENT_REMINDER.workflow_type,
        ReminderRunInput(),
        workflow_id=MANUAL_WORKFLOW_ID,
        task_queue=task_queue,
        attributes=[SearchAttributePair(JOB_ATTRIBUTE, APPOINTMENT_REMINDER.key)],
        summary=summary,
    )


async def _running_reminder_run(client: Client) -> RunningRun:
    running = client.list_workflows(
        f'WorkflowType="{APPOINTMENT_REMINDER.workflow_type}" AND ExecutionStatus="Running"',
        limit=1,
        rpc_timeout=CALL_TIMEOUT,
    )
    async for execution in running:
        return RunningRun(StartedRun(workflow_id=execution.id, run_id=execution.run_id, already_running=True))
    return RunningRun(None)


async def dry_run(client: Client, task_queue: str, preview_limit: int | None) -> DryRunResponse:
    """The eligibility SQL and templates run where they live, in the worker, through a short workflow.

    Its execution timeout covers the preview activity's attempts: a worker that does not answer
    within it is a 503."""
    try:
        async with temporal_call(DRY_RUN_TIMEOUT + CALL_TIMEOUT):
            preview = await client.execute_workflow(
                DRY_RUN_WORKFLOW_TYPE,
                ReminderDryRunInput(preview_limit=preview_limit),
                id=f"{APPOINTMENT_REMINDER.key}-dry-run-{uuid.uuid4()}",
                task_queue=task_queue,
                execution_timeout=DRY_RUN_TIMEOUT,
                result_type=ReminderPreview,
            )
    except WorkflowFailureError as error:
        raise ApiError(
            503, "dry_run_failed", f"the dry run did not complete (is a worker running?): {error.cause}"
        ) from None
    return DryRunResponse(
        as_of=preview.as_of,
        counts=DryRunCounts.model_validate(preview.counts.model_dump()),
        messages=[DryRunMessage.model_validate(message.model_dump()) for message in preview.messages],
    )
