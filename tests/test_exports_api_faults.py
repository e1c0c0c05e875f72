"""Financial export routes when things went wrong: exports with extreme dates recorded by another
system, PostgreSQL unreachable (dead address, real server stopped), and exports left `processing`
by a terminated run. Real app factory, PostgreSQL and the Temporal dev server."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from temporalio.client import Client

from activities.exports.destinations import LocalDestination
from api.app import create_app
from devstack.ports import free_port
from petcare.config import Settings
from petcare.models.exports import export_workflow_id
from tests.support.api import AUTH, own_postgres
from tests.support.exports import DATA_TABLES, export_status, export_worker, request_export, tables_locked
from tests.support.polling import poll

EXPORTS = "/api/v1/financial-exports"
PROCESS = "/api/v1/workers/financial-export/process"
TRIGGER = "/api/v1/workers/financial-export/trigger"
VALID = {"periodStart": "2025-10-01", "periodEnd": "2025-10-31", "format": "csv"}


async def every_route(client: TestClient[Any, Any]) -> list[tuple[int, dict[str, Any]]]:
    export_id = uuid.uuid4()
    responses = [
        await client.post(EXPORTS, json=VALID, headers=AUTH),
        await client.get(f"{EXPORTS}/{export_id}", headers=AUTH),
        await client.post(f"{PROCESS}/{export_id}", headers=AUTH),
        await client.post(TRIGGER, headers=AUTH),
    ]
    return [(response.status, await response.json()) for response in responses]


def all_database_unavailable(answers: list[tuple[int, dict[str, Any]]]) -> bool:
    return all(status == 503 and body["error"]["code"] == "database_unavailable" for status, body in answers)


async def test_exports_recorded_with_extreme_dates_can_be_processed_and_triggered(
    api_client: TestClient[Any, Any], pool: asyncpg.Pool, dev_client: Client
) -> None:
    # The main backend inserts rows itself; the API's bounds do not protect them.
    export_id = await pool.fetchval(
        """INSERT INTO financial_exports (period_start, period_end, format)
           VALUES ('9999-12-01', '9999-12-31', 'csv') RETURNING id"""
    )
    triggered = await api_client.post(TRIGGER, headers=AUTH)
    assert triggered.status == 202, await triggered.text()
    assert (await triggered.json())["started"] == 1
    processed = await api_client.post(f"{PROCESS}/{export_id}", headers=AUTH)
    assert processed.status == 202, await processed.text()
    assert (await processed.json())["alreadyRunning"] is True
    description = await dev_client.get_workflow_handle(export_workflow_id(export_id)).describe()
    assert await description.static_summary() == "Financial export 9999-12 csv, all stores"
    await dev_client.get_workflow_handle(export_workflow_id(export_id)).terminate(reason="test over")


async def test_503_when_postgresql_is_at_a_dead_address(
    aiohttp_client: AiohttpClient, api_settings: Settings, dev_client: Client
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/petcare"
    async with asyncpg.create_pool(url, min_size=0, max_size=2) as dead:
        client = await aiohttp_client(create_app(api_settings, temporal=dev_client, pool=dead))
        answers = await every_route(client)
    assert all_database_unavailable(answers), answers
    assert "PostgreSQL is unreachable" in answers[0][1]["error"]["message"]


async def test_503_while_a_real_postgresql_is_stopped(
    aiohttp_client: AiohttpClient, api_settings: Settings, dev_client: Client, tmp_path: Path
) -> None:
    async with own_postgres(tmp_path / "pg") as (server, pool):
        client = await aiohttp_client(create_app(api_settings, temporal=dev_client, pool=pool))
        assert (await client.get(f"{EXPORTS}/{uuid.uuid4()}", headers=AUTH)).status == 404  # it works
        await asyncio.to_thread(server.stop)
        assert all_database_unavailable(await every_route(client))
        await asyncio.to_thread(server.start)

        async def back() -> bool:
            return (await client.get(f"{EXPORTS}/{uuid.uuid4()}", headers=AUTH)).status == 404

        await poll(back, timeout=20)


async def test_an_export_left_processing_by_a_terminated_run_is_recovered(
    api_client: TestClient[Any, Any],
    dev_client: Client,
    task_queue: str,
    pool: asyncpg.Pool,
    database_url: str,
    tmp_path: Path,
) -> None:
    async with pool.acquire() as connection:
        export_id = await request_export(connection)
    handle = dev_client.get_workflow_handle(export_workflow_id(export_id))

    async def processing() -> bool:
        return (await export_status(pool, export_id))[0] == "processing"

    async with export_worker(dev_client, task_queue, pool, LocalDestination(tmp_path)):
        async with tables_locked(database_url, *DATA_TABLES):  # every run waits on its queries
            first = await (await api_client.post(f"{PROCESS}/{export_id}", headers=AUTH)).json()
            await poll(processing)
            await handle.terminate(reason="operator stopped it")  # no workflow code runs: stays processing
            assert await export_status(pool, export_id) == ("processing", None)

            # process/{id} starts a new run for it...
            second = await (await api_client.post(f"{PROCESS}/{export_id}", headers=AUTH)).json()
            assert (second["alreadyRunning"], second["runId"] != first["runId"]) == (False, True)
            await handle.terminate(reason="operator stopped it again")
            # ... and so does the trigger, which only ever started pending exports before.
            triggered = await (await api_client.post(TRIGGER, headers=AUTH)).json()
            assert triggered["started"] == 1
            assert [item["exportId"] for item in triggered["exports"]] == [str(export_id)]
        await handle.result()  # the locks are gone: the third run completes
    assert await export_status(pool, export_id) == ("completed", None)
