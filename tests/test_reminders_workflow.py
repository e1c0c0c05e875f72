"""The reminder workflow: paging and continue-as-new (time-skipping server), real activities (dev server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
from aiohttp import ClientSession
from temporalio import activity
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from petcare.config import Settings
from petcare.devstack.smtp_sink import SmtpSink
from petcare.mail import Mailer
from petcare.models.reminders import (
    DuePage,
    FetchDuePage,
    PageCursor,
    ReminderCounts,
    ReminderRunInput,
    ReminderRunResult,
    SendPage,
)
from tests.support.reminder_data import add_appointment, add_store, reminder_activities, reminder_settings
from worker_main import WorkerResources, build_worker
from workflows.reminders import AppointmentReminderWorkflow

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


async def test_pages_continue_as_new_and_counts_add_up(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    stand_in = StandInActivities()
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[AppointmentReminderWorkflow],
        activities=[stand_in.fetch_due_page, stand_in.send_page],
    ):
        handle = await client.start_workflow(
            AppointmentReminderWorkflow.run,
            ReminderRunInput(pages_per_run=2),
            id=f"reminders-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        result = await handle.result()
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
    async with Mailer(adjusted.smtp) as mailer, ClientSession() as http:
        resources = WorkerResources(settings=adjusted, pool=pool, mailer=mailer, http=http)
        async with build_worker(dev_client, resources, task_queue=task_queue):
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


async def test_replay_of_a_recorded_history_is_deterministic(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    stand_in = StandInActivities()
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[AppointmentReminderWorkflow],
        activities=[stand_in.fetch_due_page, stand_in.send_page],
    ):
        handle = await client.start_workflow(
            AppointmentReminderWorkflow.run,
            ReminderRunInput(pages_per_run=50),
            id=f"reminders-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        await handle.result()
    history = await handle.fetch_history()
    replayer = Replayer(workflows=[AppointmentReminderWorkflow], data_converter=pydantic_data_converter)
    replayed = await replayer.replay_workflow(WorkflowHistory.from_json(handle.id, history.to_json()))
    assert replayed.replay_failure is None
