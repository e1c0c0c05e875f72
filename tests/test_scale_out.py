"""Scale-out: two worker processes share reminders and an export; SIGKILL and rolling restart lose nothing.

Real processes (`worker_main.py --no-schedules`) on the dev server, real PostgreSQL, a real SMTP
sink and a real SFTP server behind a slow link. One test in phases, because the export's killed
upload is only retried once its heartbeat timeout (UPLOAD_HEARTBEAT, tens of seconds) lapses: the
rolling restart runs meanwhile.

A workflow's tasks stick to the worker that ran it last and its activities are dispatched eagerly
to that worker, so work spreads over workers run by run: the reminder runs here continue as new
after every page (`pages_per_run=1`), which hands each page to either worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import asyncssh
import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from devstack.rows import add_many_appointments, add_store
from devstack.smtp_sink import SmtpSink
from devstack.ssh_keys import write_known_hosts
from petcare.config import ReminderSettings
from petcare.models.exports import FinancialExportInput, FinancialExportResult, export_workflow_id
from petcare.models.reminders import ReminderRunInput, ReminderRunResult
from tests.support.exports import request_export
from tests.support.polling import poll
from tests.support.reminder_data import SlowSinkHandler
from tests.support.sftp import SftpFixture
from tests.support.throttle import ThrottledProxy
from tests.support.worker_process import (
    start_worker_process,
    stop_worker_processes,
    wait_until_polling,
    worker_env,
    worker_identity,
)
from worker_main import GRACEFUL_SHUTDOWN
from workflows.exports import FinancialExportWorkflow
from workflows.reminders import AppointmentReminderWorkflow

FIRST_RUN = 300  # appointments of the run hit by the SIGKILL
SECOND_RUN = 160  # appointments of the run during the rolling restart
BATCH = 20  # pages of 20: many pages, spread over the workers
INVOICES = 20_000  # ~6 MB of export files
LINK_RATE = 200_000  # bytes/s per SFTP connection until the kill: uploads last ~20 s
SEND_PAGE = "reminders.send_page"
WRITE_FILE = "financial_export.write_file"

FILL_EXPORT = [
    """INSERT INTO stores (name, timezone)
       SELECT 'Export store ' || n, (ARRAY['Europe/Paris', 'America/New_York', 'Asia/Tokyo'])[1 + n % 3]
       FROM generate_series(1, 6) AS n""",
    """INSERT INTO invoices (number, store_id, issued_at, currency, subtotal_cents, tax_cents, total_cents,
                             status)
       SELECT 'SO-' || lpad(n::text, 8, '0'), s.ids[1 + n % 6],
              timestamptz '2025-10-02 12:00+00' + (n % 2400000) * interval '1 second', 'EUR',
              n % 90000, (n % 90000) / 5, (n % 90000) * 6 / 5, 'paid'
       FROM generate_series(1, $1) AS n,
            (SELECT array_agg(id ORDER BY name) AS ids FROM stores WHERE name LIKE 'Export store %') AS s""",
    """INSERT INTO transactions (invoice_id, store_id, occurred_at, amount_cents, currency, method, reference)
       SELECT id, store_id, issued_at + interval '5 minutes', total_cents, currency, 'card', 'ref ' || number
       FROM invoices""",
    """INSERT INTO credit_notes (number, invoice_id, store_id, issued_at, amount_cents, currency, reason)
       SELECT 'CN-' || number, id, store_id, issued_at + interval '1 hour', total_cents / 2, currency,
              'refund'
       FROM invoices WHERE total_cents % 10 = 0""",
]


async def fill_export_period(pool: asyncpg.Pool, invoices: int) -> None:
    """October 2025 invoices, one transaction each and some credit notes, set-based."""
    async with pool.acquire() as connection, connection.transaction():
        for statement in FILL_EXPORT:
            await (
                connection.execute(statement, invoices)
                if "$1" in statement
                else connection.execute(statement)
            )


async def add_due(pool: asyncpg.Pool, count: int, domain: str) -> list[UUID]:
    store = await add_store(pool, name=f"Salon {domain}")
    await add_many_appointments(
        pool,
        store_id=store,
        count=count,
        first_at=datetime.now(UTC) + timedelta(hours=2),
        spacing=timedelta(seconds=20),
        domain=domain,
    )
    ids: list[UUID] = [
        row["id"] for row in await pool.fetch("SELECT id FROM appointments WHERE store_id = $1", store)
    ]
    return ids


def mail_to(sink: SmtpSink, domain: str) -> list[tuple[str, str]]:
    """(recipient, Message-ID) of every message the sink received for one run's domain."""
    return [
        (mail.recipients[0], str(mail.message["Message-ID"]))
        for mail in list(sink.received)
        if mail.recipients[0].endswith("@" + domain)
    ]


