"""Financial exports over HTTP: request one (idempotently with a key), list and read them, process
one now, trigger every startable one."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any
from uuid import UUID

import asyncssh
from aiohttp import hdrs, web
from pydantic import Field, field_validator, model_validator
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.exports.destinations import StoredFile, StoredFileMissing
from api.backends import DESTINATION, POOL, SETTINGS, TEMPORAL, database_call, start_or_join, temporal_call
from api.middlewares import ApiError
from api.models import (
    CamelModel,
    CamelRequest,
    Keyset,
    PageQuery,
    StartedRun,
    cursor_scope,
    json_model,
    keyset_page,
    path_uuid,
    read_model,
    read_query,
)
from api.openapi import documented
from petcare import exports_repository
from petcare.db import Connection
from petcare.jobs import FINANCIAL_EXPORT
from petcare.models.exports import (
    ExportedFile,
    ExportFormat,
    ExportOrigin,
    ExportStatus,
    FinancialExportInput,
    export_run_attributes,
    export_workflow_id,
)
from petcare.summaries import export_summaries

log = logging.getLogger(__name__)

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
    origin: ExportOrigin
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
    run = await start_or_join(
        client,
        FINANCIAL_EXPORT.workflow_type,
        FinancialExportInput(export_id=export_id, force=force),
        workflow_id=export_workflow_id(export_id),
        task_queue=task_queue,
        attributes=export_run_attributes(export_id, store_id),
        summary=summary,
    )
    return ProcessAccepted(export_id=export_id, **run.model_dump())


# Workflow starts in flight at once from the trigger route: bounds the load on Temporal.
TRIGGER_CONCURRENCY = 16


# 1 to 200 visible ASCII characters (no spaces, no controls): what clients put in a UUID or a hash.
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "pattern": _IDEMPOTENCY_KEY.pattern,
    "description": "1 to 200 visible ASCII characters; a retry with the same key creates no second export",
}


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"{IDEMPOTENCY_HEADER} must be 1 to 200 visible ASCII characters (no spaces)",
        )
    return key


def _request_digest(body: ExportRequest) -> str:
    # Of the validated request: the same export asked with other spacing or key order is the same.
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@documented(
    "Request a financial export of a period (inclusive local days of each store) and start it. "
    "With an Idempotency-Key header, the same key and body again answer the first export (200), "
    "another body with that key is a 409; keys are kept at least 24 hours",
    request=ExportRequest,
    response=ExportAccepted,
    status=202,
    other_responses={200: ExportAccepted},
    errors=(400, 409, 422, 503),
    headers={IDEMPOTENCY_HEADER: IDEMPOTENCY_KEY_SCHEMA},
    tags=("financial-exports",),
)
async def create_export(request: web.Request) -> web.Response:
    key = _idempotency_key(request)
    body = await read_model(request, ExportRequest)
    digest = _request_digest(body)
    try:
        async with database_call(), request.app[POOL].acquire() as connection:
            export_id, status, workflow_id = await _record_request(connection, body, key, digest)
            summaries = await export_summaries(connection, [export_id])
    except _KeyUsed:
        assert key is not None
        return await _replayed_export(request, key, digest)
    await _start_recorded(request, export_id, body.store_id, summaries.get(export_id), key)
    return json_model(ExportAccepted(id=export_id, status=status, workflow_id=workflow_id), status=202)


async def _start_recorded(
    request: web.Request, export_id: UUID, store_id: UUID | None, summary: str | None, key: str | None
) -> None:
    """Start (or join) the run of an export already recorded; when Temporal cannot be reached the
    answer says the export is recorded, so the client processes it later instead of asking again."""
    try:
        async with temporal_call():
            await start_export(
                request.app[TEMPORAL], request.app[SETTINGS].task_queue, export_id, store_id, summary=summary
            )
    except ApiError as error:
        retry = "" if key is None else ", or when this request is sent again with the same key"
        raise ApiError(
            error.status,
            error.code,
            f"{error.message}; export {export_id} is recorded as pending and runs on the next "
            f"financial-export trigger or process request{retry}",
        ) from None


class _KeyUsed(Exception):
    """The idempotency key belongs to an earlier request (raised to roll this one's export back)."""


async def _record_request(
    connection: Connection, body: ExportRequest, key: str | None, digest: str
) -> tuple[UUID, ExportStatus, str]:
    """The new export, with its idempotency key in the same transaction; _KeyUsed if the key was
    taken (of two requests at once, the second waits on the key until the first commits)."""
    async with connection.transaction():
        created = await exports_repository.insert_request(
            connection,
            store_id=body.store_id,
            period_start=body.period_start,
            period_end=body.period_end,
            export_format=body.format,
            origin="api",
        )
        if created is None:
            raise ApiError(
                422, "validation_error", f"invalid request: storeId: no store with id {body.store_id}"
            )
        if (
            key is not None
            and await exports_repository.claim_idempotency_key(connection, key, digest, created[0]) is None
        ):
            raise _KeyUsed()
    return created


async def _replayed_export(request: web.Request, key: str, digest: str) -> web.Response:
    """The answer to a key used before: its export (200) if the body is the same, else a 409."""
    async with database_call(), request.app[POOL].acquire() as connection:
        found = await exports_repository.idempotency_key(connection, key)
        row = None if found is None else await exports_repository.fetch_export(connection, found[1])
        summaries = {} if row is None else await export_summaries(connection, [row.id])
    if found is None or row is None:
        # Purged between the two statements, long after its retention: the client must choose.
        raise ApiError(
            409, "idempotency_conflict", f"{IDEMPOTENCY_HEADER} {key!r} has expired: use a new key"
        )
    if found[0] != digest:
        raise ApiError(
            409,
            "idempotency_conflict",
            f"{IDEMPOTENCY_HEADER} {key!r} was used for export {row.id} with another request body; "
            "use a new key for a new request",
        )
    if row.status == "pending":
        # The first request may have recorded the export without starting it (Temporal was
        # unreachable then): its retry starts it, or joins the run already going.
        await _start_recorded(request, row.id, row.store_id, summaries.get(row.id), key)
    workflow_id = row.workflow_id or export_workflow_id(row.id)
    return json_model(ExportAccepted(id=row.id, status=row.status, workflow_id=workflow_id), status=200)


class ExportListQuery(PageQuery):
    status: ExportStatus | None = None
    store_id: UUID | None = None
    origin: ExportOrigin | None = None
    period_from: date | None = Field(default=None, description="periods starting on or after this day")
    period_to: date | None = Field(default=None, description="periods ending on or before this day")

    @field_validator("period_from", "period_to", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        return ExportRequest._iso_date(value)


class ExportList(CamelModel):
    exports: list[ExportView]
    next_cursor: str | None  # null on the last page


@documented(
    "Financial exports, newest first (by request time), filtered by status, store, origin and "
    "period; page on with nextCursor",
    response=ExportList,
    query=ExportListQuery,
    errors=(400, 422, 503),
    tags=("financial-exports",),
)
async def list_exports(request: web.Request) -> web.Response:
    query = read_query(request, ExportListQuery)
    scope = cursor_scope("financial-exports", query)
    after = Keyset.from_cursor(scope, query.cursor)
    filters = exports_repository.ExportFilters(
        status=query.status,
        store_id=query.store_id,
        origin=query.origin,
        period_from=query.period_from,
        period_to=query.period_to,
    )
    async with database_call(), request.app[POOL].acquire() as connection:
        rows = await exports_repository.list_exports(
            connection,
            filters,
            after=None if after is None else (after.time, after.id),
            limit=query.limit + 1,
        )
    page, next_cursor = keyset_page(rows, query.limit, scope, lambda row: Keyset(row.requested_at, row.id))
    return json_model(
        ExportList(
            exports=[ExportView.model_validate(row, from_attributes=True) for row in page],
            next_cursor=next_cursor,
        )
    )


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


# --- GET /api/v1/financial-exports/{id}/files/{name} ---

MEDIA_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
}


@documented(
    "Download one file of a completed export from its destination (SFTP or local), streamed; "
    "Content-Length, ETag and Digest come from the recorded size and sha256",
    file_types=tuple(MEDIA_TYPES.values()),
    errors=(400, 404, 409, 503),
    path_formats={"id": "uuid"},
    tags=("financial-exports",),
)
async def download_file(request: web.Request) -> web.StreamResponse:
    export_id = path_uuid(request, "id")
    name = request.match_info["name"]
    async with database_call(), request.app[POOL].acquire() as connection:
        row = await exports_repository.fetch_export(connection, export_id)
    if row is None:
        raise ApiError(404, "not_found", f"no financial export with id {export_id}")
    if row.status != "completed":
        raise ApiError(
            409,
            "export_not_completed",
            f"financial export {export_id} is {row.status}: its files come once it completes",
        )
    file = next((file for file in row.files if file.name == name), None)
    if file is None:
        names = ", ".join(file.name for file in row.files)
        raise ApiError(
            404, "not_found", f"financial export {export_id} has no file {name!r} (its files: {names})"
        )
    etag = f'"{file.sha256}"'
    digest = base64.b64encode(bytes.fromhex(file.sha256)).decode()
    headers = {
        hdrs.ETAG: etag,
        # RFC 3230's Digest, and its successor RFC 9530's Repr-Digest: a client checks the bytes.
        "Digest": f"sha-256={digest}",
        "Repr-Digest": f"sha-256=:{digest}:",
        hdrs.CONTENT_TYPE: MEDIA_TYPES.get(PurePosixPath(file.name).suffix, "application/octet-stream"),
        hdrs.CONTENT_DISPOSITION: f'attachment; filename="{file.name}"',
    }
    # aiohttp parses the header: a list of tags, weak ones (If-None-Match compares weakly) and `*`.
    if any(tag.value in (file.sha256, "*") for tag in request.if_none_match or ()):
        return web.Response(status=304, headers={hdrs.ETAG: etag})
    try:
        async with (
            request.app[DESTINATION].session() as session,
            session.read(file.remote_path) as stored,
        ):
            if stored.size != file.bytes:
                raise ApiError(
                    409,
                    "file_changed",
                    f"{file.remote_path} holds {stored.size} bytes where the export recorded "
                    f"{file.bytes}: it was changed at the destination",
                )
            return await _stream(request, stored, headers, file.bytes)
    except StoredFileMissing as error:
        raise ApiError(404, "not_found", f"{name} of financial export {export_id} is gone: {error}") from None
    except (ApplicationError, OSError, asyncssh.Error) as error:
        raise ApiError(
            503, "destination_unavailable", f"cannot read the export destination: {error}"
        ) from None


async def _stream(
    request: web.Request, stored: StoredFile, headers: dict[str, str], size: int
) -> web.StreamResponse:
    """Block after block, each written (and drained to the client) before the next is read."""
    response = web.StreamResponse(headers=headers)
    response.content_length = size
    await response.prepare(request)
    try:
        async for block in stored.blocks:
            await response.write(block)
    except (ApplicationError, OSError, asyncssh.Error) as error:
        # The status is sent: all a client can be told is a connection closed short of
        # Content-Length.
        log.warning("download of %s stopped: %r", request.path, error)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response
