"""Financial export: claim the export, write its three files and the manifest, record the outcome,
send the completion notice; and the monthly close, which creates and starts every store's export
of the previous month."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType, ActivityHandle

with workflow.unsafe.imports_passed_through():
    from activities.exports import ExportActivities, ExportNoticeActivities, MonthlyExportActivities
    from petcare.errors import ErrorType, application_error, describe_failure, non_retryable, root_cause
    from petcare.jobs import FINANCIAL_EXPORT, MONTHLY_FINANCIAL_EXPORT
    from petcare.models.exports import (
        DATA_KINDS,
        BeginRequest,
        CompleteRequest,
        ExportedFile,
        ExportPlan,
        FailRequest,
        FileRequest,
        FinancialExportInput,
        FinancialExportResult,
        ManifestRequest,
        MonthlyExportInput,
        MonthlyExportResult,
        MonthlyExportsRequest,
        NoticeRequest,
        StartExportsRequest,
        upload_task_queue,
    )

# Faults that no retry can fix; the activities also raise them as non-retryable.
PERMANENT_FAULTS = non_retryable(
    ErrorType.EXPORT_NOT_FOUND,
    ErrorType.EXPORT_DATA_ERROR,
    ErrorType.SFTP_HOST_KEY_REJECTED,
    ErrorType.SFTP_AUTHENTICATION_FAILED,
    ErrorType.SFTP_CONFIGURATION_ERROR,
    ErrorType.SFTP_PERMISSION_DENIED,
)
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=6,
    non_retryable_error_types=PERMANENT_FAULTS,
)
# A lost connection, a database blip or a stall: each retry rewrites its file from the first byte.
UPLOAD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=5,
    non_retryable_error_types=PERMANENT_FAULTS,
)
# The uploads run on `upload_task_queue`: a worker there takes no more of them than it has
# database connections for them, so long uploads never hold what the short activities need.
UPLOAD_TIMEOUT = timedelta(hours=2)
# The uploads heartbeat every few seconds; the SDK forwards heartbeats (and so learns of a
# cancellation) at most every 0.8 x this, so it also bounds how long a cancellation takes.
UPLOAD_HEARTBEAT = timedelta(seconds=30)
STATUS_TIMEOUT = timedelta(seconds=30)
CANCELLED_MESSAGE = "the export's run was cancelled"
# Runs started before the notice existed replay without it (docs/versioning.md).
NOTICE_PATCH = "financial-export-completion-notice"
# The mail server gets half an hour; past it (or refused for good) the run still completes, the
# files are there, and the missing notice is in the log and the run's history.
NOTICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=non_retryable(
        ErrorType.MAIL_REJECTED, ErrorType.MAIL_MISCONFIGURED, ErrorType.EXPORT_NOT_FOUND
    ),
)
NOTICE_DEADLINE = timedelta(minutes=30)


@workflow.defn(name=FINANCIAL_EXPORT.workflow_type)
class FinancialExportWorkflow:
    @workflow.run
    async def run(self, request: FinancialExportInput) -> FinancialExportResult:
        plan = await workflow.execute_activity_method(
            ExportActivities.begin,
            BeginRequest(
                export_id=request.export_id, force=request.force, workflow_id=workflow.info().workflow_id
            ),
            start_to_close_timeout=STATUS_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        if plan.skip:
            return FinancialExportResult(
                export_id=plan.export_id, status="completed", skipped=True, files=plan.files
            )
        try:
            files = await self._write_files(plan)
            manifest = await workflow.execute_activity_method(
                ExportActivities.write_manifest,
                ManifestRequest(plan=plan, files=files, generated_at=workflow.now()),
                task_queue=upload_task_queue(workflow.info().task_queue),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=UPLOAD_RETRY,
            )
            files.append(manifest)
            await workflow.execute_activity_method(
                ExportActivities.complete,
                CompleteRequest(export_id=plan.export_id, files=files),
                start_to_close_timeout=STATUS_TIMEOUT,
                retry_policy=DATABASE_RETRY,
            )
            if workflow.patched(NOTICE_PATCH):
                await _notify(plan, files)
        except ActivityError as error:
            _, message = describe_failure(error)
            await self._record_failure(plan, message)
            raise application_error(
                f"financial export {plan.export_id} failed: {message}", ErrorType.FINANCIAL_EXPORT_FAILED
            ) from error
        except asyncio.CancelledError:
            # Temporal delivers a workflow's cancellation once, to the task it interrupts: an
            # activity started after catching it runs to its end (the SDK's way to clean up after
            # a cancellation). The run then ends as cancelled, its export failed, not `processing`.
            await self._record_failure(plan, CANCELLED_MESSAGE)
            raise
        return FinancialExportResult(export_id=plan.export_id, status="completed", files=files)

    async def _write_files(self, plan: ExportPlan) -> list[ExportedFile]:
        """The data files in parallel; if one fails (or the run is cancelled), the others are
        cancelled and awaited until they have stopped and removed their temporary files."""
        uploads: list[ActivityHandle[ExportedFile]] = [
            workflow.start_activity_method(
                ExportActivities.write_file,
                FileRequest(plan=plan, kind=kind),
                task_queue=upload_task_queue(workflow.info().task_queue),
                start_to_close_timeout=UPLOAD_TIMEOUT,
                heartbeat_timeout=UPLOAD_HEARTBEAT,
                retry_policy=UPLOAD_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            for kind in DATA_KINDS
        ]
        try:
            done, _ = await workflow.wait(uploads, return_when=asyncio.FIRST_EXCEPTION)
            failures = [error for upload in done if (error := upload.exception()) is not None]
            if failures:
                raise failures[0]
            return [upload.result() for upload in uploads]
        except (Exception, asyncio.CancelledError):
            # Not BaseException: when the worker evicts the run from its cache it closes this
            # coroutine (GeneratorExit), which must then await nothing ("coroutine ignored
            # GeneratorExit", once seen in CI as an unraisable error).
            await _stop(uploads)
            raise

    async def _record_failure(self, plan: ExportPlan, message: str) -> None:
        await workflow.execute_activity_method(
            ExportActivities.fail,
            FailRequest(export_id=plan.export_id, error=message),
            start_to_close_timeout=STATUS_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )


async def _notify(plan: ExportPlan, files: list[ExportedFile]) -> None:
    """One notice per completed run (the activity keeps a record per run id). Its failure is not
    the export's: the files are in place and recorded."""
    try:
        await workflow.execute_activity_method(
            ExportNoticeActivities.notify_completed,
            NoticeRequest(export_id=plan.export_id, run_id=workflow.info().run_id, files=files),
            start_to_close_timeout=STATUS_TIMEOUT,
            schedule_to_close_timeout=NOTICE_DEADLINE,
            retry_policy=NOTICE_RETRY,
        )
    except ActivityError as error:
        workflow.logger.warning(
            "export %s completed; its notice was not sent: %s", plan.export_id, root_cause(error)
        )


