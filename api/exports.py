"""Financial export routes: request an export, read it, process one, trigger every startable one."""

from __future__ import annotations

import asyncio
from uuid import UUID

from aiohttp import web

from api.bodies import json_model, path_uuid, read_model, read_query
from api.database_calls import database_call
from api.errors import ApiError
from api.export_models import (
    ExportAccepted,
    ExportRequest,
    ExportView,
    ProcessAccepted,
    ProcessQuery,
    TriggerAccepted,
)
from api.export_starts import start_export
from api.keys import POOL, SETTINGS, TEMPORAL
from api.openapi import documented
from api.temporal_calls import temporal_call
from petcare import exports_repository
from petcare.models.exports import EXPORT_WORKFLOW_ID_PREFIX
from petcare.summaries import export_summaries

routes = web.RouteTableDef()

# Workflow starts in flight at once from the trigger route: bounds the load on Temporal.
TRIGGER_CONCURRENCY = 16


@routes.post("/api/v1/financial-exports")
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


@routes.get("/api/v1/financial-exports/{id}")
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


@routes.post("/api/v1/workers/financial-export/process/{exportId}")
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


@routes.post("/api/v1/workers/financial-export/trigger")
@documented(
    "Start every pending export, and every export left processing by a run that is gone "
    "(oldest first, up to PETCARE_EXPORT__TRIGGER_LIMIT per call); running ones are returned as such",
    response=TriggerAccepted,
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
    return json_model(TriggerAccepted(started=started, exports=list(accepted)), status=202)
