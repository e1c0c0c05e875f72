"""The production worker in the test process: every workflow, the real activities, interceptors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import ClientSession
from temporalio.client import Client

from petcare.config import Settings
from tests.support.reminder_data import reminder_mailer
from worker_main import WorkerResources, workers_running


@asynccontextmanager
async def real_worker(
    client: Client,
    settings: Settings,
    pool: asyncpg.Pool,
    task_queue: str | None = None,
    *,
    upload_pool: asyncpg.Pool | None = None,
) -> AsyncIterator[None]:
    """Built as worker_main builds it, polling `task_queue` (default: the settings' queue) and its
    upload queue; the exports' COPYs use `upload_pool` (default: `pool`)."""
    async with reminder_mailer(settings) as mailer, ClientSession() as http:
        resources = WorkerResources(
            settings=settings, pool=pool, upload_pool=upload_pool or pool, mailer=mailer, http=http
        )
        async with workers_running(client, resources, task_queue=task_queue or settings.task_queue):
            yield
