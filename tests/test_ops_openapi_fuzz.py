"""Schemathesis against the live API (real app factory on a TCP port, real PostgreSQL, the dev
server and a worker): generated requests for every documented operation, and not one 5xx."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import hypothesis
import pytest_asyncio
import requests
import schemathesis
from aiohttp import web
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.generation.case import Case
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleState,
)

from api.app import create_app
from petcare.config import Settings
from petcare.mail import Mailer
from tests.support.api import AUTH
from worker_main import WorkerResources, workers_running

# Per operation; about 15 operations, so the whole run stays well under a minute.
EXAMPLES = 12
# Cases tried first, whatever the generator finds: extreme dates and times that once made 5xx.
EXTREME_PERIODS = [
    {"periodStart": "9999-12-01", "periodEnd": "9999-12-31", "format": "csv"},
    {"periodStart": "0001-01-01", "periodEnd": "0001-01-31", "format": "json"},
    {"periodStart": "2999-12-01", "periodEnd": "2999-12-31", "format": "csv"},  # valid, the last month
]
EXTREME_TIMES = [
    {"start": "0001-01-01T00:00:00+01:00", "end": "0001-01-02T00:00:00+01:00"},
    {"start": "9999-12-30T00:00:00-01:00", "end": "9999-12-31T23:59:59-01:00"},
]


def explicit_cases(schedule_id: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "POST /api/v1/financial-exports": [{"body": body} for body in EXTREME_PERIODS],
        "POST /api/v1/schedules/{scheduleId}/backfill": [
            {"path_parameters": {"scheduleId": schedule_id}, "body": body} for body in EXTREME_TIMES
        ],
    }


@pytest_asyncio.fixture
async def live_api(
    api_settings: Settings, dev_client: Client, pool: asyncpg.Pool, task_queue: str
) -> AsyncIterator[str]:
    """The API on a free loopback port and a worker on the test's own queue (so dry runs and
    triggered runs really run and finish); yields the base URL."""
    runner = web.AppRunner(create_app(api_settings, temporal=dev_client, pool=pool))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with Mailer(api_settings.smtp) as mailer, aiohttp.ClientSession() as http:
        resources = WorkerResources(
            settings=api_settings, pool=pool, upload_pool=pool, mailer=mailer, http=http
        )
        async with workers_running(dev_client, resources, task_queue=task_queue):
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                await runner.cleanup()


def fuzz(base_url: str, schedule_id: str) -> dict[str, int]:
    """Blocking (requests + hypothesis): run in a thread while the app serves on the test's loop."""
    document = requests.get(f"{base_url}/api/v1/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"the OpenAPI document is invalid: {result.err()}")
        operation = result.ok()
        label = operation.label

        def check(case: Case[Any]) -> None:
            response = case.call(base_url=base_url, session=session, headers=AUTH, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])
            calls[label] = calls.get(label, 0) + 1  # noqa: B023 - check() runs before the next loop turn

        run = hypothesis.given(case=operation.as_strategy())(check)
        for example in explicit_cases(schedule_id).get(label, []):
            run = hypothesis.example(case=operation.Case(media_type="application/json", **example))(run)
        hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )(run)()
    return calls


async def test_no_generated_request_gets_a_5xx(
    live_api: str, pool: asyncpg.Pool, dev_client: Client, task_queue: str
) -> None:
    # An export another system recorded with extreme dates, for the trigger and process routes.
    await pool.execute(
        """INSERT INTO financial_exports (period_start, period_end, format)
           VALUES ('9999-12-01', '9999-12-31', 'csv')"""
    )
    # A schedule of the test's own, so the backfill examples reach Temporal (not a 404).
    schedule_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    schedule = await dev_client.create_schedule(
        schedule_id,
        Schedule(
            action=ScheduleActionStartWorkflow("FuzzIdle", id=f"{schedule_id}-run", task_queue=task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1))]),
            state=ScheduleState(paused=True),
        ),
    )
    try:
        calls: dict[str, Any] = await asyncio.to_thread(fuzz, live_api, schedule_id)
    finally:
        await schedule.delete()
    # Every route of the document was exercised, the ops ones included.
    for label in (
        "GET /api/v1/workers/health",
        "GET /api/v1/workers/runs",
        "GET /api/v1/schedules",
        "POST /api/v1/schedules/{scheduleId}/backfill",
        "GET /metrics",
        "GET /api/v1/financial-exports",
        "GET /api/v1/financial-exports/{id}/files/{name}",
    ):
        assert calls.get(label, 0) >= 1, (label, calls)
    assert len(calls) >= 12, calls
