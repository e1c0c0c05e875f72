"""The jobs as Temporal sees them: health, recent runs and one run, and the appointment reminder trigger.

(The export and stock triggers live beside their own resources, in api/exports.py and api/stock.py.)

Health: only connectivity errors (no answer, timeouts, refused connections) make a service
"unreachable"; any other error is logged with its traceback and reported as "error", so a bug or
a misconfiguration is not mistaken for an outage. Either way the answer is a 503. Whether a worker
polls the task queue is reported too, but answers 503 only with `?strict=true`: the API's readiness
must not depend on the workers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Generic, Literal, TypeVar

import asyncpg
from aiohttp import web
from pydantic import Field
from temporalio.client import Client, WorkflowExecution, WorkflowFailureError
from temporalio.common import SearchAttributeKey, SearchAttributePair
from temporalio.service import RPCError, RPCStatusCode

from api.backends import (
    CALL_TIMEOUT,
    DATABASE_CALL_TIMEOUT_SECONDS,
    POOL,
    SETTINGS,
    TEMPORAL,
    closed_failure,
    describe_run,
    is_missing,
    start_or_join,
    status_name,
    temporal_call,
)
from api.middlewares import ApiError
from api.models import (
    CamelModel,
    CamelRequest,
    PageQuery,
    RunResponse,
    RunStatus,
    StartedRun,
    cursor_scope,
    decode_cursor,
    encode_cursor,
    json_model,
    read_model,
    read_query,
)
from api.openapi import documented
from petcare import db, temporal_client, visibility
from petcare.config import Settings
from petcare.jobs import APPOINTMENT_REMINDER, JOB_ATTRIBUTE, JOBS, Job
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
from petcare.task_queue_pollers import live_pollers

log = logging.getLogger(__name__)

T = TypeVar("T")


class TtlCache(Generic[T]):
    """Holds the last answer for `ttl` seconds; concurrent misses share one computation.

    For `stale` seconds after it expires the old answer is still served while a fresh one is
    computed in the background, so a burst of requests never queues behind the refresh (that
    queue was what set the p99 under load). Past that, callers wait for the fresh answer.
    """

    def __init__(self, ttl: float, *, stale: float = 0.0) -> None:
        self.ttl = ttl
        self.stale = stale
        self._value: T | None = None
        self._expires = 0.0
        self._pending: asyncio.Task[T] | None = None

    async def get(self, compute: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._value is not None and now < self._expires:
            return self._value
        if self._pending is None:
            self._pending = loop.create_task(self._refresh(compute))
            self._pending.add_done_callback(_retrieve_exception)
        if self._value is not None and now < self._expires + self.stale:
            return self._value
        # Shielded: a client that hangs up must not cancel the answer the others wait for.
        return await asyncio.shield(self._pending)

    async def _refresh(self, compute: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await compute()
            self._value = value
            self._expires = asyncio.get_running_loop().time() + self.ttl
            return value
        finally:
            self._pending = None


def _retrieve_exception(task: asyncio.Task[object]) -> None:
    # A background refresh nobody awaited must not log "exception was never retrieved"; the next
    # caller that waits sees the failure of its own refresh.
    if not task.cancelled():
        task.exception()


def _running(workflow_type: str) -> str:
    # Visibility, not a flag: right whoever started the run (schedule, API or CLI).
    return visibility.all_of(
        visibility.equals(visibility.WORKFLOW_TYPE, workflow_type),
        visibility.equals(visibility.EXECUTION_STATUS, "Running"),
    )


# --- GET /api/v1/workers/health ---

# How long one answer is reused: health is polled by load balancers and dashboards, and each
# answer costs ~10 visibility queries.
HEALTH_CACHE_SECONDS = 1.5
# Enough recent runs to find the latest start even when visibility lists running runs first.
RECENT_RUNS = 10


class LastRun(CamelModel):
    workflow_id: str
    run_id: str
    status: RunStatus
    started_at: datetime
    closed_at: datetime | None


class LastFailure(CamelModel):
    """The latest run of a job that failed or timed out, and the error's type.

    No message: health needs no token, and a message can name hosts, users and paths. The full
    failure is on the authenticated `GET /api/v1/workers/runs/{workflowId}`.
    """

    workflow_id: str
    run_id: str
    status: RunStatus
    closed_at: datetime | None
    type: str


class TaskQueueHealth(CamelModel):
    """Whether a worker polls the jobs' task queue: the distinct workers seen on any partition
    within PETCARE_API__POLLER_MAX_AGE_SECONDS ("unknown" while Temporal cannot be asked)."""

    name: str
    pollers: int | None
    status: Literal["ok", "no_pollers", "unknown"]


class WorkerHealth(CamelModel):
    name: str  # the old NestJS worker name, e.g. AppointmentReminderWorker
    is_running: bool
    last_run: LastRun | None
    next_run_at: datetime | None  # null when the job has no schedule
    schedule_paused: bool | None
    last_failure: LastFailure | None = None


class ServiceStatus(CamelModel):
    # "error": the check failed for another reason than connectivity (a bug or a misconfiguration,
    # logged with its traceback), so it is not mistaken for an outage.
    status: Literal["ok", "unreachable", "error"]


class HealthResponse(CamelModel):
    workers: list[WorkerHealth]
    temporal: ServiceStatus
    database: ServiceStatus
    task_queue: TaskQueueHealth

    @property
    def healthy(self) -> bool:
        return self.temporal.status == "ok" and self.database.status == "ok"

    def status_code(self, *, strict: bool) -> int:
        """503 when Temporal or PostgreSQL is not ok; with `strict`, also when no worker polls."""
        polled = self.task_queue.status == "ok" or not strict
        return 200 if self.healthy and polled else 503

    @cached_property
    def json_text(self) -> str:
        # Rendered once per probe: one cached answer is sent to many requests (HEALTH_CACHE).
        return self.model_dump_json(by_alias=True)


# The last health answer, shared by all requests for a second or two.
HEALTH_CACHE = web.AppKey[TtlCache[HealthResponse]]("health_cache")

OK = ServiceStatus(status="ok")
UNREACHABLE = ServiceStatus(status="unreachable")
ERROR = ServiceStatus(status="error")


class HealthQuery(CamelRequest):
    # true: no worker polling the task queue is a 503 too (for a probe that checks the workers).
    strict: bool = False


@documented(
    "Each job's state (running, last run and the type of its last failure, next scheduled run), "
    "whether a worker polls the task queue, and the state of Temporal and PostgreSQL (ok, "
    "unreachable, or error: a failed check that is not a connectivity problem)",
    response=HealthResponse,
    query=HealthQuery,
    other_responses={503: HealthResponse},
    errors=(422,),
    tags=("workers",),
)
async def get_health(request: web.Request) -> web.Response:
    query = read_query(request, HealthQuery)
    health = await current_health(request.app)
    return web.json_response(text=health.json_text, status=health.status_code(strict=query.strict))


async def current_health(app: web.Application) -> HealthResponse:
    """The shared, cached health answer (also what /metrics reports the pollers from)."""
    settings = app[SETTINGS]
    return await app[HEALTH_CACHE].get(lambda: probe(app[TEMPORAL], app[POOL], settings))


async def probe(client: Client, pool: asyncpg.Pool, settings: Settings) -> HealthResponse:
    max_age = timedelta(seconds=settings.api.poller_max_age_seconds)
    (temporal, workers, task_queue), database = await asyncio.gather(
        _workers(client, settings.task_queue, max_age), _database(pool)
    )
    return HealthResponse(workers=workers, temporal=temporal, database=database, task_queue=task_queue)


async def _workers(
    client: Client, task_queue: str, max_age: timedelta
) -> tuple[ServiceStatus, list[WorkerHealth], TaskQueueHealth]:
    try:
        async with asyncio.timeout(CALL_TIMEOUT.total_seconds()):
            pollers, workers = await asyncio.gather(
                live_pollers(client, task_queue, max_age, timeout=CALL_TIMEOUT),
                asyncio.gather(*(worker_health(client, job) for job in JOBS)),
            )
    except Exception as error:
        # Health must answer whatever happened.
        unknown = TaskQueueHealth(name=task_queue, pollers=None, status="unknown")
        status = _status("Temporal", error, temporal_client.is_unreachable(error))
        return status, [unknown_health(job) for job in JOBS], unknown
    queue = TaskQueueHealth(name=task_queue, pollers=len(pollers), status="ok" if pollers else "no_pollers")
    return OK, list(workers), queue


async def _database(pool: asyncpg.Pool) -> ServiceStatus:
    try:
        async with asyncio.timeout(DATABASE_CALL_TIMEOUT_SECONDS):
            await pool.fetchval("SELECT 1")
        return OK
    except Exception as error:
        return _status("PostgreSQL", error, db.is_unreachable(error))


def _status(service: str, error: Exception, unreachable: bool) -> ServiceStatus:
    if unreachable:
        log.warning("health: %s is unreachable: %r", service, error)
        return UNREACHABLE
    log.error("health: %s check failed: %r", service, error, exc_info=error)
    return ERROR


async def worker_health(client: Client, job: Job) -> WorkerHealth:
    """One job's state from visibility and its schedule."""
    running, last_run, schedule, last_failure = await asyncio.gather(
        client.count_workflows(_running(job.workflow_type), rpc_timeout=CALL_TIMEOUT),
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
    latest = await _latest(client, visibility.equals(visibility.WORKFLOW_TYPE, job.workflow_type))
    if latest is None:
        return None
    return LastRun(
        workflow_id=latest.id,
        run_id=latest.run_id,
        status=status_name(latest),
        started_at=latest.start_time,
        closed_at=latest.close_time,
    )


async def _last_failure(client: Client, job: Job) -> LastFailure | None:
    # A run stuck on failing workflow tasks first: it is going on now, and nothing else reports it.
    stuck, closed = await asyncio.gather(_stuck_run(client, job), _last_closed_failure(client, job))
    return stuck or closed


REPORTED_PROBLEMS = SearchAttributeKey.for_keyword_list(visibility.REPORTED_PROBLEMS)


async def _stuck_run(client: Client, job: Job) -> LastFailure | None:
    """The latest running run whose workflow tasks keep failing or timing out (a NonDeterminismError
    after a bad deploy, a bug in workflow code): no failure closes such a run, so neither the alert
    interceptor nor the timeout sweep sees it. The server marks it after 5 failed tasks in a row."""
    query = visibility.all_of(
        _running(job.workflow_type),
        visibility.one_of(visibility.REPORTED_PROBLEMS, visibility.WORKFLOW_TASK_PROBLEMS),
    )
    latest = await _latest(client, query)
    if latest is None:
        return None
    return LastFailure(
        workflow_id=latest.id,
        run_id=latest.run_id,
        status="Running",
        closed_at=None,
        type=workflow_task_problem(latest.typed_search_attributes.get(REPORTED_PROBLEMS) or []),
    )


def workflow_task_problem(problems: Sequence[str]) -> str:
    """`NonDeterministicError` for ["category=WorkflowTaskFailed",
    "cause=WorkflowTaskFailedCauseNonDeterministicError"]; the category when no cause is given."""
    values = dict(problem.partition("=")[::2] for problem in problems)
    cause = values.get("cause", "").removeprefix("WorkflowTaskFailedCause")
    return cause or values.get("category") or "WorkflowTaskFailed"


async def _last_closed_failure(client: Client, job: Job) -> LastFailure | None:
    failed = visibility.all_of(
        visibility.equals(visibility.WORKFLOW_TYPE, job.workflow_type),
        visibility.one_of(visibility.EXECUTION_STATUS, ("Failed", "TimedOut")),
    )
    latest = await _latest(client, failed, by_close=True)
    if latest is None:
        return None
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


async def _latest(client: Client, query: str, *, by_close: bool = False) -> WorkflowExecution | None:
    """The latest of the first RECENT_RUNS runs visibility lists for `query` (its order is not by
    start time), by start time or, `by_close`, by close time; None when it lists none."""
    recent = [
        execution
        async for execution in client.list_workflows(
            query, limit=RECENT_RUNS, page_size=RECENT_RUNS, rpc_timeout=CALL_TIMEOUT
        )
    ]
    if not recent:
        return None
    if by_close:
        return max(recent, key=lambda execution: execution.close_time or execution.start_time)
    return max(recent, key=lambda execution: execution.start_time)


async def _schedule(client: Client, job: Job) -> tuple[datetime | None, bool | None]:
    try:
        description = await client.get_schedule_handle(job.key).describe(rpc_timeout=CALL_TIMEOUT)
    except RPCError as error:
        if is_missing(error):
            return None, None
        raise
    upcoming = description.info.next_action_times
    return (upcoming[0] if upcoming else None), description.schedule.state.paused


# --- GET /api/v1/workers/runs and /api/v1/workers/runs/{workflowId} ---

# Every job's key (tests/test_ops_runs.py checks it against petcare.jobs.JOBS).
JobKey = Literal["appointment-reminder", "financial-export", "stock-reconciliation"]
WORKFLOW_TYPES = {job.key: job.workflow_type for job in JOBS}


class RunsQuery(PageQuery):
    job: JobKey | None = None
    status: RunStatus | None = None


class RunSummary(CamelModel):
    workflow_id: str
    run_id: str
    type: str
    job: str | None  # the Job search attribute; null for runs started without one
    status: RunStatus
    started_at: datetime
    closed_at: datetime | None


class RunList(CamelModel):
    runs: list[RunSummary]
    next_cursor: str | None = None  # null on the last page


@documented(
    "Recent runs, optionally of one job and in one status (Temporal's visibility), in visibility's "
    "order (running first, then by close time) and newest first within a page; page on with nextCursor",
    response=RunList,
    query=RunsQuery,
    errors=(400, 422, 503),
    tags=("runs",),
)
async def list_runs(request: web.Request) -> web.Response:
    query = read_query(request, RunsQuery)
    scope = cursor_scope("workers/runs", query)
    token = None
    if query.cursor is not None:
        [encoded] = decode_cursor(scope, query.cursor, size=1)
        try:
            token = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ApiError(400, "invalid_cursor", "cursor is malformed: pass nextCursor unchanged") from None
    try:
        async with temporal_call():
            runs, next_token = await recent_runs(request.app[TEMPORAL], query, token)
    except RPCError as error:
        if token is not None and error.status == RPCStatusCode.INVALID_ARGUMENT:
            # A token visibility no longer accepts (or never made): the cursor, not the server.
            raise ApiError(
                400, "invalid_cursor", f"cursor is not accepted by Temporal: {error.message}"
            ) from None
        raise
    next_cursor = None if next_token is None else encode_cursor(scope, base64.b64encode(next_token).decode())
    return json_model(RunList(runs=runs, next_cursor=next_cursor))


def visibility_query(query: RunsQuery) -> str:
    job = ""
    if query.job is not None:
        # The Job attribute covers children and manual runs; the type covers runs started without it.
        job = visibility.any_of(
            visibility.equals(JOB_ATTRIBUTE.name, query.job),
            visibility.equals(visibility.WORKFLOW_TYPE, WORKFLOW_TYPES[query.job]),
        )
    status = visibility.equals(visibility.EXECUTION_STATUS, query.status) if query.status is not None else ""
    return visibility.all_of(job, status)


async def recent_runs(
    client: Client, query: RunsQuery, page_token: bytes | None = None
) -> tuple[list[RunSummary], bytes | None]:
    """One page of visibility (the first, or the one `page_token` names) and the next page's token."""
    pages = client.list_workflows(
        visibility_query(query), page_size=query.limit, next_page_token=page_token, rpc_timeout=CALL_TIMEOUT
    )
    await pages.fetch_next_page()
    runs = [
        RunSummary(
            workflow_id=execution.id,
            run_id=execution.run_id,
            type=execution.workflow_type,
            job=execution.typed_search_attributes.get(JOB_ATTRIBUTE),
            status=status_name(execution),
            started_at=execution.start_time,
            closed_at=execution.close_time,
        )
        for execution in pages.current_page or []
    ]
    return sorted(runs, key=lambda run: run.started_at, reverse=True), pages.next_page_token


@documented(
    "The latest run of a workflow: status, times, result or failure (message and type)",
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
        if is_missing(error):
            raise ApiError(404, "not_found", f"no workflow with id {workflow_id!r}") from None
        raise
    return json_model(run)


# --- POST /api/v1/workers/appointment-reminder/trigger ---

RUNNING_RUN_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class RunningRun:
    """The reminder run visibility shows as running, if any: cached briefly so that a burst of
    triggers costs one visibility query, not one each."""

    run: StartedRun | None


# A run started within that second under the manual id is still found by the server's id check.
RUNNING_REMINDER_CACHE = web.AppKey[TtlCache[RunningRun]]("running_reminder_cache")


class ReminderTriggerRequest(CamelRequest):
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


@documented(
    "Start a reminder run now (a run already going is returned instead), or with dryRun preview "
    "what it would send without sending or marking anything",
    request=ReminderTriggerRequest,
    response=StartedRun,
    status=202,
    other_responses={200: DryRunResponse},
    errors=(400, 422, 503),
    tags=("workers",),
)
async def trigger_reminders(request: web.Request) -> web.Response:
    # The old endpoint took no body: an empty one is a plain trigger.
    body = await read_model(request, ReminderTriggerRequest, optional=True)
    client = request.app[TEMPORAL]
    task_queue = request.app[SETTINGS].task_queue
    if body.dry_run:
        preview = await dry_run(client, task_queue, body.preview_limit)
        return json_model(preview)
    async with temporal_call():
        summary = reminder_summary("manual", request.app[SETTINGS].reminders.window_hours)
        accepted = await start_or_find_reminders(
            client, task_queue, request.app[RUNNING_REMINDER_CACHE], summary
        )
    return json_model(accepted, status=202)


async def start_or_find_reminders(
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
        _running(APPOINTMENT_REMINDER.workflow_type), limit=1, rpc_timeout=CALL_TIMEOUT
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
