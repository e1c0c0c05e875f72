"""Health beyond tests/test_api_health.py: runs started by the API and by the temporal CLI, runs that
complete and fail (lastRun, lastFailure), and a 503 when a real PostgreSQL server is stopped."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from api.app import create_app
from devstack.binaries import temporal_cli
from petcare.config import Settings
from petcare.jobs import APPOINTMENT_REMINDER, FINANCIAL_EXPORT, STOCK_RECONCILIATION, Job
from tests.support.api import AUTH, own_postgres
from tests.support.polling import poll

HEALTH = "/api/v1/workers/health"


async def entry_for(client: TestClient[Any, Any], job: Job) -> dict[str, Any]:
    response = await client.get(HEALTH)
    body = await response.json()
    found: dict[str, Any] = next(entry for entry in body["workers"] if entry["name"] == job.worker_name)
    return found


async def running_as(client: TestClient[Any, Any], job: Job, workflow_id: str) -> dict[str, Any] | None:
    entry = await entry_for(client, job)
    last = entry["lastRun"]
    return entry if entry["isRunning"] and last and last["workflowId"] == workflow_id else None


async def test_running_when_started_by_the_api(api_client: TestClient[Any, Any], dev_client: Client) -> None:
    response = await api_client.post("/api/v1/workers/appointment-reminder/trigger", headers=AUTH)
    assert response.status == 202, await response.text()
    started = await response.json()
    handle = dev_client.get_workflow_handle(started["workflowId"], run_id=started["runId"])
    try:
        entry = await poll(lambda: running_as(api_client, APPOINTMENT_REMINDER, started["workflowId"]))
        assert entry["lastRun"]["runId"] == started["runId"]
        assert entry["lastRun"]["status"] == "Running"
    finally:
        await handle.terminate(reason="test over")


async def test_running_when_started_by_the_temporal_cli(
    api_client: TestClient[Any, Any], dev_client: Client, task_queue: str
) -> None:
    workflow_id = f"ops-cli-{uuid.uuid4().hex[:8]}"
    address = dev_client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        str(temporal_cli()), "workflow", "start", "--address", address,
        "--type", STOCK_RECONCILIATION.workflow_type, "--task-queue", task_queue,
        "--workflow-id", workflow_id, "--search-attribute", f'Job="{STOCK_RECONCILIATION.key}"',
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    try:
        entry = await poll(lambda: running_as(api_client, STOCK_RECONCILIATION, workflow_id))
        assert entry["lastRun"]["closedAt"] is None
    finally:
        await dev_client.get_workflow_handle(workflow_id).terminate(reason="test over")


@workflow.defn(name=FINANCIAL_EXPORT.workflow_type)
class StandInExport:
    """Stands in for the export workflow under its type name: health only reads visibility."""

    @workflow.run
    async def run(self, fail: bool) -> str:
        if fail:
            raise ApplicationError("SFTP host key rejected for sftp.example", type="SftpHostKeyRejected")
        return "done"


async def test_last_run_and_last_failure_after_complete_and_fail(
    api_client: TestClient[Any, Any], dev_client: Client, task_queue: str
) -> None:
    ok_id, failed_id = (f"ops-health-{name}-{uuid.uuid4().hex[:8]}" for name in ("ok", "failed"))
    async with Worker(
        dev_client,
        task_queue=task_queue,
        workflows=[StandInExport],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        failed = await dev_client.start_workflow(StandInExport.run, True, id=failed_id, task_queue=task_queue)
        with pytest.raises(WorkflowFailureError):
            await failed.result()

        async def failure_shown() -> dict[str, Any] | None:
            entry = await entry_for(api_client, FINANCIAL_EXPORT)
            failure = entry["lastFailure"]
            return entry if failure and failure["workflowId"] == failed_id else None

        entry = await poll(failure_shown)
        assert entry["lastFailure"]["runId"] == failed.result_run_id
        assert entry["lastFailure"]["status"] == "Failed"
        assert entry["lastFailure"]["type"] == "SftpHostKeyRejected"
        assert entry["lastFailure"]["closedAt"]
        # Public route: no message (it can name hosts, users, paths); the runs route has it.
        assert "message" not in entry["lastFailure"]
        assert "sftp.example" not in json.dumps(entry)
        run = await (await api_client.get(f"/api/v1/workers/runs/{failed_id}", headers=AUTH)).json()
        assert run["failure"] == {
            "message": "SFTP host key rejected for sftp.example",
            "type": "SftpHostKeyRejected",
        }

        completed = await dev_client.start_workflow(StandInExport.run, False, id=ok_id, task_queue=task_queue)
        assert await completed.result() == "done"

        async def completion_shown() -> dict[str, Any] | None:
            entry = await entry_for(api_client, FINANCIAL_EXPORT)
            last = entry["lastRun"]
            return entry if last and last["workflowId"] == ok_id and last["status"] == "Completed" else None

        entry = await poll(completion_shown)
        assert entry["lastRun"]["closedAt"] >= entry["lastRun"]["startedAt"]
        # A later success does not hide the last failure from operators.
        assert entry["lastFailure"]["workflowId"] == failed_id


async def test_503_when_postgresql_is_stopped_and_200_once_it_is_back(
    aiohttp_client: AiohttpClient, api_settings: Settings, dev_client: Client, tmp_path: Path
) -> None:
    async with own_postgres(tmp_path / "pg") as (server, pool):
        client = await aiohttp_client(create_app(api_settings, temporal=dev_client, pool=pool))
        response = await client.get(HEALTH)
        assert response.status == 200, await response.text()

        await asyncio.to_thread(server.stop)

        async def unhealthy() -> dict[str, Any] | None:
            # Polled: the cached answer stands until the cache lets a fresh probe through.
            response = await client.get(HEALTH)
            return await response.json() if response.status == 503 else None

        body = await poll(unhealthy, timeout=10, every=0.1)
        assert body["database"] == {"status": "unreachable"}
        assert body["temporal"] == {"status": "ok"}
        assert len(body["workers"]) == 3

        await asyncio.to_thread(server.start)

        async def healthy_again() -> bool:
            return (await client.get(HEALTH)).status == 200

        await poll(healthy_again, timeout=20)
