"""GET /api/v1/workers/health against real Temporal dev servers and real PostgreSQL."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from devstack.ports import free_port
from devstack.postgres import with_database
from devstack.temporal_server import temporal_dev_server
from petcare.config import Settings
from petcare.jobs import APPOINTMENT_REMINDER, JOBS, STOCK_RECONCILIATION
from tests.support.api import AUTH
from tests.support.polling import poll

HEALTH = "/api/v1/workers/health"
WORKER_KEYS = {"name", "isRunning", "lastRun", "nextRunAt", "schedulePaused", "lastFailure"}


async def get_health(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.get(HEALTH)
    body: dict[str, Any] = await response.json()
    return response.status, body


def worker(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(entry for entry in body["workers"] if entry["name"] == name)
    return found


async def test_health_shows_a_running_job_whoever_started_it(
    api_client: TestClient[Any, Any], dev_client: Client, task_queue: str
) -> None:
    # A run of the reminder job's workflow type on a queue no worker polls: Running until terminated,
    # started here by a plain client, as the CLI or another process would.
    workflow_id = f"api-health-{uuid.uuid4().hex[:8]}"
    handle = await dev_client.start_workflow(
        APPOINTMENT_REMINDER.workflow_type, id=workflow_id, task_queue=task_queue
    )
    try:

        async def running() -> dict[str, Any] | None:
            status, body = await get_health(api_client)
            entry = worker(body, APPOINTMENT_REMINDER.worker_name)
            last = entry["lastRun"]
            if entry["isRunning"] and last and last["workflowId"] == workflow_id:
                assert status == 200
                return body
            return None

        body = await poll(running)
    finally:
        await handle.terminate(reason="test over")

    assert body["temporal"] == {"status": "ok"}
    assert body["database"] == {"status": "ok"}
    assert [entry["name"] for entry in body["workers"]] == [job.worker_name for job in JOBS]
    for entry in body["workers"]:
        assert set(entry) == WORKER_KEYS
    last_run = worker(body, APPOINTMENT_REMINDER.worker_name)["lastRun"]
    assert last_run["status"] == "Running"
    assert last_run["runId"] == handle.result_run_id
    assert last_run["closedAt"] is None
    assert last_run["startedAt"]

    async def terminated() -> bool:
        _, body = await get_health(api_client)
        last = worker(body, APPOINTMENT_REMINDER.worker_name)["lastRun"]
        return bool(last["workflowId"] == workflow_id and last["status"] == "Terminated" and last["closedAt"])

    await poll(terminated)


async def test_health_reports_schedules_then_503_when_temporal_stops(
    aiohttp_client: AiohttpClient, api_settings: Settings, pool: asyncpg.Pool, task_queue: str
) -> None:
    # A Temporal server of this test's own, so stopping it (and its schedule) touches nobody else.
    async with temporal_dev_server() as env:
        await env.client.create_schedule(
            STOCK_RECONCILIATION.key,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    STOCK_RECONCILIATION.workflow_type, id="stock-reconciliation", task_queue=task_queue
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
                state=ScheduleState(paused=True, note="paused by the API test"),
            ),
        )
        client = await aiohttp_client(create_app(api_settings, temporal=env.client, pool=pool))
        status, body = await get_health(client)
        assert status == 200, body
        stock = worker(body, STOCK_RECONCILIATION.worker_name)
        assert stock["schedulePaused"] is True
        assert stock["nextRunAt"] is not None
        assert stock["isRunning"] is False
        assert stock["lastRun"] is None
        reminder = worker(body, APPOINTMENT_REMINDER.worker_name)
        assert reminder["schedulePaused"] is None
        assert reminder["nextRunAt"] is None

        # A run started by the schedule (nobody polls its queue, so it stays Running).
        await env.client.get_schedule_handle(STOCK_RECONCILIATION.key).trigger()

        async def scheduled_run_shows() -> dict[str, Any] | None:
            _, body = await get_health(client)
            entry = worker(body, STOCK_RECONCILIATION.worker_name)
            return entry if entry["isRunning"] and entry["lastRun"] else None

        stock = await poll(scheduled_run_shows)
        # Scheduled runs carry the schedule's workflow id plus a timestamp suffix.
        assert stock["lastRun"]["workflowId"].startswith("stock-reconciliation-")
        assert stock["lastRun"]["status"] == "Running"

        await env.shutdown()

        async def unavailable() -> tuple[int, dict[str, Any], float] | None:
            started = time.monotonic()
            status, body = await get_health(client)
            return (status, body, time.monotonic() - started) if status == 503 else None

        status, body, elapsed = await poll(unavailable, timeout=10)
        assert body["temporal"] == {"status": "unreachable"}
        assert body["database"] == {"status": "ok"}
        assert [entry["name"] for entry in body["workers"]] == [job.worker_name for job in JOBS]
        assert elapsed < 4, "health must answer promptly while Temporal is down"

        response = await client.get("/api/v1/workers/runs/anything", headers=AUTH)
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "temporal_unavailable"


async def test_health_503_when_the_api_starts_with_temporal_down(
    aiohttp_client: AiohttpClient,
    api_settings: Settings,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The app owns its client here (lazy): the API comes up even though nothing listens.
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    client = await aiohttp_client(create_app(api_settings, pool=pool))
    status, body = await get_health(client)
    assert status == 503
    assert body["temporal"] == {"status": "unreachable"}
    assert body["database"] == {"status": "ok"}


async def test_health_503_when_postgresql_is_unreachable(
    aiohttp_client: AiohttpClient, api_settings: Settings, dev_client: Client
) -> None:
    # The app owns its pool here, pointed at a port where no PostgreSQL listens: it still starts.
    dead = api_settings.model_copy(
        update={"database_url": SecretStr(f"postgresql://postgres@127.0.0.1:{free_port()}/petcare")}
    )
    client = await aiohttp_client(create_app(dead, temporal=dev_client))
    status, body = await get_health(client)
    assert status == 503
    assert body["database"] == {"status": "unreachable"}
    assert body["temporal"] == {"status": "ok"}


async def test_a_failed_check_that_is_no_outage_is_error_not_unreachable(
    aiohttp_client: AiohttpClient,
    api_settings: Settings,
    dev_server: WorkflowEnvironment,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Both servers answer, but refuse: a namespace that does not exist, a database that does not.
    no_namespace = await Client.connect(
        dev_server.client.service_client.config.target_host,
        namespace=f"missing-{uuid.uuid4().hex[:8]}",
        data_converter=pydantic_data_converter,
    )
    missing_database = with_database(database_url, f"missing_{uuid.uuid4().hex[:8]}")
    async with asyncpg.create_pool(missing_database, min_size=0, max_size=1) as pool:
        client = await aiohttp_client(create_app(api_settings, temporal=no_namespace, pool=pool))
        status, body = await get_health(client)
    assert status == 503
    assert body["temporal"] == {"status": "error"}
    assert body["database"] == {"status": "error"}
    # Logged with the real cause for whoever has to fix it.
    logged = " ".join(record.getMessage() for record in caplog.records if record.name == "api.workers")
    assert "NamespaceNotFound" in logged or "not found" in logged
    assert "InvalidCatalogNameError" in logged
