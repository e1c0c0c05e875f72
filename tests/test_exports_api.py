"""Financial export routes over the real app factory, the Temporal dev server and PostgreSQL."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from temporalio.client import Client

from activities.exports.destinations import LocalDestination
from activities.exports.streaming import StreamLimits
from api.app import create_app
from devstack.ports import free_port
from petcare.config import Settings
from petcare.models.exports import export_workflow_id
from petcare.temporal_client import connect_temporal
from tests.support.api import AUTH
from tests.support.exports import export_worker as exports_worker
from tests.support.exports import request_export, seed
from tests.support.polling import poll

EXPORTS = "/api/v1/financial-exports"
PROCESS = "/api/v1/workers/financial-export/process"
TRIGGER = "/api/v1/workers/financial-export/trigger"


@pytest.fixture
def client(api_client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    # Workflows go to this test's own task queue, where only this test's worker polls.
    return api_client


def export_worker(
    dev_client: Client, task_queue: str, pool: asyncpg.Pool, root: Path
) -> AbstractAsyncContextManager[None]:
    return exports_worker(dev_client, task_queue, pool, LocalDestination(root), StreamLimits())


async def status_of(client: TestClient[Any, Any], export_id: str) -> dict[str, Any]:
    response = await client.get(f"{EXPORTS}/{export_id}", headers=AUTH)
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


VALID = {"periodStart": "2025-10-01", "periodEnd": "2025-10-31", "format": "csv"}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ("", 400, "empty"),
        ("{not json", 400, "not valid JSON"),
        ({**VALID, "periodStart": "2025-13-01"}, 422, "periodStart"),
        ({**VALID, "periodStart": 1_700_000_000}, 422, "ISO date"),
        ({**VALID, "periodStart": "2025-11-01"}, 422, "periodStart must not be after periodEnd"),
        ({**VALID, "format": "xlsx"}, 422, "format"),
        ({**VALID, "storeId": "store-1"}, 422, "storeId"),
        ({**VALID, "storeId": str(uuid4())}, 422, "no store with id"),
        ({**VALID, "period": "october"}, 422, "period"),
        ({"periodStart": "2025-10-01", "format": "csv"}, 422, "periodEnd"),
        # Once a 500 (the Web UI summary overflowed past 9999-12-31) leaving a stuck pending row.
        ({**VALID, "periodStart": "9999-12-01", "periodEnd": "9999-12-31"}, 422, "periodStart"),
        ({**VALID, "periodEnd": "3000-01-01"}, 422, "periodEnd: Value error, must be from 2000-01-01"),
        ({**VALID, "periodStart": "0001-01-01"}, 422, "periodStart: Value error, must be from 2000-01-01"),
        ({**VALID, "periodStart": "1999-12-31"}, 422, "periodStart"),
    ],
)
async def test_bad_export_requests_are_4xx_with_a_message(
    client: TestClient[Any, Any], pool: asyncpg.Pool, body: Any, status: int, fragment: str
) -> None:
    if isinstance(body, str):
        response = await client.post(EXPORTS, data=body, headers=AUTH)
    else:
        response = await client.post(EXPORTS, json=body, headers=AUTH)
    assert response.status == status
    assert fragment in (await response.json())["error"]["message"]
    assert await pool.fetchval("SELECT count(*) FROM financial_exports") == 0  # nothing recorded


async def test_bad_ids_and_unknown_exports(client: TestClient[Any, Any], pool: asyncpg.Pool) -> None:
    unknown = uuid4()
    assert (await client.get(f"{EXPORTS}/not-a-uuid", headers=AUTH)).status == 400
    assert (await client.get(f"{EXPORTS}/{unknown}", headers=AUTH)).status == 404
    assert (await client.post(f"{PROCESS}/not-a-uuid", headers=AUTH)).status == 400
    missing = await client.post(f"{PROCESS}/{unknown}", headers=AUTH)
    assert missing.status == 404
    assert str(unknown) in (await missing.json())["error"]["message"]
    async with pool.acquire() as connection:
        export_id = await request_export(connection)
    bad_force = await client.post(f"{PROCESS}/{export_id}?force=maybe", headers=AUTH)
    assert bad_force.status == 422
    assert "force" in (await bad_force.json())["error"]["message"]
    assert (await client.post(EXPORTS, json=VALID)).status == 401


async def test_request_then_read_the_completed_export(
    client: TestClient[Any, Any], dev_client: Client, task_queue: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with pool.acquire() as connection:
        seeded = await seed(connection)
    response = await client.post(
        EXPORTS, json={**VALID, "format": "json", "storeId": str(seeded.tokyo)}, headers=AUTH
    )
    assert response.status == 202
    accepted = await response.json()
    assert accepted["status"] == "pending"
    assert accepted["workflowId"] == export_workflow_id(UUID(accepted["id"]))
    assert (await status_of(client, accepted["id"]))["status"] == "pending"  # no worker yet

    async with export_worker(dev_client, task_queue, pool, tmp_path):
        await dev_client.get_workflow_handle(accepted["workflowId"]).result()
    body = await status_of(client, accepted["id"])
    assert body["status"] == "completed"
    assert body["storeId"] == str(seeded.tokyo)
    assert (body["periodStart"], body["periodEnd"], body["format"], body["error"]) == (
        "2025-10-01",
        "2025-10-31",
        "json",
        None,
    )
    assert [(file["name"], file["rows"]) for file in body["files"]] == [
        ("invoices.jsonl", 2),
        ("transactions.jsonl", 2),
        ("credit_notes.jsonl", 2),
        ("manifest.json", 0),
    ]
    remote_path = body["files"][0]["remotePath"]
    assert remote_path.startswith("/")
    assert remote_path.endswith(f"/2025-10-01_2025-10-31/{accepted['id']}/invoices.jsonl")


async def test_concurrent_process_requests_start_one_run(
    client: TestClient[Any, Any], dev_client: Client, task_queue: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with pool.acquire() as connection:
        export_id = await request_export(connection)
    # No worker yet, so the first run is still going when the others arrive.
    responses = await asyncio.gather(*(client.post(f"{PROCESS}/{export_id}", headers=AUTH) for _ in range(6)))
    assert [response.status for response in responses] == [202] * 6
    bodies = [await response.json() for response in responses]
    assert sorted(body["alreadyRunning"] for body in bodies) == [False] + [True] * 5
    assert len({body["runId"] for body in bodies}) == 1

    workflow_id = export_workflow_id(export_id)
    async with export_worker(dev_client, task_queue, pool, tmp_path):
        await dev_client.get_workflow_handle(workflow_id).result()

    async def runs() -> list[str]:
        return [run.run_id async for run in dev_client.list_workflows(f'WorkflowId="{workflow_id}"')]

    assert await poll(runs) == [bodies[0]["runId"]]
    assert (await status_of(client, str(export_id)))["status"] == "completed"


async def test_trigger_starts_every_pending_export_once(
    client: TestClient[Any, Any], dev_client: Client, task_queue: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with pool.acquire() as connection:
        pending = {str(await request_export(connection)) for _ in range(3)}
        done = await request_export(connection)
        await connection.execute("UPDATE financial_exports SET status = 'completed' WHERE id = $1", done)

    first = await client.post(TRIGGER, headers=AUTH)
    assert first.status == 202
    body = await first.json()
    assert body["started"] == 3
    assert {item["exportId"] for item in body["exports"]} == pending
    again = await (await client.post(TRIGGER, headers=AUTH)).json()
    assert again["started"] == 0
    assert all(item["alreadyRunning"] for item in again["exports"])

    async with export_worker(dev_client, task_queue, pool, tmp_path):
        for item in body["exports"]:
            await dev_client.get_workflow_handle(item["workflowId"]).result()
    assert [(await status_of(client, export_id))["status"] for export_id in pending] == ["completed"] * 3
    assert (await (await client.post(TRIGGER, headers=AUTH)).json()) == {"started": 0, "exports": []}


async def test_request_while_temporal_is_down_is_recorded_and_says_so(
    aiohttp_client: AiohttpClient, api_settings: Settings, pool: asyncpg.Pool
) -> None:
    unreachable = await connect_temporal(env={"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}, lazy=True)
    client = await aiohttp_client(create_app(api_settings, temporal=unreachable, pool=pool))
    response = await client.post(EXPORTS, json=VALID, headers=AUTH)
    assert response.status == 503
    message = (await response.json())["error"]["message"]
    async with pool.acquire() as connection:
        export_id = await connection.fetchval("SELECT id FROM financial_exports WHERE status = 'pending'")
    assert f"export {export_id} is recorded as pending" in message
