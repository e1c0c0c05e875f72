"""Benchmark: the reminder workflow end to end against sending the same emails straight with aiosmtplib.

    .venv/bin/python bench/reminders.py [--appointments 5000]

Its own embedded PostgreSQL gets N appointments due in the next hours; an aiosmtpd sink runs in a
child process (so the server does not share the sender's event loop); a Temporal dev server runs
in memory with an in-process worker (the real activities, default settings: batch 200, 4 SMTP
connections). Two measurements, one after the other:

  raw       the same rendered messages sent straight with aiosmtplib over as many connections
            (before and after the workflow; the mean is the baseline)
  workflow  AppointmentReminderWorkflow from start to result: paging, claims, rendering, sends, records

It prints both rates and the ratio workflow / raw (target ≥ 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import aiohttp
import aiosmtplib
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activities.reminders.messages import build_email, reminder_message_id, render_reminder
from activities.reminders.sql import DueAppointments, context_of, route_of
from devstack.ports import free_port
from devstack.postgres import create_database, embedded_postgres
from devstack.rows import add_many_appointments, add_store
from devstack.smtp_sink import SmtpSink
from devstack.temporal_server import temporal_dev_server
from petcare.config import Settings
from petcare.mail import Mailer
from petcare.migrate import migrate_database
from petcare.models.reminders import ReminderRunInput
from worker_main import WorkerResources, workers_running
from workflows.reminders import AppointmentReminderWorkflow


def serve_smtp(port: int, ready: EventType, stop: EventType) -> None:
    """The sink's own process: counts messages in memory, writes nothing to disk."""

    async def main() -> None:
        sink = SmtpSink("127.0.0.1", port)
        await sink.start()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await sink.stop()

    asyncio.run(main())


async def prepare(url: str, count: int) -> None:
    await migrate_database(url)
    async with asyncpg.create_pool(url) as pool:
        store = await add_store(pool, name="Bench Grooming", timezone="Europe/Paris")
        first_at = datetime.now(UTC) + timedelta(hours=2)
        spacing = timedelta(hours=20) / count
        await add_many_appointments(
            pool, store_id=store, count=count, first_at=first_at, spacing=spacing, domain="bench.test"
        )


async def rendered_messages(pool: asyncpg.Pool, settings: Settings) -> list[EmailMessage]:
    """The exact messages the workflow will send, built with the same SQL and templates."""
    as_of = datetime.now(UTC)
    window = settings.reminders
    messages = []
    earliest = as_of + timedelta(minutes=window.min_lead_minutes)
    latest = as_of + timedelta(hours=window.window_hours)
    _, rows, overrides = await DueAppointments(pool).plan(earliest, latest, None)
    for row in rows:
        route = route_of(row)
        if route is None:
            raise RuntimeError(f"benchmark appointment {row['id']} has no address")
        messages.append(
            build_email(
                render_reminder(context_of(row, overrides)),
                sender=settings.smtp.from_address,
                recipient=route.address,
                message_id=reminder_message_id(row["id"], row["starts_at"], settings.smtp.from_address),
                reply_to=row["store_email"],
            )
        )
    return messages


async def send_raw(messages: list[EmailMessage], port: int, connections: int) -> float:
    queue = list(messages)

    async def one_connection() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
            while queue:
                await client.send_message(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return time.perf_counter() - started


async def run_workflow(pool: asyncpg.Pool, settings: Settings) -> tuple[float, int]:
    async with temporal_dev_server() as env:
        connections = settings.reminders.smtp_concurrency
        async with (
            Mailer(settings.smtp, max_connections=connections) as mailer,
            aiohttp.ClientSession() as http,
        ):
            resources = WorkerResources(
                settings=settings, pool=pool, upload_pool=pool, mailer=mailer, http=http
            )
            async with workers_running(env.client, resources):
                started = time.perf_counter()
                result = await env.client.execute_workflow(
                    AppointmentReminderWorkflow.run,
                    ReminderRunInput(),
                    id=f"bench-reminders-{uuid.uuid4()}",
                    task_queue=settings.task_queue,
                )
                elapsed = time.perf_counter() - started
    print(
        f"workflow result: due={result.counts.due} sent={result.counts.sent_email} "
        f"failed={result.counts.failed} pages={result.pages} runs={result.runs}"
    )
    return elapsed, result.counts.sent


async def bench(count: int) -> None:
    smtp_port = free_port()
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    sink = context.Process(target=serve_smtp, args=(smtp_port, ready, stop), daemon=True)
    sink.start()
    with tempfile.TemporaryDirectory(prefix="petcare-bench-reminders-") as scratch:
        try:
            async with embedded_postgres(Path(scratch) / "pg") as postgres:
                url = await create_database(postgres.url(), "bench_reminders")
                await prepare(url, count)
                settings = Settings(
                    _env_file=None,
                    database_url=url,
                    task_queue="bench-reminders",
                    smtp={"port": smtp_port},
                    log_level="WARNING",
                )
                if not ready.wait(30):
                    raise RuntimeError("the SMTP sink did not start")
                async with asyncpg.create_pool(url, min_size=2, max_size=10) as pool:
                    messages = await rendered_messages(pool, settings)
                    connections = settings.reminders.smtp_concurrency
                    # Raw before and after: the machine's load drifts, the mean of both is the baseline.
                    raw_before = await send_raw(messages, smtp_port, connections)
                    workflow_seconds, sent = await run_workflow(pool, settings)
                    raw_after = await send_raw(messages, smtp_port, connections)
        finally:
            stop.set()
            sink.join(10)

    raw_seconds = (raw_before + raw_after) / 2
    raw_rate = len(messages) / raw_seconds
    workflow_rate = sent / workflow_seconds
    print(f"appointments due:  {count}")
    print(
        f"raw aiosmtplib:    {len(messages)} messages in {raw_before:.2f} s before, {raw_after:.2f} s after"
        f" = {raw_rate:.0f} messages/s"
    )
    print(
        f"workflow:          {sent} reminders in {workflow_seconds:.2f} s = {workflow_rate:.0f} reminders/s"
    )
    print(f"ratio workflow/raw: {workflow_rate / raw_rate:.2f} (target >= 0.5)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appointments", type=int, default=5000)
    arguments = parser.parse_args()
    asyncio.run(bench(arguments.appointments))


if __name__ == "__main__":
    main()
