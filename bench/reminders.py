"""Benchmark: the reminder workflow end to end against sending the same emails straight with aiosmtplib.

    .venv/bin/python bench/reminders.py [--appointments 3000] [--connections 8] [--postgres both]

Its own embedded PostgreSQL gets N appointments due in the next hours; an aiosmtpd sink runs in a
child process (so the server does not share the sender's event loop); a Temporal dev server runs
in memory with an in-process worker (the real activities, batch 200, `--connections` SMTP
connections). Two measurements, one after the other, on the embedded PostgreSQL 18 and on Debian's
PostgreSQL 15:

  raw       the same rendered messages sent straight with aiosmtplib over as many connections
            (before and after the workflow; the mean is the baseline); and once more already
            flattened, sent as bytes as the worker sends them (printed beside, not the ratio)
  workflow  AppointmentReminderWorkflow from start to result: paging, claims, rendering, sends, records

It prints both rates, the ratio workflow / raw (target >= 0.8), the time each activity took (from
the run's history) and an hourly run that finds nothing due, and records the ratios in
docs/benchmarks.json and docs/benchmarks.svg (bench/chart.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import asyncpg
from aiosmtplib.email import flatten_message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activities.reminders.messages import build_email, reminder_message_id, render_reminder
from activities.reminders.sql import DueAppointments, context_of, route_of
from bench.chart import Result, record
from bench.measure import activity_times, cpu_seconds
from devstack.postgres import DebianPostgres, bench_postgres, create_database
from devstack.rows import add_many_appointments, add_store
from devstack.smtp_sink import sink_process
from devstack.temporal_server import temporal_dev_server
from petcare.config import Settings
from petcare.mail import Mailer
from petcare.migrate import migrate_database
from petcare.models.reminders import ReminderRunInput, ReminderRunResult
from worker_main import WorkerResources, workers_running
from workflows.reminders import AppointmentReminderWorkflow

SERVERS = {"embedded": "PostgreSQL 18 (embedded)", "debian15": "PostgreSQL 15 (Debian)"}


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


# A message flattened ahead of the clock: (envelope sender, recipient, the bytes of DATA).
Flattened = tuple[str, str, bytes]


def flattened(messages: list[EmailMessage]) -> list[Flattened]:
    return [
        (
            message["From"].addresses[0].addr_spec,
            message["To"].addresses[0].addr_spec,
            flatten_message(message),
        )
        for message in messages
    ]


async def send_raw(messages: Sequence[EmailMessage | Flattened], port: int, connections: int) -> float:
    """Messages sent with send_message (flattened by aiosmtplib on the way, the issue's baseline),
    or already flattened ones with sendmail (the floor of SMTP alone, as the worker sends bytes)."""
    queue = list(messages)

    async def one_connection() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
            while queue:
                message = queue.pop()
                if isinstance(message, EmailMessage):
                    await client.send_message(message)
                else:
                    await client.sendmail(message[0], [message[1]], message[2])

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return time.perf_counter() - started


async def run_workflow(pool: asyncpg.Pool, settings: Settings) -> dict[str, dict[str, Any]]:
    """The run that sends everything, then an hourly run that finds nothing due."""
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
                runs: dict[str, dict[str, Any]] = {}
                for name in ("due", "nothing due"):
                    started, cpu = time.perf_counter(), cpu_seconds()
                    handle = await env.client.start_workflow(
                        AppointmentReminderWorkflow.run,
                        ReminderRunInput(),
                        id=f"bench-reminders-{uuid.uuid4()}",
                        task_queue=settings.task_queue,
                    )
                    outcome = await handle.result()
                    runs[name] = {
                        "seconds": time.perf_counter() - started,
                        "cpu": cpu_seconds() - cpu,
                        "result": outcome,
                        "activities": activity_times(
                            [event async for event in handle.fetch_history_events()]
                        ),
                    }
    result: ReminderRunResult = runs["due"]["result"]
    print(
        f"workflow result: due={result.counts.due} sent={result.counts.sent_email} "
        f"failed={result.counts.failed} pages={result.pages} runs={result.runs}"
    )
    return runs


async def bench_server(kind: str, count: int, connections: int, scratch: Path, smtp_port: int) -> Result:
    async with bench_postgres(kind, scratch / kind) as postgres:
        url = await create_database(postgres.url(), "bench_reminders")
        await prepare(url, count)
        settings = Settings(
            _env_file=None,
            database_url=url,
            task_queue="bench-reminders",
            smtp={"port": smtp_port},
            reminders={"smtp_concurrency": connections},
            log_level="WARNING",
        )
        async with asyncpg.create_pool(url, min_size=2, max_size=10) as pool:
            messages = await rendered_messages(pool, settings)
            # Raw before and after: the machine's load drifts, the mean of both is the baseline.
            raw_cpu = cpu_seconds()
            raw_before = await send_raw(messages, smtp_port, connections)
            raw_cpu = cpu_seconds() - raw_cpu
            runs = await run_workflow(pool, settings)
            raw_after = await send_raw(messages, smtp_port, connections)
            raw_bytes = await send_raw(flattened(messages), smtp_port, connections)

    due, idle = runs["due"], runs["nothing due"]
    sent = due["result"].counts.sent
    raw_seconds = (raw_before + raw_after) / 2
    raw_rate, workflow_rate = len(messages) / raw_seconds, sent / due["seconds"]
    server = SERVERS[kind]
    print(f"[{server}] appointments due: {count}, {connections} SMTP connections")
    print(
        f"  raw aiosmtplib:  {len(messages)} messages in {raw_before:.2f} s before, {raw_after:.2f} s after"
        f" = {raw_rate:.0f} messages/s (sender CPU {raw_cpu * 1000 / len(messages):.2f} ms a message)"
    )
    print(
        f"  raw, flattened before the clock (sendmail): {len(messages) / raw_bytes:.0f} messages/s, "
        f"ratio workflow/that {workflow_rate * raw_bytes / len(messages):.2f}"
    )
    print(
        f"  workflow:        {sent} reminders in {due['seconds']:.2f} s = {workflow_rate:.0f} reminders/s "
        f"(worker process CPU {due['cpu']:.2f} s, {due['cpu'] * 1000 / max(sent, 1):.2f} ms a reminder)"
    )
    for name, (number, seconds) in due["activities"].items():
        print(f"    {name:28} {number:3} x, {seconds:6.2f} s in all (scheduled to completed)")
    print(
        f"  hourly run with nothing due: {idle['seconds'] * 1000:.0f} ms end to end, "
        f"worker CPU {idle['cpu'] * 1000:.0f} ms"
    )
    ratio = workflow_rate / raw_rate
    print(f"  ratio workflow/raw: {ratio:.2f} (target >= 0.8)")
    return Result(
        job="reminders",
        case=f"{count:,} due emails, {connections} SMTP connections",
        server=server,
        ratio=ratio,
        target=0.8,
        higher_is_better=True,
        detail=(
            f"{workflow_rate:.0f} reminders/s, raw {raw_rate:.0f} msg/s "
            f"(flattened before the clock {len(messages) / raw_bytes:.0f}); nothing due: "
            f"{idle['seconds'] * 1000:.0f} ms, worker CPU {idle['cpu'] * 1000:.0f} ms"
        ),
    )


async def bench(options: argparse.Namespace) -> None:
    kinds = ["embedded", "debian15"] if options.postgres == "both" else [options.postgres]
    if "debian15" in kinds and not DebianPostgres.available():
        print("Debian's PostgreSQL 15 is not installed: embedded only", flush=True)
        kinds.remove("debian15")
    results = []
    with tempfile.TemporaryDirectory(prefix="petcare-bench-reminders-") as scratch:
        await asyncio.to_thread(Path(scratch).chmod, 0o755)  # Debian's server runs as `postgres` as root
        async with sink_process() as smtp_port:
            for kind in kinds:
                results.append(
                    await bench_server(
                        kind, options.appointments, options.connections, Path(scratch), smtp_port
                    )
                )
    if options.record:
        record(*results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appointments", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=8, help="SMTP connections, raw and workflow alike")
    parser.add_argument("--postgres", choices=("embedded", "debian15", "both"), default="both")
    parser.add_argument("--no-record", dest="record", action="store_false", help="leave docs/ as it is")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