async def _stop(uploads: list[ActivityHandle[ExportedFile]]) -> None:
    """Cancel the uploads still going and wait until each has ended, whatever its outcome."""
    going = [upload for upload in uploads if not upload.done()]
    for upload in going:
        upload.cancel()
    for upload in going:
        with contextlib.suppress(ActivityError, asyncio.CancelledError):
            await upload


# --- The monthly close ---

# Stores per page: one activity creates their exports, one starts their runs.
STORES_PER_PAGE = 200
# Set by Temporal on a scheduled run: the time it was scheduled for, however late it starts
# (a catch-up after downtime still closes the month it was meant to close).
SCHEDULED_START_TIME = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
START_RUNS_TIMEOUT = timedelta(minutes=5)
START_RUNS_HEARTBEAT = timedelta(seconds=30)


@workflow.defn(name=MONTHLY_FINANCIAL_EXPORT.workflow_type)
class MonthlyFinancialExportWorkflow:
    """Every store's export of its previous local calendar month, created once and started once.

    The exports run as their own `financial-export-<id>` workflows (each alerts on failure and
    sends its notice); this run does not wait for them. Past a page of stores it goes on with the
    next, and continues as new when its history grows long.
    """

    @workflow.run
    async def run(self, request: MonthlyExportInput) -> MonthlyExportResult:
        as_of = request.as_of or _scheduled_time() or workflow.now()
        totals = request.totals or MonthlyExportResult(as_of=as_of)
        after = request.after_store_id
        while True:
            page = await workflow.execute_activity_method(
                MonthlyExportActivities.create_monthly,
                MonthlyExportsRequest(
                    as_of=as_of, format=request.format, after_store_id=after, limit=STORES_PER_PAGE
                ),
                start_to_close_timeout=STATUS_TIMEOUT,
                retry_policy=DATABASE_RETRY,
            )
            starts = await workflow.execute_activity_method(
                MonthlyExportActivities.start_runs,
                StartExportsRequest(exports=page.exports),
                start_to_close_timeout=START_RUNS_TIMEOUT,
                heartbeat_timeout=START_RUNS_HEARTBEAT,
                retry_policy=DATABASE_RETRY,
            )
            totals = totals.add(page, starts)
            after = page.next_after_store_id
            if after is None:
                return totals
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(
                    MonthlyExportInput(
                        format=request.format, as_of=as_of, after_store_id=after, totals=totals
                    )
                )


def _scheduled_time() -> datetime | None:
    return workflow.info().typed_search_attributes.get(SCHEDULED_START_TIME)
