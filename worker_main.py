"""The Temporal worker: the one place that wires clients, pools and activities together."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from activities.alerts import OpsAlertActivities, OpsWebhook
from activities.exports import ExportActivities, ExportNoticeActivities, MonthlyExportActivities
from activities.reminders import ReminderActivities
from activities.reminders import build_gateway as build_sms_gateway
from activities.stock import StockActivities
from petcare.config import Settings
from petcare.db import create_pool, create_upload_pool
from petcare.mail import Mailer
from petcare.metrics import worker_runtime
from petcare.models.exports import upload_task_queue
from petcare.process import run_command
from petcare.schedules import add_no_schedules_option, apply_schedules, declared_schedules
from petcare.temporal_client import connect_temporal, ensure_search_attributes, plugins_for_worker
from workflows import WORKFLOWS

log = logging.getLogger("petcare.worker")

# How long in-flight activities get to finish after SIGTERM before the worker gives up on them
# (Temporal then retries them on another worker once their timeout or heartbeat lapses).
GRACEFUL_SHUTDOWN = timedelta(seconds=30)


@dataclass(frozen=True)
class WorkerResources:
    """What activities are built with; each resource is owned by `run_worker`'s exit stack."""

    settings: Settings
    pool: asyncpg.Pool
    # The exports' COPYs only: PETCARE_EXPORT__UPLOAD_CONCURRENCY connections, opened on demand.
    upload_pool: asyncpg.Pool
    mailer: Mailer
    http: aiohttp.ClientSession


async def open_resources(settings: Settings, stack: AsyncExitStack) -> WorkerResources:
    """The pools, the mailer and the HTTP session, each closed by `stack`."""
    pool = await stack.enter_async_context(create_pool(settings))
    upload_pool = await stack.enter_async_context(create_upload_pool(settings))
    # One bound on SMTP sessions for every job in this process: the setting means what it says.
    mailer = await stack.enter_async_context(
        Mailer(settings.smtp, max_connections=settings.reminders.smtp_concurrency)
    )
    http = await stack.enter_async_context(aiohttp.ClientSession())
    return WorkerResources(settings=settings, pool=pool, upload_pool=upload_pool, mailer=mailer, http=http)


def build_activities(resources: WorkerResources, exports: ExportActivities) -> list[Callable[..., Any]]:
    """Every activity of the jobs' task queue. Each job adds its activity object's methods here."""
    activities: list[Callable[..., Any]] = []
    settings = resources.settings
    stock = StockActivities(
        resources.pool,
        resources.mailer,
        from_address=settings.smtp.from_address,
        fallback_recipient=settings.ops_email,
    )
    activities += [stock.due_stores, stock.reconcile_store, stock.alert_store]
    reminders = ReminderActivities(
        resources.pool, resources.mailer, build_sms_gateway(resources.http, settings.sms), settings
    )
    activities += [reminders.fetch_due_page, reminders.send_page, reminders.preview]
    activities += exports.status_methods()
    # The uploads run on their own queue (build_workers). Also registered here only for the uploads
    # that workers before that change scheduled on this queue: they finish instead of failing as
    # unregistered during a rollout. The export workflow never schedules them here any more.
    activities += exports.upload_methods()
    notices = ExportNoticeActivities(
        resources.pool, resources.mailer, settings.export, sender=settings.smtp.from_address
    )
    monthly = MonthlyExportActivities(resources.pool)
    activities += [notices.notify_completed, monthly.create_monthly, monthly.start_runs]
    alerts = OpsAlertActivities(
        resources.pool, resources.mailer, settings, OpsWebhook.from_settings(settings, resources.http)
    )
    activities += [alerts.alert_failed_run, alerts.alert_timed_out_runs, alerts.alert_failed_stores]
    return activities


def build_workers(
    client: Client,
    resources: WorkerResources,
    *,
    task_queue: str | None = None,
    workflows: Sequence[type] = (),
) -> tuple[Worker, Worker]:
    """The jobs' worker on `task_queue` and the exports' upload worker on its upload queue.

    Each runs at most as many activities as its pool has connections. An upload holds its
    connection (and an SFTP session) for as long as the destination takes, up to hours; on a
    queue and a pool of their own, any number of exports waiting for a slot wait in Temporal's
    queue, never in this process, and the short activities always find a slot and a connection.
    """
    settings = resources.settings
    queue = task_queue or settings.task_queue
    exports = ExportActivities.from_settings(resources.pool, resources.upload_pool, settings)
    jobs = Worker(
        client,
        task_queue=queue,
        workflows=[*WORKFLOWS, *workflows],
        activities=build_activities(resources, exports),
        max_concurrent_activities=settings.database.pool_max_size,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        plugins=plugins_for_worker(client),
    )
    uploads = Worker(
        client,
        task_queue=upload_task_queue(queue),
        activities=exports.upload_methods(),
        max_concurrent_activities=settings.export.upload_concurrency,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        plugins=plugins_for_worker(client),
    )
    return jobs, uploads


@asynccontextmanager
async def workers_running(
    client: Client,
    resources: WorkerResources,
    *,
    task_queue: str | None = None,
    workflows: Sequence[type] = (),
) -> AsyncIterator[None]:
    """`build_workers`' two workers, polling while the block runs."""
    jobs, uploads = build_workers(client, resources, task_queue=task_queue, workflows=workflows)
    async with jobs, uploads:
        try:
            yield
        finally:
            # Both drain at once: the whole shutdown takes GRACEFUL_SHUTDOWN, not twice that.
            await asyncio.gather(jobs.shutdown(), uploads.shutdown())


async def run_worker(settings: Settings, *, apply_schedule_registry: bool = True) -> None:
    """Run until SIGTERM/SIGINT, then let in-flight activities finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async with AsyncExitStack() as stack:
        # The runtime serves Prometheus metrics (SDK and business counters) for the process's life.
        client = await connect_temporal(runtime=worker_runtime(settings))
        # Before anything starts a workflow tagged with them: a fresh namespace works (or the
        # process ends here, saying which attributes to create and how).
        await ensure_search_attributes(client)
        resources = await open_resources(settings, stack)
        if apply_schedule_registry:
            outcomes = await apply_schedules(client, declared_schedules(settings), settings.task_queue)
            log.info("schedules applied: %s", outcomes or "none declared")
        async with workers_running(client, resources):
            log.info(
                "worker polling task queues %s and %s",
                settings.task_queue,
                upload_task_queue(settings.task_queue),
            )
            await stop.wait()
            log.info("stopping: waiting up to %s for in-flight activities", GRACEFUL_SHUTDOWN)


def main() -> None:
    """`python worker_main.py [--no-schedules]` is `petcare worker [--no-schedules]`."""
    parser = argparse.ArgumentParser(prog="worker_main.py", description=main.__doc__)
    add_no_schedules_option(parser)
    options = parser.parse_args()
    run_command(
        lambda settings: asyncio.run(run_worker(settings, apply_schedule_registry=not options.no_schedules)),
        holds_temporal_client=True,
    )


if __name__ == "__main__":
    main()
