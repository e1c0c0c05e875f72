"""The Temporal worker: the one place that wires clients, pools and activities together."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import pydantic
from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from activities.alerts import OpsAlertActivities
from activities.exports import ExportActivities
from activities.reminders import ReminderActivities
from activities.reminders import build_gateway as build_sms_gateway
from activities.stock import StockActivities
from petcare.config import Settings
from petcare.db import create_pool
from petcare.mail import Mailer
from petcare.metrics import BusinessMetricsInterceptor, worker_runtime
from petcare.schedules import apply_schedules, declared_schedules
from petcare.temporal_client import connect_temporal, ensure_search_attributes
from workflows import WORKFLOWS
from workflows.alerts import OpsAlertInterceptor

log = logging.getLogger("petcare.worker")

# How long in-flight activities get to finish after SIGTERM before the worker gives up on them
# (Temporal then retries them on another worker once their timeout or heartbeat lapses).
GRACEFUL_SHUTDOWN = timedelta(seconds=30)


@dataclass(frozen=True)
class WorkerResources:
    """What activities are built with; each resource is owned by `run_worker`'s exit stack."""

    settings: Settings
    pool: asyncpg.Pool
    mailer: Mailer
    http: aiohttp.ClientSession


def build_activities(resources: WorkerResources) -> list[Callable[..., Any]]:
    """Every activity the worker registers. Each job adds its activity object's methods here."""
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
    activities += ExportActivities.from_settings(resources.pool, settings).methods()
    alerts = OpsAlertActivities(resources.pool, resources.mailer, settings)
    activities += [alerts.alert_failed_run, alerts.alert_timed_out_runs]
    return activities


def build_worker(
    client: Client,
    resources: WorkerResources,
    *,
    task_queue: str | None = None,
    workflows: Sequence[type] = (),
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or resources.settings.task_queue,
        workflows=[*WORKFLOWS, *workflows],
        activities=build_activities(resources),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        workflow_failure_exception_types=WORKFLOW_FAILURE_EXCEPTION_TYPES,
        interceptors=worker_interceptors(),
    )


# The replay of recorded histories (tests/test_versioning.py) runs workflows with these too.
# Bad input fails the run with a clear error instead of retrying its task forever.
WORKFLOW_FAILURE_EXCEPTION_TYPES: list[type[BaseException]] = [pydantic.ValidationError]


def worker_interceptors() -> list[Interceptor]:
    """One alert email per failed job run; business counters from activity results."""
    return [OpsAlertInterceptor(), BusinessMetricsInterceptor()]


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
        pool = await stack.enter_async_context(create_pool(settings))
        # One bound on SMTP sessions for every job in this process: the setting means what it says.
        mailer = await stack.enter_async_context(
            Mailer(settings.smtp, max_connections=settings.reminders.smtp_concurrency)
        )
        http = await stack.enter_async_context(aiohttp.ClientSession())
        resources = WorkerResources(settings=settings, pool=pool, mailer=mailer, http=http)
        if apply_schedule_registry:
            outcomes = await apply_schedules(client, declared_schedules(settings), settings.task_queue)
            log.info("schedules applied: %s", outcomes or "none declared")
        worker = build_worker(client, resources)
        async with worker:
            log.info("worker polling task queue %s", settings.task_queue)
            await stop.wait()
            log.info("stopping: waiting up to %s for in-flight activities", GRACEFUL_SHUTDOWN)


def main() -> None:
    """`python worker_main.py` is `petcare worker`."""
    from petcare.cli import main as petcare_main

    petcare_main(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    main()