async def started(handle: WorkflowHandle[Any, Any], activity_type: str) -> set[str]:
    """Identities of the workers now running an activity of this type for the workflow's latest run."""
    description = await handle.describe()
    return {
        pending.last_worker_identity
        for pending in description.raw_description.pending_activities
        if pending.activity_type.name == activity_type
        and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    }


async def chain_events(client: Client, workflow_id: str, first_run_id: str) -> list[HistoryEvent]:
    """Every event of a run and of the runs it continued as."""
    events: list[HistoryEvent] = []
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        events += history.events
        last = history.events[-1]
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id or None
    return events


def activity_starts(events: Sequence[HistoryEvent], activity_type: str) -> list[tuple[str, int]]:
    """(worker identity, attempt) of each recorded start of an activity type."""
    types = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
        for event in events
        if event.HasField("activity_task_scheduled_event_attributes")
    }
    return [
        (
            event.activity_task_started_event_attributes.identity,
            event.activity_task_started_event_attributes.attempt,
        )
        for event in events
        if event.HasField("activity_task_started_event_attributes")
        and types.get(event.activity_task_started_event_attributes.scheduled_event_id) == activity_type
    ]


async def assert_each_delivered_once(
    pool: asyncpg.Pool, mail: list[tuple[str, str]], appointments: list[UUID], *, max_duplicates: int
) -> None:
    """Every appointment's message (the Message-ID its delivery recorded) arrived; resends bounded."""
    expected = set(
        await pool.fetchval(
            "SELECT array_agg(message_id) FROM reminder_deliveries WHERE appointment_id = ANY($1::uuid[])",
            appointments,
        )
    )
    assert len(expected) == len(appointments)
    assert {message_id for _, message_id in mail} == expected
    # A resend is the same message (same Message-ID, same recipient): a reader's client folds it.
    assert len({recipient for recipient, _ in mail}) == len(expected)
    assert len(set(mail)) == len(expected)
    duplicates = sum(Counter(mail).values()) - len(expected)
    assert duplicates <= max_duplicates, f"{duplicates} duplicates, at most {max_duplicates} allowed"


async def assert_recorded_sent(pool: asyncpg.Pool, appointments: list[UUID]) -> None:
    rows = await pool.fetch(
        """SELECT a.id, a.reminder_sent_at IS NOT NULL AS marked, d.state
           FROM appointments a LEFT JOIN reminder_deliveries d ON d.appointment_id = a.id
           WHERE a.id = ANY($1::uuid[])""",
        appointments,
    )
    assert len(rows) == len(appointments)
    assert {(row["marked"], row["state"]) for row in rows} == {(True, "sent")}


