"""POST /api/v1/workers/appointment-reminder/trigger: start (or find) a reminder run, or a dry run."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from aiohttp import web
from pydantic import Field
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.bodies import json_model, read_model
from api.errors import ApiError
from api.keys import SETTINGS, TEMPORAL
from api.models import CamelModel, CamelRequest
from api.openapi import documented
from api.temporal_calls import CALL_TIMEOUT, temporal_call
from petcare.jobs import APPOINTMENT_REMINDER, JOB_ATTRIBUTE
from petcare.models.reminders import (
    DRY_RUN_WORKFLOW_TYPE,
    MANUAL_WORKFLOW_ID,
    Channel,
    ReminderDryRunInput,
    ReminderPreview,
    ReminderRunInput,
)
from petcare.summaries import reminder_summary

routes = web.RouteTableDef()

# A dry run is one short activity; a worker that does not pick it up within this is a 503.
DRY_RUN_TIMEOUT = timedelta(seconds=20)


class TriggerRequest(CamelRequest):
    dry_run: bool = False
    preview_limit: int | None = Field(default=None, ge=0, le=100)


class TriggerAccepted(CamelModel):
    workflow_id: str
    run_id: str
    already_running: bool


class DryRunCounts(CamelModel):
    due: int
    email: int
    sms: int
    skipped_no_address: int


class DryRunMessage(CamelModel):
    appointment_id: UUID
    channel: Channel
    recipient: str
    locale: str
    starts_at_local: str
    subject: str | None
    text: str


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
    response=TriggerAccepted,
    status=202,
    other_responses={200: DryRunResponse},
    errors=(400, 422, 503),
    tags=("workers",),
)
async def trigger_reminders(request: web.Request) -> web.Response:
    # The old endpoint took no body: an empty one is a plain trigger.
    body = await read_model(request, TriggerRequest) if (await request.text()).strip() else TriggerRequest()
    client = request.app[TEMPORAL]
    task_queue = request.app[SETTINGS].task_queue
    if body.dry_run:
        preview = await dry_run(client, task_queue, body.preview_limit)
        return json_model(preview)
    async with temporal_call():
        summary = reminder_summary("manual", request.app[SETTINGS].reminders.window_hours)
        accepted = await start_or_find(client, task_queue, summary)
    return json_model(accepted, status=202)


async def start_or_find(client: Client, task_queue: str, summary: str | None = None) -> TriggerAccepted:
    """The running reminder run if there is one (scheduled or manual), else a new manual run."""
    running = client.list_workflows(
        f'WorkflowType="{APPOINTMENT_REMINDER.workflow_type}" AND ExecutionStatus="Running"',
        limit=1,
        rpc_timeout=CALL_TIMEOUT,
    )
    async for execution in running:
        return TriggerAccepted(workflow_id=execution.id, run_id=execution.run_id, already_running=True)
    try:
        # The fixed id makes the server the arbiter: of two triggers at once, one starts the run.
        handle = await client.start_workflow(
            APPOINTMENT_REMINDER.workflow_type,
            ReminderRunInput(),
            id=MANUAL_WORKFLOW_ID,
            task_queue=task_queue,
            static_summary=summary,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(JOB_ATTRIBUTE, APPOINTMENT_REMINDER.key)]
            ),
            rpc_timeout=CALL_TIMEOUT,
        )
    except WorkflowAlreadyStartedError as error:
        return TriggerAccepted(
            workflow_id=MANUAL_WORKFLOW_ID, run_id=error.run_id or "", already_running=True
        )
    assert handle.result_run_id is not None
    return TriggerAccepted(workflow_id=handle.id, run_id=handle.result_run_id, already_running=False)


async def dry_run(client: Client, task_queue: str, preview_limit: int | None) -> DryRunResponse:
    """The eligibility SQL and templates run where they live, in the worker, through a short workflow."""
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
    counts = preview.counts
    return DryRunResponse(
        as_of=preview.as_of,
        counts=DryRunCounts(
            due=counts.due, email=counts.email, sms=counts.sms, skipped_no_address=counts.skipped_no_address
        ),
        messages=[DryRunMessage.model_validate(message.model_dump()) for message in preview.messages],
    )
