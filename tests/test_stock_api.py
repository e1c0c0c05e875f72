"""Stock reconciliation routes over the real app factory, the Temporal dev server, PostgreSQL and SMTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.stock import StockActivities
from api.app import create_app
from devstack.ports import free_port
from devstack.rows import add_store
from devstack.smtp_sink import SmtpSink
from petcare.config import Settings, SmtpSettings
from petcare.mail import Mailer
from petcare.models.stock import MANUAL_WORKFLOW_ID, StockReconciliationResult
from tests.support.api import AUTH
from tests.support.stock import FROM_ADDRESS, add_product, move
from workflows.stock import StockReconciliationWorkflow, StoreStockReconciliationWorkflow

TRIGGER = "/api/v1/workers/stock-reconciliation/trigger"
REPORTS = "/api/v1/stock-reconciliations"


@pytest.fixture
def client(api_client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    # Workflows go to this test's own task queue, where only this test's worker polls.
    return api_client


@asynccontextmanager
async def stock_worker(
    dev_client: Client, task_queue: str, pool: asyncpg.Pool, sink: SmtpSink
) -> AsyncIterator[None]:
    async with Mailer(SmtpSettings(host=sink.host, port=sink.port)) as mailer:
        activities = StockActivities(pool, mailer, from_address=FROM_ADDRESS, fallback_recipient=None)
        async with Worker(
            dev_client,
            task_queue=task_queue,
            workflows=[StockReconciliationWorkflow, StoreStockReconciliationWorkflow],
            activities=[activities.due_stores, activities.reconcile_store, activities.alert_store],
        ):
            yield


async def get_json(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    response = await client.get(path, headers=AUTH)
    assert response.status == status, await response.text()
    return await response.json()


async def test_trigger_reconciles_every_store_and_the_reports_can_be_read(
    client: TestClient[Any, Any], dev_client: Client, pool: asyncpg.Pool, task_queue: str, smtp_sink: SmtpSink
) -> None:
    north = await add_store(pool, "North", "Europe/Paris", email="north@store.test")
    south = await add_store(pool, "South", "America/Sao_Paulo")
    drift = await add_product(pool, north, "DRIFT", recorded=10, threshold=1, movements=(12, -5))
    await add_product(pool, north, "LOW", recorded=1, threshold=3, movements=(1,))
    await add_product(pool, south, "FINE", recorded=4, threshold=1, movements=(4,))
    # The id is fixed: a manual run another test left behind on the shared server must not answer.
    with suppress(RPCError):
        await dev_client.get_workflow_handle(MANUAL_WORKFLOW_ID).terminate("cleared by test_stock_api")

    async with stock_worker(dev_client, task_queue, pool, smtp_sink):
        response = await client.post(TRIGGER, headers=AUTH)  # no body, as the old endpoint
        assert response.status == 202
        accepted = await response.json()
        assert accepted["workflowId"] == MANUAL_WORKFLOW_ID
        assert accepted["alreadyRunning"] is False
        handle = dev_client.get_workflow_handle(
            accepted["workflowId"], run_id=accepted["runId"], result_type=StockReconciliationResult
        )
        result = await handle.result()

    assert {outcome.store_id: outcome.status for outcome in result.stores} == {
        north: "reconciled",
        south: "reconciled",
    }
    assert [mail.recipients for mail in smtp_sink.received] == [["north@store.test"]]

    listed = await get_json(client, f"{REPORTS}?storeId={north}&latest=true")
    [report] = listed["reconciliations"]
    assert report["storeId"] == str(north)
    assert report["trigger"] == "manual"
    # The report names the per-store child workflow execution that made it: its id and run id.
    assert report["workflowId"] == f"{MANUAL_WORKFLOW_ID}/store-{north}"
    child = await dev_client.get_workflow_handle(report["workflowId"]).describe()
    assert (child.run_id, child.parent_id) == (report["workflowRunId"], MANUAL_WORKFLOW_ID)
    assert (report["productsChecked"], report["discrepancyCount"], report["lowStockCount"]) == (2, 1, 1)
    assert report["alertStatus"] == "sent"
    assert report["discrepancies"] == [
        {
            "productId": str(drift),
            "sku": "DRIFT",
            "name": "Product DRIFT",
            "recorded": 10,
            "computed": 7,
            "difference": -3,
            "threshold": 1,
        }
    ]
    assert [line["sku"] for line in report["lowStock"]] == ["LOW"]
    assert await get_json(client, f"{REPORTS}/{report['id']}") == report

    everything = await get_json(client, f"{REPORTS}?latest=true")
    assert {entry["storeId"] for entry in everything["reconciliations"]} == {str(north), str(south)}


async def test_trigger_for_one_store_returns_the_run_already_going(
    client: TestClient[Any, Any], dev_client: Client, pool: asyncpg.Pool
) -> None:
    store = await add_store(pool, "Busy")
    # No worker polls this test's queue: the first run stays running.
    first = await client.post(TRIGGER, json={"storeId": str(store)}, headers=AUTH)
    second = await client.post(TRIGGER, json={"storeId": str(store)}, headers=AUTH)
    try:
        assert (first.status, second.status) == (202, 202)
        started, again = await first.json(), await second.json()
        assert started["workflowId"] == f"{MANUAL_WORKFLOW_ID}-{store}"
        assert started["alreadyRunning"] is False
        assert again == {**started, "alreadyRunning": True}
    finally:
        await dev_client.get_workflow_handle(f"{MANUAL_WORKFLOW_ID}-{store}").terminate("test over")


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ("{not json", 400, "not valid JSON"),
        ({"storeId": "store-1"}, 422, "storeId"),
        ({"storeId": str(uuid.UUID(int=7))}, 404, "no store with id"),
        ({"store": "x"}, 422, "store"),
    ],
)
async def test_bad_triggers_are_4xx_with_a_message(
    client: TestClient[Any, Any], body: Any, status: int, fragment: str
) -> None:
    if isinstance(body, str):
        response = await client.post(TRIGGER, data=body, headers=AUTH)
    else:
        response = await client.post(TRIGGER, json=body, headers=AUTH)
    assert response.status == status
    assert fragment in (await response.json())["error"]["message"]


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        (f"{REPORTS}/not-a-uuid", 400, "runId must be a UUID"),
        (f"{REPORTS}/{uuid.UUID(int=9)}", 404, "no stock reconciliation"),
        (f"{REPORTS}?latest=maybe", 422, "latest"),
        (f"{REPORTS}?limit=0", 422, "limit"),
        (f"{REPORTS}?storeId=north", 422, "storeId"),
    ],
)
async def test_bad_report_requests_are_4xx_with_a_message(
    client: TestClient[Any, Any], path: str, status: int, fragment: str
) -> None:
    body = await get_json(client, path, status)
    assert fragment in body["error"]["message"]


async def test_routes_require_the_token(client: TestClient[Any, Any]) -> None:
    assert (await client.post(TRIGGER)).status == 401
    assert (await client.get(REPORTS)).status == 401


async def test_routes_answer_503_when_postgresql_is_unreachable(
    aiohttp_client: AiohttpClient, api_settings: Settings, dev_client: Client
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/petcare"
    async with asyncpg.create_pool(url, min_size=0, max_size=2) as dead:
        client = await aiohttp_client(create_app(api_settings, temporal=dev_client, pool=dead))
        responses = [
            await client.post(TRIGGER, json={"storeId": str(uuid.uuid4())}, headers=AUTH),
            await client.get(f"/api/v1/stock-reconciliations/{uuid.uuid4()}", headers=AUTH),
            await client.get("/api/v1/stock-reconciliations?latest=true", headers=AUTH),
        ]
        answers = [(response.status, (await response.json())["error"]["code"]) for response in responses]
    assert answers == [(503, "database_unavailable")] * 3


async def test_a_full_recompute_over_http_reads_every_movement_where_an_incremental_run_reads_the_sums(
    client: TestClient[Any, Any], dev_client: Client, pool: asyncpg.Pool, task_queue: str, smtp_sink: SmtpSink
) -> None:
    store = await add_store(pool, "Audited", "Europe/Paris")
    product = await add_product(pool, store, "OLD", recorded=0, movements=(5,))

    async def computed_after(body: dict[str, Any]) -> tuple[str, int]:
        response = await client.post(TRIGGER, json={"storeId": str(store), **body}, headers=AUTH)
        assert response.status == 202, await response.text()
        accepted = await response.json()
        handle = dev_client.get_workflow_handle(
            accepted["workflowId"], run_id=accepted["runId"], result_type=StockReconciliationResult
        )
        [outcome] = (await handle.result()).stores
        assert outcome.status == "reconciled", outcome.error
        [report] = (await get_json(client, f"{REPORTS}?storeId={store}&latest=true"))["reconciliations"]
        [line] = report["discrepancies"]
        return accepted["workflowId"], line["computed"]

    async with stock_worker(dev_client, task_queue, pool, smtp_sink):
        # Propose a checkpoint, fold the old movement into it, then report from it (one more
        # movement between runs, as a day's sales would be).
        for run in range(3):
            assert (await computed_after({}))[1] == 5 + run
            await move(pool, product, 1)
        assert await pool.fetchval("SELECT upto FROM stock_checkpoint") >= await pool.fetchval(
            "SELECT min(id) FROM stock_movements"
        )
        # The backend edits the old movement: the checkpoint's sum no longer says so.
        await pool.execute("UPDATE stock_movements SET quantity = 15 WHERE quantity = 5")
        assert await computed_after({}) == (f"{MANUAL_WORKFLOW_ID}-{store}", 8)
        assert await computed_after({"fullRecompute": True}) == (f"{MANUAL_WORKFLOW_ID}-full-{store}", 18)
        assert (await computed_after({}))[1] == 18  # the rebuilt sums serve the next runs