@pytest.mark.slow
async def test_two_workers_lose_nothing_to_a_sigkill_or_a_rolling_restart(
    dev_server: WorkflowEnvironment,
    database_url: str,
    pool: asyncpg.Pool,
    task_queue: str,
    sftp_server: SftpFixture,
    tmp_path: Path,
) -> None:
    client = dev_server.client
    first_due = await add_due(pool, FIRST_RUN, "first.test")
    await fill_export_period(pool, INVOICES)
    async with pool.acquire() as connection:
        export_id = await request_export(connection, export_format="csv")
    sink = SmtpSink("127.0.0.1", 0, SlowSinkHandler(delay=0.05))
    await sink.start()
    # The workers reach the SFTP server over a slow link: a killed upload is caught mid-file.
    link = ThrottledProxy(sftp_server.host, sftp_server.port, LINK_RATE)
    await link.start()
    known_hosts = tmp_path / "known_hosts_via_link"
    write_known_hosts(
        known_hosts, link.host, link.port, asyncssh.read_private_key(sftp_server.server.host_key_path)
    )
    env = worker_env(
        dev_server,
        database_url=database_url,
        task_queue=task_queue,
        smtp_port=sink.port,
        extra={
            "PETCARE_REMINDERS__BATCH_SIZE": str(BATCH),
            "PETCARE_EXPORT__DESTINATION": "sftp",
            "PETCARE_SFTP__HOST": link.host,
            "PETCARE_SFTP__PORT": str(link.port),
            "PETCARE_SFTP__USERNAME": sftp_server.username,
            "PETCARE_SFTP__PRIVATE_KEY_PATH": str(sftp_server.private_key_path),
            "PETCARE_SFTP__KNOWN_HOSTS_PATH": str(known_hosts),
            "PETCARE_SFTP__REMOTE_DIR": sftp_server.remote_dir,
        },
    )
    log_file = tmp_path / "workers.log"
    workers = [await start_worker_process(env, log_file) for _ in range(2)]
    try:
        await wait_until_polling(client, task_queue, workers)
        # A vanished worker's reminder page is retried elsewhere 10 s after its last heartbeat
        # (4 s left too little slack on a busy machine: a stalled heartbeat retried a live page).
        first_run = await client.start_workflow(
            AppointmentReminderWorkflow.run,
            ReminderRunInput(pages_per_run=1, heartbeat_timeout_seconds=10),
            id=f"scale-out-first-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        await poll(
            lambda: len(mail_to(sink, "first.test")) >= 2 * BATCH, timeout=30, every=0.05, what="first pages"
        )
        export = await client.start_workflow(
            FinancialExportWorkflow.run,
            FinancialExportInput(export_id=export_id),
            id=export_workflow_id(export_id),
            task_queue=task_queue,
        )

        # --- SIGKILL a worker that is uploading an export file and sending a reminder page.
        async def busy_with_both() -> str | None:
            both = await started(export, WRITE_FILE) & await started(
                client.get_workflow_handle(first_run.id), SEND_PAGE
            )
            return min(both, default=None)

        victim_identity = await poll(
            busy_with_both, timeout=20, every=0.05, what="one worker both uploads and sends"
        )
        [victim] = [worker for worker in workers if worker_identity(worker) == victim_identity]
        victim.send_signal(signal.SIGKILL)
        assert await victim.wait() == -signal.SIGKILL
        link.bytes_per_second = float("inf")  # the retried uploads need not be slow
        sent_at_kill = len(mail_to(sink, "first.test"))
        assert sent_at_kill < FIRST_RUN, "the run finished before the kill: nothing was tested"
        survivor = next(worker for worker in workers if worker is not victim)
        workers.append(replacement := await start_worker_process(env, log_file))
        first_result: ReminderRunResult = await asyncio.wait_for(first_run.result(), 60)

        # --- Rolling restart (the export's killed upload still waits out its heartbeat timeout).
        second_due = await add_due(pool, SECOND_RUN, "second.test")
        second_run = await client.start_workflow(
            AppointmentReminderWorkflow.run,
            ReminderRunInput(pages_per_run=1, heartbeat_timeout_seconds=10),
            id=f"scale-out-second-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        await poll(
            lambda: len(mail_to(sink, "second.test")) >= BATCH, timeout=30, every=0.05, what="second pages"
        )
        # Stop the worker that is sending a page right now: that page must finish, not be redone.
        sending = await poll(
            lambda: started(client.get_workflow_handle(second_run.id), SEND_PAGE),
            timeout=30,
            every=0.05,
            what="a page in flight",
        )
        [stopping] = [worker for worker in (survivor, replacement) if worker_identity(worker) in sending]
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        stopping.send_signal(signal.SIGTERM)
        workers.append(await start_worker_process(env, log_file))
        exit_code = await asyncio.wait_for(stopping.wait(), GRACEFUL_SHUTDOWN.total_seconds() + 10)
        stop_seconds = loop.time() - stopped_at
        second_result: ReminderRunResult = await asyncio.wait_for(second_run.result(), 60)
        export_result: FinancialExportResult = await asyncio.wait_for(export.result(), 120)
    finally:
        await stop_worker_processes(*workers)
        await sink.stop()
        await link.stop()
    logs = log_file.read_text(errors="replace")[-4000:]

    # The SIGKILLed run: every appointment reminded, resent only what was in flight at the kill.
    in_flight_bound = ReminderSettings().smtp_concurrency  # per worker process; all of it is email
    await assert_each_delivered_once(
        pool, mail_to(sink, "first.test"), first_due, max_duplicates=in_flight_bound
    )
    assert (first_result.counts.due, first_result.counts.sent_email) == (FIRST_RUN, FIRST_RUN), logs
    await assert_recorded_sent(pool, first_due)
    page_starts = activity_starts(
        await chain_events(client, first_run.id, first_run.first_execution_run_id or ""), SEND_PAGE
    )
    assert {identity for identity, _ in page_starts} >= {victim_identity, worker_identity(survivor)}
    # The page the victim was sending is sent again by another worker, once its heartbeat lapsed.
    assert any(attempt > 1 and identity != victim_identity for identity, attempt in page_starts)

    # The rolling restart: the stopped worker finished its page and exited cleanly; nothing resent.
    assert exit_code == 0, logs
    assert stop_seconds < GRACEFUL_SHUTDOWN.total_seconds()
    await assert_each_delivered_once(pool, mail_to(sink, "second.test"), second_due, max_duplicates=0)
    assert (second_result.counts.due, second_result.counts.sent_email) == (SECOND_RUN, SECOND_RUN)
    await assert_recorded_sent(pool, second_due)
    second_starts = activity_starts(
        await chain_events(client, second_run.id, second_run.first_execution_run_id or ""), SEND_PAGE
    )
    assert worker_identity(stopping) in {identity for identity, _ in second_starts}
    assert {attempt for _, attempt in second_starts} == {1}

    # The export: the killed upload was redone by another worker; files match their checksums.
    await assert_export_complete(pool, sftp_server, export_id, export_result)
    export_events = (await export.fetch_history()).events
    retried = [identity for identity, attempt in activity_starts(export_events, WRITE_FILE) if attempt > 1]
    assert retried, "no upload was retried: the kill missed the export"
    assert victim_identity not in retried


