"""Changed copies of the reminder workflow, for the versioning tests: one change, three ways to ship it.

The change: a run previews what is due (the dry run's activity) before its first page. Each class
registers under the production name, `AppointmentReminderWorkflow`, as a new deployment would.
Its own module, like workflows/: the sandbox re-imports the module that defines a workflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reminders.activities import ReminderActivities
    from petcare.models.reminders import PreviewRequest, ReminderRunInput, ReminderRunResult
    from workflows.reminders import AppointmentReminderWorkflow

NAME = "AppointmentReminderWorkflow"
PREVIEW_PATCH = "reminders-preview-before-sending"


async def _preview(request: ReminderRunInput) -> None:
    await workflow.execute_activity_method(
        ReminderActivities.preview,
        PreviewRequest(as_of=request.as_of or workflow.now(), preview_limit=0),
        start_to_close_timeout=timedelta(seconds=15),
        retry_policy=RetryPolicy(maximum_attempts=2),
    )


@workflow.defn(name=NAME)
class PreviewFirst(AppointmentReminderWorkflow):
    """The change as plain code: breaks runs in flight (and is step 3, once no old run is left)."""

    @workflow.run
    async def run(self, request: ReminderRunInput) -> ReminderRunResult:
        await _preview(request)
        return await super().run(request)


@workflow.defn(name=NAME)
class PreviewFirstPatched(AppointmentReminderWorkflow):
    """Step 1: new runs take the new path and record a marker; replays of old runs do not."""

    @workflow.run
    async def run(self, request: ReminderRunInput) -> ReminderRunResult:
        if workflow.patched(PREVIEW_PATCH):
            await _preview(request)
        return await super().run(request)


@workflow.defn(name=NAME)
class PreviewFirstDeprecated(AppointmentReminderWorkflow):
    """Step 2, once every run started before step 1 has closed: the new path only."""

    @workflow.run
    async def run(self, request: ReminderRunInput) -> ReminderRunResult:
        workflow.deprecate_patch(PREVIEW_PATCH)
        await _preview(request)
        return await super().run(request)
