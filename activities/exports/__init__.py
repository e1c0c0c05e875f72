"""Financial export activities: claim the export, stream each file to the destination, record the outcome."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.exports import repository
from activities.exports.destinations import Destination, LocalDestination
from activities.exports.manifest import manifest_bytes
from activities.exports.queries import COPY_OPTIONS, export_query
from activities.exports.sftp import SftpDestination
from activities.exports.streaming import StreamLimits, copy_to_upload
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

HEARTBEAT_EVERY = 5.0  # seconds; call sites use a heartbeat timeout well above this


@asynccontextmanager
async def _heartbeating(progress: list[int]) -> AsyncIterator[None]:
    """Heartbeat the bytes sent so far every few seconds, also while PostgreSQL sorts before row one."""

    async def beat() -> None:
        while True:
            activity.heartbeat(progress[0])
            await asyncio.sleep(HEARTBEAT_EVERY)

    ticker = asyncio.create_task(beat())
    try:
        yield
    finally:
        ticker.cancel()


def destination_for(settings: Settings) -> Destination:
    if settings.export.destination == "local":
        return LocalDestination(settings.export.local_dir)
    return SftpDestination(settings.sftp)


def stream_limits(settings: Settings) -> StreamLimits:
    export = settings.export
    return StreamLimits(
        block_bytes=export.block_bytes,
        queue_blocks=export.queue_blocks,
        timeout_seconds=export.copy_timeout_seconds,
    )


class ExportActivities:
    def __init__(self, pool: asyncpg.Pool, destination: Destination, limits: StreamLimits) -> None:
        """Built by `from_settings` in the worker; tests pass their own destination."""
        self._pool = pool
        self._destination = destination
        self._limits = limits

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: Settings) -> ExportActivities:
        return cls(pool, destination_for(settings), stream_limits(settings))

    def methods(self) -> list[Callable[..., Any]]:
        return [self.begin, self.write_file, self.write_manifest, self.complete, self.fail]

    @activity.defn(name="financial_export.begin")
    async def begin(self, request: BeginRequest) -> ExportPlan:
        """Mark the export processing and return what to write, or `skip` if it is already completed."""
        async with self._pool.acquire() as connection:
            row = await repository.claim(
                connection, request.export_id, workflow_id=request.workflow_id, force=request.force
            )
            existing = (
                None if row is not None else await repository.fetch_export(connection, request.export_id)
            )
        if row is not None:
            return ExportPlan(
                export_id=row["id"],
                store_id=row["store_id"],
                period_start=row["period_start"],
                period_end=row["period_end"],
                format=row["format"],
                directory=export_directory(row["period_start"], row["period_end"], row["id"]),
            )
        if existing is None:
            raise ApplicationError(
                f"financial export {request.export_id} does not exist",
                type="ExportNotFound",
                non_retryable=True,
            )
        return ExportPlan(
            export_id=existing.id,
            store_id=existing.store_id,
            period_start=existing.period_start,
            period_end=existing.period_end,
            format=existing.format,
            directory=export_directory(existing.period_start, existing.period_end, existing.id),
            skip=True,
            files=existing.files,
        )

    @activity.defn(name="financial_export.write_file")
    async def write_file(self, request: FileRequest) -> ExportedFile:
        """Query one file with COPY and upload it in the same pass (temporary name, then rename)."""
        plan = request.plan
        name = file_name(request.kind, plan.format)
        args = (plan.period_start, plan.period_end, plan.store_id, plan.format == "csv")
        progress = [0]

        def sent(total: int) -> None:
            progress[0] = total

        async with _heartbeating(progress), self._destination.session() as session:
            async with self._pool.acquire() as connection:
                try:
                    async with session.upload(plan.directory, name, activity.info().attempt) as upload:
                        streamed = await copy_to_upload(
                            connection,
                            export_query(request.kind, plan.format),
                            args,
                            COPY_OPTIONS[plan.format],
                            upload,
                            limits=self._limits,
                            progress=sent,
                        )
                except asyncpg.DataError as error:
                    # Bad data (e.g. a store's unknown time zone) stays bad on a retry.
                    raise ApplicationError(
                        f"cannot export {request.kind}: {error}", type="ExportDataError", non_retryable=True
                    ) from None
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
            async with session.upload(plan.directory, name, activity.info().attempt) as upload:
                await upload.write(data)
            path = session.final_path(plan.directory, name)
        digest = hashlib.sha256(data).hexdigest()
        return ExportedFile(
            name=name,
            kind="manifest",
            rows=len(request.files),
            bytes=len(data),
            sha256=digest,
            remote_path=path,
        )

    @activity.defn(name="financial_export.complete")
    async def complete(self, request: CompleteRequest) -> None:
        async with self._pool.acquire() as connection:
            await repository.complete(connection, request.export_id, request.files)

    @activity.defn(name="financial_export.fail")
    async def fail(self, request: FailRequest) -> None:
        async with self._pool.acquire() as connection:
            await repository.fail(connection, request.export_id, request.error)
