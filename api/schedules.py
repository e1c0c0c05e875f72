"""Schedule control over HTTP: list, pause, unpause, trigger and backfill the jobs' Temporal Schedules."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Literal

from aiohttp import web
from pydantic import AwareDatetime, Field, model_validator
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleBackfill,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleOverlapPolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from api.bodies import json_model, read_model
from api.errors import ApiError
from api.keys import TEMPORAL
from api.models import CamelModel, CamelRequest, RunStatus
from api.openapi import documented
from api.runs import status_name
from api.schedule_words import spec_in_words
from api.temporal_calls import CALL_TIMEOUT, temporal_call

routes = web.RouteTableDef()

# A backfill starts one run per missed time: a year of hourly ticks is a mistake, not a repair.
MAX_BACKFILL = timedelta(days=31)
MAX_SCHEDULES = 100
NEXT_RUNS = 5
Overlap = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"]


class ScheduleAction(CamelModel):
    scheduled_at: datetime
    started_at: datetime
    workflow_id: str | None
    run_id: str | None
    status: RunStatus | None  # null once visibility no longer has the run


class ScheduleView(CamelModel):
    id: str
    workflow_type: str | None
    spec: str  # in words, e.g. "every 1h at +5m"
    overlap: Overlap
    next_runs: list[datetime]
    paused: bool
    note: str | None
    recent_actions: list[ScheduleAction]


class ScheduleList(CamelModel):
    schedules: list[ScheduleView]


class NoteRequest(CamelRequest):
    note: str | None = Field(default=None, max_length=500)


class TriggerRequest(CamelRequest):
    overlap: Overlap | None = None  # the schedule's own policy when absent


class TriggerAccepted(CamelModel):
    schedule_id: str
    triggered: bool


class BackfillRequest(CamelRequest):
    start: AwareDatetime
    end: AwareDatetime
    overlap: Overlap | None = None

    @model_validator(mode="after")
    def _bounded(self) -> BackfillRequest:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        if self.end - self.start > MAX_BACKFILL:
            raise ValueError(f"the range may span at most {MAX_BACKFILL.days} days")
        return self


class BackfillAccepted(CamelModel):
    schedule_id: str
    start: datetime
    end: datetime
    overlap: Overlap | None


def _policy(overlap: Overlap | None) -> ScheduleOverlapPolicy | None:
    return ScheduleOverlapPolicy[overlap.upper()] if overlap else None


@routes.get("/api/v1/schedules")
@documented(
    "Every schedule: its times in words, next runs, pause state, note and recent runs",
    response=ScheduleList,
    errors=(503,),
    tags=("schedules",),
)
async def list_schedules(request: web.Request) -> web.Response:
    client = request.app[TEMPORAL]
    async with temporal_call():
        ids = [entry.id async for entry in await client.list_schedules(rpc_timeout=CALL_TIMEOUT)]
        views = await asyncio.gather(*(_view(client, schedule_id) for schedule_id in ids[:MAX_SCHEDULES]))
    return json_model(ScheduleList(schedules=sorted(views, key=lambda view: view.id)))


@routes.post("/api/v1/schedules/{scheduleId}/pause")
@documented(
    "Pause a schedule (runs in progress go on), with an optional note saying why",
    request=NoteRequest,
    response=ScheduleView,
    errors=(400, 404, 422, 503),
    tags=("schedules",),
)
async def pause(request: web.Request) -> web.Response:
    body = await read_model(request, NoteRequest, optional=True)
    handle = await _existing(request)
    async with temporal_call():
        await handle.pause(note=body.note or "paused through the API", rpc_timeout=CALL_TIMEOUT)
        view = await _view(request.app[TEMPORAL], handle.id)
    return json_model(view)


@routes.post("/api/v1/schedules/{scheduleId}/unpause")
@documented(
    "Resume a paused schedule, with an optional note",
    request=NoteRequest,
    response=ScheduleView,
    errors=(400, 404, 422, 503),
    tags=("schedules",),
)
async def unpause(request: web.Request) -> web.Response:
    body = await read_model(request, NoteRequest, optional=True)
    handle = await _existing(request)
    async with temporal_call():
        await handle.unpause(note=body.note or "unpaused through the API", rpc_timeout=CALL_TIMEOUT)
        view = await _view(request.app[TEMPORAL], handle.id)
    return json_model(view)


@routes.post("/api/v1/schedules/{scheduleId}/trigger")
@documented(
    "Start the schedule's action now (the overlap policy decides what a running one means)",
    request=TriggerRequest,
    response=TriggerAccepted,
    status=202,
    errors=(400, 404, 422, 503),
    tags=("schedules",),
)
async def trigger(request: web.Request) -> web.Response:
    body = await read_model(request, TriggerRequest, optional=True)
    handle = await _existing(request)
    async with temporal_call():
        await handle.trigger(overlap=_policy(body.overlap), rpc_timeout=CALL_TIMEOUT)
    return json_model(TriggerAccepted(schedule_id=handle.id, triggered=True), status=202)


@routes.post("/api/v1/schedules/{scheduleId}/backfill")
@documented(
    "Run the schedule's action for every time it would have run in [start, end)",
    request=BackfillRequest,
    response=BackfillAccepted,
    status=202,
    errors=(400, 404, 422, 503),
    tags=("schedules",),
)
async def backfill(request: web.Request) -> web.Response:
    body = await read_model(request, BackfillRequest)
    handle = await _existing(request)
    async with temporal_call():
        await handle.backfill(
            ScheduleBackfill(start_at=body.start, end_at=body.end, overlap=_policy(body.overlap)),
            rpc_timeout=CALL_TIMEOUT,
        )
    accepted = BackfillAccepted(schedule_id=handle.id, start=body.start, end=body.end, overlap=body.overlap)
    return json_model(accepted, status=202)


async def _existing(request: web.Request) -> ScheduleHandle:
    schedule_id = request.match_info["scheduleId"]
    handle = request.app[TEMPORAL].get_schedule_handle(schedule_id)
    async with temporal_call():
        try:
            await handle.describe(rpc_timeout=CALL_TIMEOUT)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise ApiError(404, "not_found", f"no schedule with id {schedule_id!r}") from None
            raise
    return handle


async def _view(client: Client, schedule_id: str) -> ScheduleView:
    description = await client.get_schedule_handle(schedule_id).describe(rpc_timeout=CALL_TIMEOUT)
    statuses = await _statuses(client, schedule_id)
    return ScheduleView(
        id=schedule_id,
        workflow_type=getattr(description.schedule.action, "workflow", None),
        spec=spec_in_words(description.schedule.spec),
        overlap=description.schedule.policy.overlap.name.lower(),
        next_runs=list(description.info.next_action_times[:NEXT_RUNS]),
        paused=description.schedule.state.paused,
        note=description.schedule.state.note or None,
        recent_actions=_actions(description, statuses),
    )


async def _statuses(client: Client, schedule_id: str) -> dict[str, RunStatus]:
    """Status of the schedule's recent runs, from one visibility query."""
    found: dict[str, RunStatus] = {}
    async for execution in client.list_workflows(
        f'TemporalScheduledById="{_quoted(schedule_id)}"', limit=20, page_size=20, rpc_timeout=CALL_TIMEOUT
    ):
        found[execution.run_id] = status_name(execution)
    return found


def _actions(description: ScheduleDescription, statuses: dict[str, RunStatus]) -> list[ScheduleAction]:
    actions = []
    for result in reversed(description.info.recent_actions):  # newest first
        started = result.action if isinstance(result.action, ScheduleActionExecutionStartWorkflow) else None
        run_id = started.first_execution_run_id if started else None
        actions.append(
            ScheduleAction(
                scheduled_at=result.scheduled_at,
                started_at=result.started_at,
                workflow_id=started.workflow_id if started else None,
                run_id=run_id,
                status=statuses.get(run_id) if run_id else None,
            )
        )
    return actions


def _quoted(value: str) -> str:
    # Visibility queries have no parameters: escape what would end the string literal.
    return value.replace("\\", "\\\\").replace('"', '\\"')
