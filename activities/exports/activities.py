"""The export activities: claim the export, stream each file to the destination, record the outcome."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.exports.configured import destination_for, stream_limits
from activities.exports.crlf import CrlfRecords
from activities.exports.destinations import Destination, Writer
from activities.exports.manifest import manifest_bytes
from activities.exports.queries import COPY_OPTIONS, export_query
from activities.exports.streaming import StreamLimits, StreamStalled, copy_to_upload
from activities.heartbeat import heartbeating, statement_timeout
from petcare import exports_repository
from petcare.config import Settings
from petcare.models.exports import (
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


def _writer() -> Writer:
    # Unique to this run and attempt: see activities/exports/destinations.py.
    info = activity.info()
    return Writer(run_id=info.workflow_run_id or info.activity_id, attempt=info.attempt)


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
            raise ApplicationError(
                f"financial export {request.export_id} does not exist",
                type="ExportNotFound",
                non_retryable=True,
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
        args = (plan.period_start, plan.period_end, plan.store_id, plan.format == "csv")
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
            try:
                async with session.upload(plan.directory, name, _writer()) as upload:
                    streamed = await copy_to_upload(
                        connection,
                        export_query(request.kind, plan.format),
                        args,
                        COPY_OPTIONS[plan.format],
                        upload,
                        limits=limits,
                        convert=CrlfRecords() if plan.format == "csv" else None,
                        progress=sent,
                    )
            except asyncpg.DataError as error:
                # Bad data (e.g. a store's unknown time zone) stays bad on a retry.
                raise ApplicationError(
                    f"cannot export {request.kind}: {error}", type="ExportDataError", non_retryable=True
                ) from None
            except StreamStalled as error:
                # Retryable: a fresh connection on both sides usually moves again.
                raise ApplicationError(f"{name}: {error}", type="ExportStalled") from None
            path = session.final_path(plan.directory, name)
        activity.logger.info("exported %s: %d rows, %d bytes", path, streamed.rows, streamed.bytes)
        return ExportedFile(
            name=name,
            kind=request.kind,
            rows=streamed.rows,
            bytes=streamed.bytes,
            sha256=streamed.sha256,
            remote_path=path,
        )

    @activity.defn(name="financial_export.write_manifest")
    async def write_manifest(self, request: ManifestRequest) -> ExportedFile:
        """Upload the manifest last: its presence tells consumers the data files are complete."""
        plan = request.plan
        data = manifest_bytes(request)
        name = file_name("manifest", plan.format)
        async with self._destination.session() as session:
            async with session.upload(plan.directory, name, _writer()) as upload:
                await upload.write(data)
            path = session.final_path(plan.directory, name)
        return ExportedFile(
            name=name,
            kind="manifest",
            rows=0,  # it lists files, it has no data rows
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            remote_path=path,
        )

    @activity.defn(name="financial_export.complete")
    async def complete(self, request: CompleteRequest) -> None:
        async with self._pool.acquire() as connection:
            await exports_repository.complete(connection, request.export_id, request.files)

    @activity.defn(name="financial_export.fail")
    async def fail(self, request: FailRequest) -> None:
        async with self._pool.acquire() as connection:
            await exports_repository.fail(connection, request.export_id, request.error)
