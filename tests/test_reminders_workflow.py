"""The reminder workflow: paging and continue-as-new (time-skipping server), real activities (dev server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from devstack.rows import add_appointment, add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import Settings
from petcare.models.reminders import (
    DRY_RUN_TIMEOUT,
    DuePage,
    FetchDuePage,
    PageCursor,
    PlannedCounts,
    PreviewRequest,
    ReminderCounts,
    ReminderDryRunInput,
    ReminderPreview,
    ReminderRunInput,
    ReminderRunResult,
    SendPage,
)
from petcare.temporal_client import PetcarePlugin
from tests.support.reminder_data import reminder_activities, reminder_settings
from tests.support.workers import real_worker
from workflows.reminders import AppointmentReminderDryRunWorkflow, AppointmentReminderWorkflow

PAGE = 3
PAGES = 7


class StandInActivities:
    """Same activity names, synthetic pages: exercises the orchestration alone."""

    def __init__(self) -> None:
        self.ids = [uuid.UUID(int=n + 1) for n in range(PAGE * PAGES)]
        self.as_of_seen: set[datetime] = set()
        self.sent: list[UUID] = []

    @activity.defn(name="reminders.fetch_due_page")
    async def fetch_due_page(self, request: FetchDuePage) -> DuePage:
        self.as_of_seen.add(request.as_of)
        start = 0 if request.after is None else self.ids.index(request.after.appointment_id) + 1
        chunk = self.ids[start : start + PAGE]
        last = start + PAGE >= len(self.ids)
        cursor = None if last else PageCursor(starts_at=request.as_of, appointment_id=chunk[-1])
        return DuePage(appointment_ids=chunk, next_cursor=cursor)

    @activity.defn(name="reminders.send_page")
    async def send_page(self, request: SendPage) -> ReminderCounts:
        self.sent += request.appointment_ids
        return ReminderCounts(sent_email=len(request.appointment_ids) - 1, skipped_no_address=1)


async def run_with_stand_ins(
    client: Client, task_queue: str, stand_in: StandInActivities, *, pages_per_run: int
) -> tuple[WorkflowHandle[Any, ReminderRunResult], ReminderRunResult]:
    """One reminder run (and its continuations) on a worker whose activities are the stand-ins."""
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[AppointmentReminderWorkflow],
        activities=[stand_in.fetch_due_page, stand_in.send_page],
    ):
        handle = await client.start_workflow(
            AppointmentReminderWorkflow.run,
            ReminderRunInput(pages_per_run=pages_per_run),
            id=f"reminders-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        return handle, await handle.result()


async def test_pages_continue_as_new_and_counts_add_up(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    stand_in = StandInActivities()
    handle, result = await run_with_stand_ins(client, task_queue, stand_in, pages_per_run=2)
    last_run = await client.get_workflow_handle(handle.id).fetch_history()

    assert stand_in.sent == stand_in.ids  # every appointment once, in order
    assert len(stand_in.as_of_seen) == 1  # one window for the whole chain of runs
    assert (result.pages, result.runs) == (PAGES, 4)
    assert result.counts == ReminderCounts(due=21, sent_email=14, skipped_no_address=7)
    assert len(last_run.events) < 40  # each run's history holds at most two pages


async def test_started_from_an_empty_json_object(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """What `temporal workflow start --type AppointmentReminderWorkflow --input '{}'` sends."""
    client = time_skipping_env.client
    stand_in = StandInActivities()
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[AppointmentReminderWorkflow],
        activities=[stand_in.fetch_due_page, stand_in.send_page],
    ):
        result = await client.execute_workflow(
            "AppointmentReminderWorkflow",
            {},
            id=f"reminders-{uuid.uuid4()}",
            task_queue=task_queue,
            result_type=ReminderRunResult,
        )
    assert result.counts.due == PAGE * PAGES


async def run_reminders(client: Client, task_queue: str) -> ReminderRunResult:
    return await client.execute_workflow(
        AppointmentReminderWorkflow.run,
        ReminderRunInput(pages_per_run=2),
        id=f"reminders-{uuid.uuid4()}",
        task_queue=task_queue,
    )


# Real activities run on the dev server: the time-skipping server may skip past a busy activity's
# heartbeat timeout while it works, which is a retry no real deployment would see.
async def test_real_activities_send_once_and_a_second_run_sends_nothing(
    dev_client: Client,
    task_queue: str,
    pool: asyncpg.Pool,
    settings: Settings,
    smtp_sink: SmtpSink,
) -> None:
    store = await add_store(pool, timezone="America/New_York")
    starts = datetime.now(UTC) + timedelta(hours=5)
    for n in range(5):
        await add_appointment(pool, store_id=store, starts_at=starts, email=f"run{n}@example.com")
    adjusted = reminder_settings(settings, smtp_port=smtp_sink.port, batch_size=2)
    async with real_worker(dev_client, adjusted, pool, task_queue):
        first = await run_reminders(dev_client, task_queue)
        second = await run_reminders(dev_client, task_queue)

    assert (first.counts.due, first.counts.sent_email, first.pages, first.runs) == (5, 5, 3, 2)
    assert second.counts == ReminderCounts()
    assert sorted(m.recipients[0] for m in smtp_sink.received) == [f"run{n}@example.com" for n in range(5)]


async def test_consent_withdrawn_after_the_fetch_in_a_run(
    dev_client: Client,
    task_queue: str,
    pool: asyncpg.Pool,
    settings: Settings,
    smtp_sink: SmtpSink,
) -> None:
    store = await add_store(pool)
    starts = datetime.now(UTC) + timedelta(hours=2)
    keeps = await add_appointment(pool, store_id=store, starts_at=starts, email="keeps@example.com")
    withdraws = await add_appointment(pool, store_id=store, starts_at=starts, email="withdraws@example.com")

    async with reminder_activities(pool, settings, smtp_port=smtp_sink.port) as real:

        @activity.defn(name="reminders.fetch_due_page")
        async def fetch_then_withdraw(request: FetchDuePage) -> DuePage:
            page = await real.fetch_due_page(request)
            # The customer clicks "stop reminders" right after the run found them due.
            await pool.execute(
                "UPDATE customers SET consent_reminders = false"
                " WHERE id = (SELECT customer_id FROM appointments WHERE id = $1)",
                withdraws,
            )
            return page

        async with Worker(
            dev_client,
            task_queue=task_queue,
            workflows=[AppointmentReminderWorkflow],
            activities=[fetch_then_withdraw, real.send_page],
        ):
            result = await run_reminders(dev_client, task_queue)

    assert (result.counts.due, result.counts.sent_email, result.counts.skipped_no_consent) == (2, 1, 1)
    assert [m.recipients for m in smtp_sink.received] == [["keeps@example.com"]]
    assert await pool.fetchval("SELECT reminder_sent_at IS NOT NULL FROM appointments WHERE id = $1", keeps)


async def test_a_fresh_history_replays_after_a_json_round_trip(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    handle, _ = await run_with_stand_ins(
        time_skipping_env.client, task_queue, StandInActivities(), pages_per_run=50
    )
    history = await handle.fetch_history()
    replayer = Replayer(workflows=[AppointmentReminderWorkflow], plugins=[PetcarePlugin()])
    replayed = await replayer.replay_workflow(WorkflowHistory.from_json(handle.id, history.to_json()))
    assert replayed.replay_failure is None


async def test_the_dry_run_fits_its_attempts_inside_the_time_the_api_waits(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    calls: list[int] = []

    @activity.defn(name="reminders.preview")
    async def fails_then_answers(request: PreviewRequest) -> ReminderPreview:
        calls.append(activity.info().attempt)
        if len(calls) == 1:
            raise RuntimeError("first attempt fails: the retry must still answer in time")
        return ReminderPreview(as_of=request.as_of, counts=PlannedCounts(), messages=[])

    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[AppointmentReminderDryRunWorkflow],
        activities=[fails_then_answers],
    ):
        handle = await client.start_workflow(
            AppointmentReminderDryRunWorkflow.run,
            ReminderDryRunInput(),
            id=f"reminders-dry-{uuid.uuid4()}",
            task_queue=task_queue,
            execution_timeout=DRY_RUN_TIMEOUT,  # what the API gives it
        )
        await handle.result()
    assert calls == [1, 2]
    history = await handle.fetch_history()
    [scheduled] = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    attempts = scheduled.retry_policy.maximum_attempts
    start_to_close = scheduled.start_to_close_timeout.ToTimedelta()
    assert attempts >= 2
    # Every attempt timing out, plus the pause between them, still ends before the API gives up.
    worst = start_to_close * attempts + scheduled.retry_policy.initial_interval.ToTimedelta()
    assert worst < DRY_RUN_TIMEOUT


async def test_a_misconfigured_sms_provider_lets_every_email_of_the_run_go_then_fails_it(
    dev_client: Client,
    task_queue: str,
    pool: asyncpg.Pool,
    settings: Settings,
    smtp_sink: SmtpSink,
) -> None:
    store = await add_store(pool)
    starts = datetime.now(UTC) + timedelta(hours=4)
    texts = [
        await add_appointment(
            pool, store_id=store, starts_at=starts, phone=f"+1555010090{n}", preferred_channel="sms"
        )
        for n in range(2)
    ]
    for n in range(5):
        await add_appointment(pool, store_id=store, starts_at=starts, email=f"page{n}@example.com")
    fixed = reminder_settings(settings, smtp_port=smtp_sink.port, batch_size=2)
    # PETCARE_SMS__PROVIDER=twilio with no account, token or number.
    broken = fixed.model_copy(update={"sms": fixed.sms.model_copy(update={"provider": "twilio"})})
    async with real_worker(dev_client, broken, pool, task_queue):
        with pytest.raises(WorkflowFailureError) as failed:
            await run_reminders(dev_client, task_queue)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.non_retryable) == ("ReminderConfigurationError", True)
    assert "PETCARE_SMS__ACCOUNT_SID" in str(cause)
    # Four pages of two: every email went out although SMS broke on the first page.
    assert sorted(m.recipients[0] for m in smtp_sink.received) == [f"page{n}@example.com" for n in range(5)]
    states = await pool.fetch("SELECT state FROM reminder_deliveries WHERE appointment_id = ANY($1)", texts)
    assert [row["state"] for row in states] == ["skipped", "skipped"]

    async with real_worker(dev_client, fixed, pool, task_queue):  # settings fixed: the next run texts them
        second = await run_reminders(dev_client, task_queue)
    assert (second.counts.due, second.counts.sent_sms, second.counts.sent_email) == (2, 2, 0)
