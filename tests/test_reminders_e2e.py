"""Reminders end to end on the Temporal dev server: API triggers, dry run, SMTP outage, SIGKILLed worker,
a poisoned record and a full mailbox in the middle of a run."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleOverlapPolicy, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from devstack.rows import add_appointment, add_many_appointments, add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import ReminderSettings, Settings
from petcare.jobs import APPOINTMENT_REMINDER
from petcare.models.reminders import MANUAL_WORKFLOW_ID, ReminderRunInput, ReminderRunResult
from petcare.schedules import declared_schedules
from tests.support.api import AUTH
from tests.support.polling import poll
from tests.support.reminder_data import FullMailboxHandler, SlowSinkHandler, reminder_settings
from tests.support.worker_process import start_worker_process, stop_worker_processes, worker_env
from tests.support.workers import real_worker
from workflows.reminders import AppointmentReminderWorkflow

TRIGGER = "/api/v1/workers/appointment-reminder/trigger"


async def test_two_concurrent_triggers_make_one_run(
    api_client: TestClient[Any, Any], dev_client: Client
) -> None:
    # No worker polls this test's queue: the run stays running while both triggers arrive.
    try:
        first, second = await asyncio.gather(
            api_client.post(TRIGGER, headers=AUTH), api_client.post(TRIGGER, json={}, headers=AUTH)
        )
        answers = [await first.json(), await second.json()]
        assert first.status == second.status == 202
        assert {a["workflowId"] for a in answers} == {MANUAL_WORKFLOW_ID}
        assert answers[0]["runId"] == answers[1]["runId"]
        assert sorted(a["alreadyRunning"] for a in answers) == [False, True]
        third = await api_client.post(TRIGGER, headers=AUTH)
        assert (await third.json())["alreadyRunning"] is True
        runs = [r async for r in dev_client.list_workflows(f'WorkflowId="{MANUAL_WORKFLOW_ID}"')]
        assert len({r.run_id for r in runs if r.status is None or r.status.name == "RUNNING"}) <= 1
    finally:
        await dev_client.get_workflow_handle(MANUAL_WORKFLOW_ID).terminate("test over")


async def test_trigger_rejects_bad_bodies(api_client: TestClient[Any, Any]) -> None:
    malformed = await api_client.post(
        TRIGGER, data="{nope", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert malformed.status == 400
    unknown = await api_client.post(TRIGGER, json={"dryRun": True, "dryrun": 1}, headers=AUTH)
    assert unknown.status == 422
    assert "dryrun" in (await unknown.json())["error"]["message"]


async def test_dry_run_shows_what_would_be_sent_and_sends_nothing(
    api_client: TestClient[Any, Any],
    dev_client: Client,
    api_settings: Settings,
    pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
) -> None:
    store = await add_store(pool, name="Salon Lyon", timezone="Europe/Paris", phone="+33472000000")
    starts = datetime.now(UTC) + timedelta(hours=4)
    await add_appointment(
        pool,
        store_id=store,
        starts_at=starts - timedelta(minutes=30),
        email="a@example.com",
        locale="fr",
        pet="Noisette",
    )
    await add_appointment(
        pool, store_id=store, starts_at=starts, phone="+15550100400", preferred_channel="sms"
    )
    await add_appointment(pool, store_id=store, starts_at=starts, email=None, phone=None)
    settings = reminder_settings(api_settings, smtp_port=smtp_sink.port)
    async with real_worker(dev_client, settings, pool):
        answer = await api_client.post(TRIGGER, json={"dryRun": True, "previewLimit": 1}, headers=AUTH)
        body = await answer.json()
    assert answer.status == 200, body
    assert body["dryRun"] is True
    assert body["counts"] == {
        "due": 3, "email": 1, "sms": 1, "skippedNoAddress": 1, "rescheduled": 0, "smsOptedOut": 0,
    }  # fmt: skip
    [message] = body["messages"]
    assert message["channel"] == "email"
    assert message["recipient"] == "a@example.com"
    assert (message["rescheduled"], message["templates"]) == (False, "default")
    assert message["subject"].startswith("Rappel : rendez-vous de Noisette chez Salon Lyon")
    assert "Noisette" in message["text"]
    assert smtp_sink.received == []
    assert await pool.fetchval("SELECT count(*) FROM reminder_deliveries") == 0
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE reminder_sent_at IS NOT NULL") == 0


async def test_smtp_down_for_a_while_mid_run_loses_nothing(
    dev_client: Client, settings: Settings, pool: asyncpg.Pool, task_queue: str, tmp_path: Path
) -> None:
    count = 60
    store = await add_store(pool)
    first_at = datetime.now(UTC) + timedelta(hours=2)
    await add_many_appointments(
        pool,
        store_id=store,
        count=count,
        first_at=first_at,
        spacing=timedelta(minutes=1),
        domain="outage.test",
    )
    sink = SmtpSink("127.0.0.1", 0, SlowSinkHandler(delay=0.05))
    await sink.start()
    adjusted = reminder_settings(
        settings.model_copy(update={"task_queue": task_queue}), smtp_port=sink.port, batch_size=20
    )
    try:
        async with real_worker(dev_client, adjusted, pool):
            handle = await dev_client.start_workflow(
                AppointmentReminderWorkflow.run,
                ReminderRunInput(),
                id=f"reminders-outage-{uuid.uuid4()}",
                task_queue=task_queue,
            )
            await poll(lambda: len(sink.received) >= 10, timeout=30, every=0.02)
            await sink.stop()  # the mail server crashes mid-page
            sent_before_the_outage = len(sink.received)
            # Down until the run has met the outage: its page failed and waits for a retry.
            retrying = await poll(lambda: send_retry_after_failure(handle), timeout=30, every=0.1)
            assert "provider unavailable" in retrying
            await sink.start()
            result = await asyncio.wait_for(handle.result(), 60)
    finally:
        await sink.stop()

    assert 0 < sent_before_the_outage < count, "the outage was not in the middle of the run"
    recipients = Counter(m.recipients[0] for m in sink.received)
    assert set(recipients) == {f"owner{n}@outage.test" for n in range(1, count + 1)}
    assert (
        sum(recipients.values()) - count
        <= adjusted.reminders.smtp_concurrency + adjusted.reminders.sms_concurrency
    )
    assert (result.counts.due, result.counts.sent_email, result.counts.failed) == (count, count, 0)
    assert (
        await pool.fetchval("SELECT count(*) FROM appointments WHERE reminder_sent_at IS NOT NULL") == count
    )


async def send_retry_after_failure(handle: WorkflowHandle[Any, Any]) -> str | None:
    """The failure message of the send activity once it is pending a retry, else None."""
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name == "reminders.send_page" and pending.attempt >= 2:
            return pending.last_failure.message or "(no message)"
    return None


@pytest.mark.slow
async def test_worker_killed_mid_run_then_replaced_loses_nothing(
    dev_server: WorkflowEnvironment, database_url: str, pool: asyncpg.Pool, task_queue: str, tmp_path: Path
) -> None:
    count = 200
    store = await add_store(pool)
    await add_many_appointments(
        pool,
        store_id=store,
        count=count,
        first_at=datetime.now(UTC) + timedelta(hours=2),
        spacing=timedelta(seconds=30),
        domain="kill.test",
    )
    sink = SmtpSink("127.0.0.1", 0, SlowSinkHandler(delay=0.04))
    await sink.start()
    env = worker_env(
        dev_server,
        database_url=database_url,
        task_queue=task_queue,
        smtp_port=sink.port,
        extra={"PETCARE_REMINDERS__BATCH_SIZE": "25"},
    )
    log_file = tmp_path / "workers.log"
    first = await start_worker_process(env, log_file)
    second: asyncio.subprocess.Process | None = None
    try:
        handle = await dev_server.client.start_workflow(
            AppointmentReminderWorkflow.run,
            # A vanished worker's page is retried elsewhere 10 s after its last heartbeat
            # (4 s left too little slack on a busy machine: a stalled heartbeat retried a live page).
            ReminderRunInput(pages_per_run=3, heartbeat_timeout_seconds=10),
            id=f"reminders-kill-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        await poll(lambda: len(sink.received) >= 60, timeout=60, every=0.02)
        # Dies mid-page with messages in flight; the page's claims are picked up by the retry.
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        received_at_kill = len(sink.received)
        assert received_at_kill < count, "the run finished before the kill; nothing was tested"
        second = await start_worker_process(env, log_file)
        result: ReminderRunResult = await asyncio.wait_for(handle.result(), 90)
    finally:
        await stop_worker_processes(first, second)
        await sink.stop()

    recipients = Counter(m.recipients[0] for m in sink.received)
    assert set(recipients) == {f"owner{n}@kill.test" for n in range(1, count + 1)}, log_file.read_text()
    duplicates = sum(recipients.values()) - count
    defaults = ReminderSettings()  # what the worker processes ran with
    assert duplicates <= defaults.smtp_concurrency + defaults.sms_concurrency
    # A resent message is the same message: same Message-ID as the first copy.
    ids_by_recipient: dict[str, set[str]] = {}
    for mail in sink.received:
        ids_by_recipient.setdefault(mail.recipients[0], set()).add(str(mail.message["Message-ID"]))
    assert all(len(ids) == 1 for ids in ids_by_recipient.values())
    assert (result.counts.due, result.counts.sent_email) == (count, count)
    assert await pool.fetchval("SELECT count(*) FROM reminder_deliveries WHERE state = 'sent'") == count
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE reminder_sent_at IS NULL") == 0


def test_hourly_schedule_is_declared_with_skip_and_catch_up(settings: Settings) -> None:
    [declaration] = [d for d in declared_schedules(settings) if d.job is APPOINTMENT_REMINDER]
    schedule = declaration.to_schedule("petcare-workers")
    assert declaration.schedule_id == "appointment-reminder"
    assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert declaration.catchup_window >= timedelta(hours=1)
    assert [interval.every for interval in schedule.spec.intervals] == [timedelta(hours=1)]
    assert isinstance(schedule.action, ScheduleActionStartWorkflow)
    assert schedule.action.workflow == "AppointmentReminderWorkflow"
    assert schedule.action.args[0] == ReminderRunInput()


async def test_a_triggered_run_reports_its_counts_through_the_runs_route(
    api_client: TestClient[Any, Any],
    dev_client: Client,
    api_settings: Settings,
    pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
) -> None:
    store = await add_store(pool)
    starts = datetime.now(UTC) + timedelta(hours=6)
    await add_appointment(pool, store_id=store, starts_at=starts, email="one@example.com")
    await add_appointment(pool, store_id=store, starts_at=starts, email=None, phone=None)
    settings = reminder_settings(api_settings, smtp_port=smtp_sink.port)
    async with real_worker(dev_client, settings, pool):
        accepted = await api_client.post(TRIGGER, headers=AUTH)
        assert accepted.status == 202
        workflow_id = (await accepted.json())["workflowId"]

        async def finished() -> dict[str, Any] | None:
            answer = await api_client.get(f"/api/v1/workers/runs/{workflow_id}", headers=AUTH)
            body: dict[str, Any] = await answer.json()
            return body if body["status"] == "Completed" else None

        run = await poll(finished, timeout=30)
    assert run["type"] == "AppointmentReminderWorkflow"
    counts = run["result"]["counts"]
    assert (counts["due"], counts["sent_email"], counts["skipped_no_address"]) == (2, 1, 1)
    assert [m.recipients for m in smtp_sink.received] == [["one@example.com"]]


async def test_a_poisoned_pet_name_and_a_full_mailbox_do_not_hold_up_the_run(
    dev_client: Client, settings: Settings, pool: asyncpg.Pool, task_queue: str
) -> None:
    count = 30
    store = await add_store(pool)
    starts = datetime.now(UTC) + timedelta(hours=2)
    await add_many_appointments(
        pool, store_id=store, count=count, first_at=starts, spacing=timedelta(minutes=1), domain="run.test"
    )
    # Among the others (the run pages 10 at a time): a pet named with a line break, a full mailbox.
    mid_run = starts + timedelta(minutes=count // 2, seconds=30)
    await add_appointment(pool, store_id=store, starts_at=mid_run, email="rex@run.test", pet="Rex\nEvil")
    await add_appointment(pool, store_id=store, starts_at=mid_run, email="full@run.test")
    handler = FullMailboxHandler(full={"full@run.test"})
    sink = SmtpSink("127.0.0.1", 0, handler)
    await sink.start()
    adjusted = reminder_settings(
        settings.model_copy(update={"task_queue": task_queue}), smtp_port=sink.port, batch_size=10
    )
    try:
        async with real_worker(dev_client, adjusted, pool):
            began = asyncio.get_running_loop().time()
            handle = await dev_client.start_workflow(
                AppointmentReminderWorkflow.run,
                ReminderRunInput(),
                id=f"reminders-poisoned-{uuid.uuid4()}",
                task_queue=task_queue,
            )
            # Before the fix each attempt of the poisoned page failed, retried for up to 6 hours.
            result = await asyncio.wait_for(handle.result(), 30)
            took = asyncio.get_running_loop().time() - began
            # What the Web UI shows as the run's current details.
            metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
            handler.full.clear()  # the mailbox has room again: the next run delivers it
            later: ReminderRunResult = await dev_client.execute_workflow(
                AppointmentReminderWorkflow.run,
                ReminderRunInput(),
                id=f"reminders-later-{uuid.uuid4()}",
                task_queue=task_queue,
            )
    finally:
        await sink.stop()

    assert took < 15, f"the run took {took:.1f} s"
    counts = result.counts
    assert (counts.due, counts.sent_email, counts.failed, counts.deferred) == (count + 2, count + 1, 0, 1)
    recipients = Counter(m.recipients[0] for m in sink.received)
    assert set(recipients) == {f"owner{n}@run.test" for n in range(1, count + 1)} | {
        "rex@run.test",
        "full@run.test",
    }
    assert sum(recipients.values()) == count + 2  # each exactly once, the deferred one included
    rex = next(m.message for m in sink.received if m.recipients == ["rex@run.test"])
    assert rex["Subject"].startswith("Reminder: Rex Evil's appointment")
    assert "0 failed, 1 deferred" in metadata.current_details
    assert (later.counts.due, later.counts.sent_email, later.counts.deferred) == (1, 1, 0)
