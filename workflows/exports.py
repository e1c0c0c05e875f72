"""Financial export: claim the export, write its three files and the manifest, record the outcome."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.exports import ExportActivities
    from petcare.jobs import FINANCIAL_EXPORT
    from petcare.models.exports import (
        DATA_KINDS,
        BeginRequest,
        CompleteRequest,
        ExportedFile,
        ExportPlan,
        FailRequest,
        FileKind,
        FileRequest,
        FinancialExportInput,
        FinancialExportResult,
        ManifestRequest,
    )

# Faults that no retry can fix; the activities also raise them as non-retryable.
PERMANENT_FAULTS = [
    "ExportNotFound",
    "ExportDataError",
    "SftpHostKeyRejected",
    "SftpAuthenticationFailed",
    "SftpConfigurationError",
    "SftpPermissionDenied",
]
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=6,
    non_retryable_error_types=PERMANENT_FAULTS,
)
# A lost connection or a database blip: each retry rewrites its file from the first byte.
UPLOAD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=5,
    non_retryable_error_types=PERMANENT_FAULTS,
)
UPLOAD_TIMEOUT = timedelta(hours=2)
UPLOAD_HEARTBEAT = timedelta(seconds=60)
STATUS_TIMEOUT = timedelta(seconds=30)


def failure_text(error: BaseException) -> str:
    """The innermost cause's message: what actually went wrong, not "activity task failed"."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error) or type(error).__name__


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
            files = list(await asyncio.gather(*(self._write(plan, kind) for kind in DATA_KINDS)))
            manifest = await workflow.execute_activity_method(
                ExportActivities.write_manifest,
                ManifestRequest(plan=plan, files=files, generated_at=workflow.now()),
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
        except ActivityError as error:
            message = failure_text(error)
            await workflow.execute_activity_method(
                ExportActivities.fail,
                FailRequest(export_id=plan.export_id, error=message),
                start_to_close_timeout=STATUS_TIMEOUT,
                retry_policy=DATABASE_RETRY,
            )
            raise ApplicationError(
                f"financial export {plan.export_id} failed: {message}",
                type="FinancialExportFailed",
                non_retryable=True,
            ) from error
        return FinancialExportResult(export_id=plan.export_id, status="completed", files=files)

    async def _write(self, plan: ExportPlan, kind: FileKind) -> ExportedFile:
        return await workflow.execute_activity_method(
            ExportActivities.write_file,
            FileRequest(plan=plan, kind=kind),
            start_to_close_timeout=UPLOAD_TIMEOUT,
            heartbeat_timeout=UPLOAD_HEARTBEAT,
            retry_policy=UPLOAD_RETRY,
        )
