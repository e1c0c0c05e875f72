"""The export activities: claim the export, stream each file to the destination, upload the
manifest last, record the outcome.

The manifest is a JSON document listing each data file's rows, bytes and sha256. Its presence says
the export is complete; a consumer checks each file against it. A re-export removes it before
replacing the first data file (`_before_replace`), so it never stands beside files it does not
describe. Shape:
  {"exportId", "storeId" (null: all stores), "periodStart", "periodEnd" (inclusive local days),
   "format", "generatedAt", "timezoneRule": "store-local calendar days",
   "files": [{"name", "kind", "rows", "bytes", "sha256"}]}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

import asyncpg
from temporalio import activity

from activities.exports.destinations import (
    BeforeReplace,
    Destination,
    DestinationSession,
    Writer,
    destination_for,
)
from activities.exports.streaming import (
    CrlfRecords,
    StreamLimits,
    StreamStalled,
    copy_to_upload,
    stream_limits,
)
from activities.heartbeat import heartbeating, statement_timeout
from petcare import exports_repository
from petcare.config import Settings
from petcare.db import Connection
from petcare.errors import ErrorType, application_error
from petcare.exports_repository import StorePeriod
from petcare.models.exports import (
    MANIFEST_NAME,
    BeginRequest,
    CompleteRequest,
    ExportedFile,
    ExportPlan,
    FailRequest,
    FileRequest,
    ManifestRequest,
    export_directory,
    file_name,
)
from petcare.timezones import InvalidTimeZone, parse_zone

# At most this many bad stores are named in one message (the row keeps 2000 characters).
NAMED_BAD_STORES = 5
# How the manifest says rows fall in the period.
TIMEZONE_RULE = "store-local calendar days"


def _writer() -> Writer:
    # Unique to this run and attempt: see activities/exports/destinations.py.
    info = activity.info()
    return Writer(run_id=info.workflow_run_id or info.activity_id, attempt=info.attempt)


async def _check_store_zones(connection: Connection, store_id: UUID | None) -> None:
    """Fail the export, naming each store and zone, if a store's zone is not one the project accepts.

    PostgreSQL would take e.g. `UTC+3` (POSIX: three hours behind UTC) and silently shift that
    store's calendar days; its rows cannot be put in the right period, so nothing is written.
    """
    bad: list[str] = []
    for store in await exports_repository.store_zones(connection, store_id):
        try:
            parse_zone(store["timezone"])
        except InvalidTimeZone as error:
            bad.append(f"store {store['name']!r} ({store['id']}): {error}")
    if bad:
        more = len(bad) - NAMED_BAD_STORES
        named = "; ".join(bad[:NAMED_BAD_STORES]) + (f"; and {more} more stores" if more > 0 else "")
        raise application_error(
            f"cannot export: {named} (local calendar days unknown: fix stores.timezone, then process "
            "the export again)",
            ErrorType.EXPORT_DATA_ERROR,
        )


async def _store_period(connection: Connection, plan: ExportPlan) -> StorePeriod | None:
    """The store and the period's bounds of a single-store export; None for every store."""
    if plan.store_id is None:
        return None
    try:
        store = await exports_repository.store_period(
            connection, plan.store_id, plan.period_start, plan.period_end
        )
    except asyncpg.DataError as error:
        # As in the COPY: a zone the project knows that this PostgreSQL's own zone database lacks.
        raise application_error(
            f"cannot export store {plan.store_id}: {error}", ErrorType.EXPORT_DATA_ERROR
        ) from None
    if store is None:
        raise application_error(
            f"cannot export: store {plan.store_id} no longer exists", ErrorType.EXPORT_DATA_ERROR
        )
    return store


def _before_replace(
    connection: Connection, session: DestinationSession, plan: ExportPlan, name: str
) -> BeforeReplace:
    """What must happen before `name` replaces its final name (see exports_repository.FORGET_FILES).

    A data file first retracts the manifest, from the row and then from the destination: a re-run
    that fails half-way leaves no manifest beside files it does not describe, and the new manifest
    only appears, last, once every file is new.
    """

    async def retract() -> None:
        names = [name] if name == MANIFEST_NAME else [MANIFEST_NAME, name]
        if not await exports_repository.forget_files(connection, plan.export_id, names):
            # A late attempt (its run already ended, or another attempt did the work): replacing
            # a file now would leave a completed export without its manifest.
            raise application_error(
                f"financial export {plan.export_id} is no longer processing; not replacing {name}",
                ErrorType.EXPORT_NOT_PROCESSING,
            )
        if name != MANIFEST_NAME:
            await session.remove(plan.directory, MANIFEST_NAME)

    return retract


