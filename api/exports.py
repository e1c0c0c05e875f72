"""Financial exports over HTTP: request one, read it, process one now, trigger every startable one."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import Field, field_validator, model_validator
from temporalio.client import Client
from temporalio.common import SearchAttributePair

from api.backends import POOL, SETTINGS, TEMPORAL, database_call, start_or_join, temporal_call
from api.middlewares import ApiError
from api.models import CamelModel, CamelRequest, StartedRun, json_model, path_uuid, read_model, read_query
from api.openapi import documented
from petcare import exports_repository
from petcare.jobs import EXPORT_ATTRIBUTE, FINANCIAL_EXPORT, JOB_ATTRIBUTE, STORE_ATTRIBUTE
from petcare.models.exports import (
    EXPORT_WORKFLOW_ID_PREFIX,
    ExportedFile,
    ExportFormat,
    ExportStatus,
    FinancialExportInput,
    export_workflow_id,
)
from petcare.summaries import export_summaries

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Business periods: anything outside is a typo (0001, 9999), and such dates break arithmetic downstream.
EARLIEST = date(2000, 1, 1)
LATEST = date(2999, 12, 31)
_PERIOD_DAY = f"an ISO date (YYYY-MM-DD) from {EARLIEST} to {LATEST}"


class ExportRequest(CamelRequest):
    period_start: date = Field(description=f"first day, {_PERIOD_DAY}")
    # Inclusive; both are calendar days in each store's own time zone.
    period_end: date = Field(description=f"last day (inclusive), {_PERIOD_DAY}")
    format: ExportFormat
    store_id: UUID | None = None  # absent: every store

    @field_validator("period_start", "period_end", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        # pydantic would also take a number of seconds; only an ISO date (YYYY-MM-DD) is meant here.
        if not isinstance(value, str) or not _ISO_DATE.match(value):
            raise ValueError("must be an ISO date, YYYY-MM-DD")
        return value

    @field_validator("period_start", "period_end")
    @classmethod
    def _in_range(cls, value: date) -> date:
        if not EARLIEST <= value <= LATEST:
            raise ValueError(f"must be from {EARLIEST} to {LATEST}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> ExportRequest:
        if self.period_start > self.period_end:
            raise ValueError("periodStart must not be after periodEnd")
        return self


class ExportAccepted(CamelModel):
    id: UUID
    status: ExportStatus
    workflow_id: str


class ExportView(CamelModel):
    id: UUID
    status: ExportStatus
    store_id: UUID | None
    period_start: date
    period_end: date
    format: ExportFormat
    files: list[ExportedFile]
    error: str | None
    requested_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    workflow_id: str | None


class ProcessQuery(CamelRequest):
    force: bool = False  # upload a completed export again


class ProcessAccepted(StartedRun):
    export_id: UUID


class ExportTriggerAccepted(CamelModel):
    started: int  # new runs; the others were running already
    exports: list[ProcessAccepted]


async def start_export(
    client: Client,
    task_queue: str,
    export_id: UUID,
    store_id: UUID | None,
    *,
    force: bool = False,
    summary: str | None = None,
) -> ProcessAccepted:
    """Start the export's workflow; if it is running, return that run instead (never a second one).

    A closed run (completed, failed, cancelled, terminated, timed out) does not block a new one:
    that is how an export left `processing` by a terminated run is recovered.
    """
    attributes = [
        SearchAttributePair(JOB_ATTRIBUTE, FINANCIAL_EXPORT.key),
        SearchAttributePair(EXPORT_ATTRIBUTE, str(export_id)),
    ]
    if store_id is not None:
        attributes.append(SearchAttributePair(STORE_ATTRIBUTE, str(store_id)))
    run = await start_or_join(
        client,
        FINANCIAL_EXPORT.workflow_type,
        FinancialExportInput(export_id=export_id, force=force),
        workflow_id=export_workflow_id(export_id),
        task_queue=task_queue,
        attributes=attributes,
        summary=summary,
    )
    return ProcessAccepted(export_id=export_id, **run.model_dump())


# Workflow starts in flight at once from the trigger route: bounds the load on Temporal.
TRIGGER_CONCURRENCY = 16


@documented(
    "Request a financial export of a period (inclusive local days of each store) and start it",
    request=ExportRequest,
    response=ExportAccepted,
    status=202,
    errors=(400, 422, 503),
    tags=("financial-exports",),
)
async def create_export(request: web.Request) -> web.Response:
    body = await read_model(request, ExportRequest)
    async with database_call(), request.app[POOL].acquire() as connection:
        created = await exports_repository.insert_request(
            connection,
            store_id=body.store_id,
            period_start=body.period_start,
            period_end=body.period_end,
            export_format=body.format,
            workflow_id_prefix=EXPORT_WORKFLOW_ID_PREFIX,
        )
        summaries = await export_summaries(connection, [created[0]]) if created else {}
    if created is None:
        raise ApiError(422, "validation_error", f"invalid request: storeId: no store with id {body.store_id}")
    export_id, status, workflow_id = created
    try:
        async with temporal_call():
            await start_export(
                request.app[TEMPORAL],
                request.app[SETTINGS].task_queue,
                export_id,
                body.store_id,
                summary=summaries.get(export_id),
            )
    except ApiError as error:
        # The request is recorded: say so, so the client processes it later instead of asking again.
        raise ApiError(
            error.status,
            error.code,
            f"{error.message}; export {export_id} is recorded as pending and runs on the next "
            "financial-export trigger or process request",
        ) from None
    return json_model(ExportAccepted(id=export_id, status=status, workflow_id=workflow_id), status=202)


@documented(
    "A financial export: status, period, files (rows, bytes, sha256, remote path) or error",
    response=ExportView,
    errors=(400, 404, 503),
    path_formats={"id": "uuid"},
    tags=("financial-exports",),
)
async def get_export(request: web.Request) -> web.Response:
    export_id = path_uuid(request, "id")
    async with database_call(), request.app[POOL].acquire() as connection:
        row = await exports_repository.fetch_export(connection, export_id)
    if row is None:
        raise ApiError(404, "not_found", f"no financial export with id {export_id}")
    return json_model(ExportView.model_validate(row, from_attributes=True))


@documented(
    "Process one export now (a failed one again, one left processing by a run that is gone; a "
    "completed one only with force=true); a run already going is returned instead",
    response=ProcessAccepted,
    status=202,
    query=ProcessQuery,
    errors=(400, 404, 422, 503),
    path_formats={"exportId": "uuid"},
    tags=("workers",),
)
async def process_export(request: web.Request) -> web.Response:
    export_id = path_uuid(request, "exportId")
    query = read_query(request, ProcessQuery)
    async with database_call(), request.app[POOL].acquire() as connection:
        row = await exports_repository.fetch_export(connection, export_id)
        summaries = await export_summaries(connection, [export_id])
    if row is None:
        raise ApiError(404, "not_found", f"no financial export with id {export_id}")
    async with temporal_call():
        accepted = await start_export(
            request.app[TEMPORAL],
            request.app[SETTINGS].task_queue,
            export_id,
            row.store_id,
            force=query.force,
            summary=summaries.get(export_id),
        )
    return json_model(accepted, status=202)


@documented(
    "Start every pending export, and every export left processing by a run that is gone "
    "(oldest first, up to PETCARE_EXPORT__TRIGGER_LIMIT per call); running ones are returned as such",
    response=ExportTriggerAccepted,
    status=202,
    errors=(503,),
    tags=("workers",),
)
async def trigger_exports(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    async with database_call(), request.app[POOL].acquire() as connection:
        startable = await exports_repository.startable_exports(connection, settings.export.trigger_limit)
        summaries = await export_summaries(connection, [export_id for export_id, _ in startable])
    slots = asyncio.Semaphore(TRIGGER_CONCURRENCY)

    async def start(export_id: UUID, store_id: UUID | None) -> ProcessAccepted:
        async with slots, temporal_call():
            return await start_export(
                request.app[TEMPORAL],
                settings.task_queue,
                export_id,
                store_id,
                summary=summaries.get(export_id),
            )

    accepted = await asyncio.gather(*(start(export_id, store_id) for export_id, store_id in startable))
    started = sum(not item.already_running for item in accepted)
    return json_model(ExportTriggerAccepted(started=started, exports=list(accepted)), status=202)
