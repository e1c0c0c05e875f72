"""GET /api/v1/workers/runs: recent runs from visibility, filtered by job and status, bounded."""

from __future__ import annotations

import uuid
from typing import Any, get_args

from aiohttp.test_utils import TestClient
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api.workers import JobKey, RunsQuery, visibility_query
from petcare.jobs import FINANCIAL_EXPORT, JOB_ATTRIBUTE, JOBS, STOCK_RECONCILIATION
from tests.support.api import AUTH
from tests.support.polling import poll

RUNS = "/api/v1/workers/runs"


async def get_runs(client: TestClient[Any, Any], query: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(f"{RUNS}?{query}", headers=AUTH)
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_lists_recent_runs_by_job_and_status(
    api_client: TestClient[Any, Any], dev_client: Client, task_queue: str
) -> None:
    prefix = f"ops-runs-{uuid.uuid4().hex[:8]}"
    handles: list[WorkflowHandle[Any, Any]] = []
    # Nobody polls the test's queue: these stay Running until terminated.
    for index in range(3):
        handles.append(
            await dev_client.start_workflow(
                FINANCIAL_EXPORT.workflow_type,
                id=f"{prefix}-export-{index}",
                task_queue=task_queue,
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(JOB_ATTRIBUTE, FINANCIAL_EXPORT.key)]
                ),
            )
        )
    # Started without the Job attribute, as an operator's `temporal workflow start` might.
    handles.append(
        await dev_client.start_workflow(
            STOCK_RECONCILIATION.workflow_type, id=f"{prefix}-stock", task_queue=task_queue
        )
    )
    await handles[0].terminate(reason="test: one closed run")
    try:

        async def mine(query: str, expected: int) -> list[dict[str, Any]] | None:
            status, body = await get_runs(api_client, query)
            assert status == 200, body
            runs = [run for run in body["runs"] if run["workflowId"].startswith(prefix)]
            return runs if len(runs) == expected else None

        running = await poll(lambda: mine("job=financial-export&status=Running&limit=100", 2))
        assert {run["workflowId"] for run in running} == {f"{prefix}-export-1", f"{prefix}-export-2"}
        assert all(
            run["job"] == FINANCIAL_EXPORT.key and run["type"] == FINANCIAL_EXPORT.workflow_type
            for run in running
        )
        assert all(run["status"] == "Running" and run["closedAt"] is None for run in running)
        # Newest first.
        assert [run["workflowId"] for run in running] == [f"{prefix}-export-2", f"{prefix}-export-1"]

        terminated = await poll(lambda: mine("job=financial-export&status=Terminated&limit=100", 1))
        assert terminated[0]["workflowId"] == f"{prefix}-export-0"
        assert terminated[0]["closedAt"] is not None

        stock = await poll(lambda: mine("job=stock-reconciliation&limit=100", 1))
        assert stock[0]["job"] is None  # found by its workflow type

        status, body = await get_runs(api_client, "limit=2")
        assert status == 200
        assert len(body["runs"]) == 2
        status, body = await get_runs(api_client, "")
        assert status == 200
        assert len(body["runs"]) <= 20
    finally:
        for handle in handles[1:]:
            await handle.terminate(reason="test over")


async def test_invalid_filters_are_422(api_client: TestClient[Any, Any]) -> None:
    for query, field in [
        ("status=Exploded", "status"),
        ("job=laundry", "job"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=many", "limit"),
        ("colour=blue", "colour"),
    ]:
        status, body = await get_runs(api_client, query)
        assert status == 422, query
        assert body["error"]["message"].startswith(f"invalid request: {field}:"), body
    response = await api_client.get(RUNS)
    assert response.status == 401


def test_visibility_query_text() -> None:
    assert visibility_query(RunsQuery()) == ""
    assert visibility_query(RunsQuery(job="financial-export", status="Failed")) == (
        '(Job="financial-export" OR WorkflowType="FinancialExportWorkflow") AND ExecutionStatus="Failed"'
    )


def test_the_job_filter_accepts_exactly_the_jobs() -> None:
    # The literal feeds the OpenAPI enum; a job added to petcare.jobs must be added there too.
    assert set(get_args(JobKey)) == {job.key for job in JOBS}
