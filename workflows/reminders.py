"""Appointment reminders: page through due appointments and send each page, history kept bounded."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reminders.activities import ReminderActivities
    from petcare.errors import ErrorType, application_error
    from petcare.models.reminders import (
        DRY_RUN_WORKFLOW_TYPE,
        PREVIEW_ATTEMPTS,
        PREVIEW_RETRY_INTERVAL,
        PREVIEW_TIMEOUT,
        SEND_PAGE_TIMEOUT,
        FetchDuePage,
        PreviewRequest,
        ReminderCounts,
        ReminderDryRunInput,
        ReminderPreview,
        ReminderRunInput,
        ReminderRunResult,
        SendPage,
    )

QUERY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# Provider outages are waited out with backoff; the schedule skips its ticks meanwhile, and the
# run gives up (and fails visibly) only after SEND_GIVE_UP.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
)
SEND_GIVE_UP = timedelta(hours=6)


@workflow.defn(name="AppointmentReminderWorkflow")
class AppointmentReminderWorkflow:
    @workflow.run
    async def run(self, request: ReminderRunInput) -> ReminderRunResult:
        # One instant for the whole run, across continue-as-new, so the window does not drift.
        as_of = request.as_of or workflow.now()
        if request.retry is not None:
            # Only a retry from the API starts with this field (no recorded run has it): no patch.
            return await self._retry(request.retry, request, as_of)
        cursor, counts, pages = request.cursor, request.counts, request.pages
        # A channel whose provider refuses our settings: the other channel's reminders still go out
        # on every page, then the run fails with this list.
        problems = list(request.problems)
        for _ in range(request.pages_per_run):
            page = await workflow.execute_activity_method(
                ReminderActivities.fetch_due_page,
                FetchDuePage(as_of=as_of, after=cursor),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=QUERY_RETRY,
            )
            if page.late_deferrals:
                counts = counts.plus(ReminderCounts(failed=page.late_deferrals))
            if page.appointment_ids:
                sent = await workflow.execute_activity_method(
                    ReminderActivities.send_page,
                    SendPage(appointment_ids=page.appointment_ids),
                    start_to_close_timeout=SEND_PAGE_TIMEOUT,
                    schedule_to_close_timeout=SEND_GIVE_UP,
                    heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_seconds),
                    retry_policy=SEND_RETRY,
                )
                counts = counts.plus(sent).plus(ReminderCounts(due=len(page.appointment_ids)))
                problems += [problem for problem in sent.problems if problem not in problems]
                pages += 1
                workflow.set_current_details(_details(pages, counts))
            cursor = page.next_cursor
            if cursor is None:
                if problems:
                    raise application_error(
                        f"reminder settings refused: {'; '.join(problems)}. {counts.released} reminders "
                        f"were released for the next run; {_details(pages, counts)}",
                        ErrorType.REMINDER_CONFIGURATION_ERROR,
                    )
                return ReminderRunResult(as_of=as_of, pages=pages, runs=request.runs + 1, counts=counts)
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.continue_as_new(
            request.model_copy(
                update={
                    "as_of": as_of,
                    "cursor": cursor,
                    "counts": counts,
                    "pages": pages,
                    "runs": request.runs + 1,
                    "problems": problems,
                }
            )
        )

    async def _retry(
        self, appointment_ids: list[UUID], request: ReminderRunInput, as_of: datetime
    ) -> ReminderRunResult:
        """The named appointments as one page, their failed reminders claimed again."""
        sent = await workflow.execute_activity_method(
            ReminderActivities.send_page,
            SendPage(appointment_ids=appointment_ids, retry_failed=True),
            start_to_close_timeout=SEND_PAGE_TIMEOUT,
            schedule_to_close_timeout=SEND_GIVE_UP,
            heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_seconds),
            retry_policy=SEND_RETRY,
        )
        # The same sum as a page of a run: a PageResult adds up as its counts.
        counts = ReminderCounts(due=len(appointment_ids)).plus(sent)
        if sent.problems:
            problems = "; ".join(sent.problems)
            raise application_error(
                f"reminder settings refused: {problems}", ErrorType.REMINDER_CONFIGURATION_ERROR
            )
        return ReminderRunResult(as_of=as_of, pages=1, runs=1, counts=counts)


def _details(pages: int, counts: ReminderCounts) -> str:
    return (
        f"{pages} pages: {counts.due} due, {counts.sent_email} emailed, {counts.sent_sms} texted, "
        f"{counts.failed} failed, {counts.deferred} deferred, "
        f"{counts.skipped_no_consent + counts.skipped_no_address} skipped"
    )


@workflow.defn(name=DRY_RUN_WORKFLOW_TYPE)
class AppointmentReminderDryRunWorkflow:
    """What a run would send now, without sending or marking anything."""

    @workflow.run
    async def run(self, request: ReminderDryRunInput) -> ReminderPreview:
        return await workflow.execute_activity_method(
            ReminderActivities.preview,
            PreviewRequest(as_of=request.as_of or workflow.now(), preview_limit=request.preview_limit),
            # The API waits DRY_RUN_TIMEOUT for the run, which covers both attempts.
            start_to_close_timeout=PREVIEW_TIMEOUT,
            retry_policy=RetryPolicy(
                initial_interval=PREVIEW_RETRY_INTERVAL, maximum_attempts=PREVIEW_ATTEMPTS
            ),
        )
