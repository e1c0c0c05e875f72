"""GET /api/v1/workers/runs/{workflowId}: completed, failed, running and unknown workflows."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.support.api import AUTH


@workflow.defn(name="ApiTestGreeting")
class GreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> dict[str, Any]:
        return {"greeting": f"hello {name}", "count": 2}


@workflow.defn(name="ApiTestFailing")
class FailingWorkflow:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("export period is empty", type="EmptyPeriod", non_retryable=True)


def run_url(workflow_id: str) -> str:
    return f"/api/v1/workers/runs/{workflow_id}"


async def test_completed_and_failed_runs(
    api_client: TestClient[Any, Any], dev_client: Client, task_queue: str
) -> None:
    greeting_id = f"api-runs-greeting-{uuid.uuid4().hex[:8]}"
    failing_id = f"api-runs-failing-{uuid.uuid4().hex[:8]}"
    # Unsandboxed: these test-only workflows live in a module that imports the whole API.
    async with Worker(
        dev_client,
        task_queue=task_queue,
        workflows=[GreetingWorkflow, FailingWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        greeting = await dev_client.start_workflow(
            GreetingWorkflow.run, "Rex", id=greeting_id, task_queue=task_queue
        )
        await greeting.result()
        failing = await dev_client.start_workflow(FailingWorkflow.run, id=failing_id, task_queue=task_queue)
        with pytest.raises(WorkflowFailureError):
            await failing.result()

    response = await api_client.get(run_url(greeting_id), headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body.pop("startedAt") <= body.pop("closedAt")
    assert body == {
        "workflowId": greeting_id,
        "runId": greeting.result_run_id,
        "type": "ApiTestGreeting",
        "status": "Completed",
        "result": {"greeting": "hello Rex", "count": 2},
        "failure": None,
    }

    response = await api_client.get(run_url(failing_id), headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "Failed"
    assert body["type"] == "ApiTestFailing"
    assert body["closedAt"] is not None
    assert body["result"] is None
    assert body["failure"] == {"message": "export period is empty", "type": "EmptyPeriod"}


async def test_running_run_has_no_result_yet(
    api_client: TestClient[Any, Any], dev_client: Client, task_queue: str
) -> None:
    workflow_id = f"api-runs-running-{uuid.uuid4().hex[:8]}"
    # Nobody polls this queue: the run stays Running.
    handle = await dev_client.start_workflow("ApiTestGreeting", "Rex", id=workflow_id, task_queue=task_queue)
    try:
        response = await api_client.get(run_url(workflow_id), headers=AUTH)
        assert response.status == 200
        body = await response.json()
        assert body["status"] == "Running"
        assert body["closedAt"] is None
        assert body["result"] is None
        assert body["failure"] is None
    finally:
        await handle.terminate(reason="test over")

    body = await (await api_client.get(run_url(workflow_id), headers=AUTH)).json()
    assert body["status"] == "Terminated"
    assert body["failure"]["type"] == "TerminatedError"
    assert body["failure"]["message"] == "test over"


async def test_unknown_workflow_is_404(api_client: TestClient[Any, Any]) -> None:
    response = await api_client.get(run_url(f"api-runs-unknown-{uuid.uuid4().hex}"), headers=AUTH)
    assert response.status == 404
    body = await response.json()
    assert body["error"]["code"] == "not_found"
    assert "api-runs-unknown-" in body["error"]["message"]