def manifest_bytes(request: ManifestRequest) -> bytes:
    """The manifest document, as the module docstring shows it."""
    plan = request.plan
    document = {
        "exportId": str(plan.export_id),
        "storeId": None if plan.store_id is None else str(plan.store_id),
        "periodStart": plan.period_start.isoformat(),
        "periodEnd": plan.period_end.isoformat(),
        "format": plan.format,
        "generatedAt": request.generated_at.isoformat(),
        "timezoneRule": TIMEZONE_RULE,
        "files": [
            {
                "name": file.name,
                "kind": file.kind,
                "rows": file.rows,
                "bytes": file.bytes,
                "sha256": file.sha256,
            }
            for file in request.files
        ],
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def _plan(row: exports_repository.ExportRow, *, skip: bool) -> ExportPlan:
    return ExportPlan(
        export_id=row.id,
        store_id=row.store_id,
        period_start=row.period_start,
        period_end=row.period_end,
        format=row.format,
        directory=export_directory(row.period_start, row.period_end, row.id),
        skip=skip,
        files=row.files if skip else [],
    )


class ExportActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        destination: Destination,
        limits: StreamLimits,
        *,
        upload_pool: asyncpg.Pool | None = None,
    ) -> None:
        """Built by `from_settings` in the worker; tests pass their own destination.

        `pool` serves the short status updates, `upload_pool` (default: `pool`) the COPYs, which
        hold a connection for as long as the destination takes to receive the file.
        """
        self._pool = pool
        self._upload_pool = upload_pool or pool
        self._destination = destination
        self._limits = limits

    @classmethod
    def from_settings(
        cls, pool: asyncpg.Pool, upload_pool: asyncpg.Pool, settings: Settings
    ) -> ExportActivities:
        return cls(pool, destination_for(settings), stream_limits(settings), upload_pool=upload_pool)

    def status_methods(self) -> list[Callable[..., Any]]:
        """Short database updates: registered on the jobs' task queue."""
        return [self.begin, self.complete, self.fail]

    def upload_methods(self) -> list[Callable[..., Any]]:
        """The uploads: registered on `upload_task_queue`, where the workflow schedules them."""
        return [self.write_file, self.write_manifest]

    @activity.defn(name="financial_export.begin")
    async def begin(self, request: BeginRequest) -> ExportPlan:
        """Mark the export processing and return what to write, or `skip` if it is already completed."""
        async with self._pool.acquire() as connection:
            claimed = await exports_repository.claim(
                connection, request.export_id, workflow_id=request.workflow_id, force=request.force
            )
            row = await exports_repository.fetch_export(connection, request.export_id)
        if row is None:
            raise application_error(
                f"financial export {request.export_id} does not exist", ErrorType.EXPORT_NOT_FOUND
            )
        return _plan(row, skip=not claimed)

    @activity.defn(name="financial_export.write_file")
    async def write_file(self, request: FileRequest) -> ExportedFile:
        """Query one file with COPY and upload it in the same pass (temporary name, then rename).

        Heartbeats carry the bytes sent; Temporal's cancellation arrives with a heartbeat, and
        the upload then removes its temporary file before the activity ends as cancelled.
        """
        plan = request.plan
        name = file_name(request.kind, plan.format)
        progress = [0]

        def sent(total: int) -> None:
            progress[0] = total

        # The COPY may run as long as the setting allows, but never past the attempt's budget.
        limits = dataclasses.replace(
            self._limits, timeout_seconds=statement_timeout(self._limits.timeout_seconds)
        )
        beats = heartbeating(lambda: progress[0], every=self._limits.heartbeat_seconds)
        # The database connection first: an SFTP session opened while waiting for one would sit
        # idle on the partner's server.
        async with beats, self._upload_pool.acquire() as connection, self._destination.session() as session:
            await _check_store_zones(connection, plan.store_id)
            query, args = exports_repository.export_query(
                request.kind,
                plan.format,
                period_start=plan.period_start,
                period_end=plan.period_end,
                store=await _store_period(connection, plan),
            )
            replacing = _before_replace(connection, session, plan, name)
            try:
                async with session.upload(plan.directory, name, _writer(), replacing) as upload:
                    streamed = await copy_to_upload(
                        connection,
                        query,
                        args,
                        exports_repository.COPY_OPTIONS[plan.format],
                        upload,
                        limits=limits,
                        convert=CrlfRecords() if plan.format == "csv" else None,
                        progress=sent,
                    )
            except asyncpg.DataError as error:
                # Bad data stays bad on a retry (e.g. a zone the project knows that this
                # PostgreSQL's own zone database lacks).
                raise application_error(
                    f"cannot export {request.kind}: {error}", ErrorType.EXPORT_DATA_ERROR
                ) from None
            except StreamStalled as error:
                # Retryable: a fresh connection on both sides usually moves again.
                raise application_error(f"{name}: {error}", ErrorType.EXPORT_STALLED) from None
            exported = ExportedFile(
                name=name,
                kind=request.kind,
                rows=streamed.rows,
                bytes=streamed.bytes,
                sha256=streamed.sha256,
                remote_path=session.final_path(plan.directory, name),
            )
            await exports_repository.record_file(connection, plan.export_id, exported)
        activity.logger.info(
            "exported %s: %d rows, %d bytes", exported.remote_path, exported.rows, exported.bytes
        )
        return exported

    @activity.defn(name="financial_export.write_manifest")
    async def write_manifest(self, request: ManifestRequest) -> ExportedFile:
        """Upload the manifest last: its presence tells consumers the data files are complete."""
        plan = request.plan
        data = manifest_bytes(request)
        name = file_name("manifest", plan.format)
        # On the uploads' queue and pool, the connection first, like write_file.
        async with self._upload_pool.acquire() as connection, self._destination.session() as session:
            replacing = _before_replace(connection, session, plan, name)
            async with session.upload(plan.directory, name, _writer(), replacing) as upload:
                await upload.write(data)
            manifest = ExportedFile(
                name=name,
                kind="manifest",
                rows=0,  # it lists files, it has no data rows
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                remote_path=session.final_path(plan.directory, name),
            )
            await exports_repository.record_file(connection, plan.export_id, manifest)
        return manifest

    @activity.defn(name="financial_export.complete")
    async def complete(self, request: CompleteRequest) -> None:
        async with self._pool.acquire() as connection:
            await exports_repository.complete(connection, request.export_id, request.files)

    @activity.defn(name="financial_export.fail")
    async def fail(self, request: FailRequest) -> None:
        async with self._pool.acquire() as connection:
            await exports_repository.fail(connection, request.export_id, request.error)
