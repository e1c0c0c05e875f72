"""Health sees the workers: pollers on the task queue (gone once the worker stops: `no_pollers`,
still 200, 503 with `strict=true`), the API's pollers gauge, and a run stuck on a NonDeterminismError
as the job's `lastFailure` (also found with the documented `temporal workflow list` query)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from api.app import create_app
from devstack.binaries import temporal_cli
from petcare import visibility
from petcare.config import ApiSettings, Settings
from petcare.jobs import STOCK_RECONCILIATION
from tests.support.monitoring import POLLER_MAX_AGE_SECONDS, quick_poll_server
from tests.support.polling import poll

__all__ = ["quick_poll_server"]  # the fixture, used by name

HEALTH = "/api/v1/workers/health"


@activity.defn(name="monitoring_test_noop")
async def noop() -> str:
    return "done"


@activity.defn(name="monitoring_test_other")
async def other() -> str:
    return "other"


async def health_client(
    aiohttp_client: AiohttpClient, api_settings: Settings, client: Client, pool: asyncpg.Pool
) -> TestClient[Any, Any]:
    api = ApiSettings.model_validate(
        api_settings.api.model_dump() | {"poller_max_age_seconds": POLLER_MAX_AGE_SECONDS}
    )
    settings = api_settings.model_copy(update={"api": api})
    return await aiohttp_client(create_app(settings, temporal=client, pool=pool))


async def queue_health(client: TestClient[Any, Any], *, strict: bool = False) -> tuple[int, dict[str, Any]]:
    response = await client.get(HEALTH, params={"strict": "true"} if strict else {})
    body = await response.json()
    return response.status, body["taskQueue"]


async def test_health_reports_pollers_and_no_pollers_once_the_worker_stopped(
    aiohttp_client: AiohttpClient,
    api_settings: Settings,
    quick_poll_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    temporal = quick_poll_server.client
    client = await health_client(aiohttp_client, api_settings, temporal, pool)

    status, queue = await queue_health(client)
    assert (status, queue) == (200, {"name": task_queue, "pollers": 0, "status": "no_pollers"})

    async with Worker(temporal, task_queue=task_queue, activities=[noop]):

        async def polled() -> dict[str, Any] | None:
            status, queue = await queue_health(client, strict=True)
            return queue if status == 200 and queue["status"] == "ok" else None

        queue = await poll(polled, what="the worker seen polling")
        assert queue == {"name": task_queue, "pollers": 1, "status": "ok"}
        metrics = await (await client.get("/metrics")).text()
        assert f'petcare_task_queue_pollers{{task_queue="{task_queue}"}} 1.0' in metrics

    # The server keeps listing the stopped worker; health stops counting it after the max age.
    async def gone() -> dict[str, Any] | None:
        status, queue = await queue_health(client)
        return queue if status == 200 and queue["status"] == "no_pollers" else None

    queue = await poll(gone, timeout=POLLER_MAX_AGE_SECONDS + 10, what="the stopped worker dropped")
    assert queue == {"name": task_queue, "pollers": 0, "status": "no_pollers"}
    # Readiness does not depend on the workers; a strict probe does.
    status, _ = await queue_health(client, strict=True)
    assert status == 503
    metrics = await (await client.get("/metrics")).text()
    assert f'petcare_task_queue_pollers{{task_queue="{task_queue}"}} 0.0' in metrics
    assert "petcare_temporal_up 1.0" in metrics
    response = await client.get(HEALTH, params={"strict": "maybe"})
    assert response.status == 422


@workflow.defn(name=STOCK_RECONCILIATION.workflow_type, sandboxed=False)
class FirstVersion:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=10))
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name="poke")
    def poke(self) -> None:
        """A new workflow task, replayed by whichever code the worker has."""


@workflow.defn(name=STOCK_RECONCILIATION.workflow_type, sandboxed=False)
class IncompatibleVersion:
    """A bad deploy: the first command is now another activity, so replaying the history fails."""

    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(other, start_to_close_timeout=timedelta(seconds=10))
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name="poke")
    def poke(self) -> None:
        """As in the first version."""


async def test_a_run_stuck_on_non_determinism_is_the_jobs_last_failure(
    aiohttp_client: AiohttpClient,
    api_settings: Settings,
    quick_poll_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    temporal = quick_poll_server.client
    client = await health_client(aiohttp_client, api_settings, temporal, pool)
    workflow_id = f"monitoring-nde-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {
        "task_queue": task_queue,
        "activities": [noop, other],
        "workflow_runner": UnsandboxedWorkflowRunner(),
        "max_cached_workflows": 0,  # every task replays the history, as after a restart
    }
    async with Worker(temporal, workflows=[FirstVersion], **options):
        handle = await temporal.start_workflow(FirstVersion.run, id=workflow_id, task_queue=task_queue)
        await poll(lambda: _activity_done(handle), what="the first version's activity")
    try:
        async with Worker(temporal, workflows=[IncompatibleVersion], **options):
            await handle.signal(FirstVersion.poke)

            async def stuck() -> dict[str, Any] | None:
                body = await (await client.get(HEALTH)).json()
                entry = next(e for e in body["workers"] if e["name"] == STOCK_RECONCILIATION.worker_name)
                failure = entry["lastFailure"]
                return failure if failure and failure["workflowId"] == workflow_id else None

            failure = await poll(stuck, timeout=60, every=0.5, what="the stuck run in health")
        assert failure["status"] == "Running"
        assert failure["closedAt"] is None
        assert failure["type"] == "NonDeterministicError"
        assert failure["runId"] == handle.result_run_id

        # The documented query (docs/operations.md) finds it without the API too.
        query = visibility.all_of(
            visibility.equals(visibility.EXECUTION_STATUS, "Running"),
            visibility.one_of(visibility.REPORTED_PROBLEMS, visibility.WORKFLOW_TASK_PROBLEMS),
        )
        process = await asyncio.create_subprocess_exec(
            str(temporal_cli()), "workflow", "list", "--address",
            temporal.service_client.config.target_host, "--query", query, "--output", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output, errors = await process.communicate()
        assert process.returncode == 0, errors.decode()
        assert workflow_id in {run["execution"]["workflowId"] for run in json.loads(output)}
    finally:
        await handle.terminate(reason="test over")


async def _activity_done(handle: WorkflowHandle[Any, Any]) -> bool:
    description = await handle.describe()
    # Started, a task, the activity scheduled, started, completed: the first version's commands.
    return not description.raw_description.pending_activities and description.history_length >= 7