async def assert_export_complete(
    pool: asyncpg.Pool, sftp: SftpFixture, export_id: UUID, result: FinancialExportResult
) -> None:
    assert result.status == "completed"
    assert [file.kind for file in result.files] == ["invoices", "transactions", "credit_notes", "manifest"]
    expected_rows = {
        "invoices": await pool.fetchval("SELECT count(*) FROM invoices"),
        "transactions": await pool.fetchval("SELECT count(*) FROM transactions"),
        "credit_notes": await pool.fetchval("SELECT count(*) FROM credit_notes"),
    }
    folder = None
    for file in result.files:
        local = sftp.root / file.remote_path.lstrip("/")
        data = await asyncio.to_thread(local.read_bytes)
        assert (len(data), hashlib.sha256(data).hexdigest()) == (file.bytes, file.sha256)
        if file.kind != "manifest":
            assert file.rows == expected_rows[file.kind]
        folder = local.parent
    assert folder is not None
    manifest = json.loads(await asyncio.to_thread((folder / "manifest.json").read_text))
    assert {entry["name"]: entry["sha256"] for entry in manifest["files"]} == {
        file.name: file.sha256 for file in result.files if file.kind != "manifest"
    }
    # The killed attempt's temporary file was cleared by the retry's successful upload.
    assert sorted(path.name for path in folder.iterdir()) == sorted(file.name for file in result.files)
    status = await pool.fetchval("SELECT status FROM financial_exports WHERE id = $1", export_id)
    assert status == "completed"
