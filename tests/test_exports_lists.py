"""Paged lists over the real app: financial exports, stock reports and runs, newest first, with the
one cursor (api/models.py) and a 400 for a malformed or foreign cursor."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp.test_utils import TestClient
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from devstack.rows import add_store
from petcare.jobs import FINANCIAL_EXPORT, JOB_ATTRIBUTE
from tests.support.api import AUTH

EXPORTS = "/api/v1/financial-exports"
REPORTS = "/api/v1/stock-reconciliations"
RUNS = "/api/v1/workers/runs"
BASE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def get(client: TestClient[Any, Any], path: str, **query: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get(path, params={k: str(v) for k, v in query.items()}, headers=AUTH)
    body: dict[str, Any] = await response.json()
    return response.status, body


async def all_pages(
    client: TestClient[Any, Any], path: str, key: str, **query: Any
) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, page after page; and how many pages it took."""
    items: list[dict[str, Any]] = []
    pages = 0
    cursor: str | None = None
    while True:
        status, body = await get(client, path, **query, **({"cursor": cursor} if cursor else {}))
        assert status == 200, body
        pages += 1
        items += body[key]
        cursor = body["nextCursor"]
        if cursor is None:
            return items, pages
        assert pages < 100


async def add_export(
    pool: asyncpg.Pool,
    *,
    requested_at: datetime,
    store_id: UUID | None = None,
    origin: str = "backend",
    status: str = "completed",
    period: tuple[date, date] = (date(2026, 10, 1), date(2026, 10, 31)),
) -> UUID:
    export_id: UUID = await pool.fetchval(
        """INSERT INTO financial_exports (store_id, period_start, period_end, format, status, origin,
                                          requested_at)
           VALUES ($1, $2, $3, 'csv', $4, $5, $6) RETURNING id""",
        store_id,
        *period,
        status,
        origin,
        requested_at,
    )
    return export_id


async def test_exports_page_newest_first_with_filters(
    api_client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    store = await add_store(pool, "Downtown", "America/New_York")
    ids = []
    for index in range(7):
        # Two exports share each request time: the id breaks the tie, none is lost or repeated.
        ids.append(
            await add_export(
                pool,
                requested_at=BASE - timedelta(hours=index // 2),
                store_id=store if index % 2 else None,
                origin="backend" if index % 2 else "api",
            )
        )
    september = await add_export(
        pool,
        requested_at=BASE - timedelta(days=30),
        period=(date(2026, 9, 1), date(2026, 9, 30)),
        status="failed",
    )

    listed, pages = await all_pages(api_client, EXPORTS, "exports", limit=3)
    assert pages == 3
    assert len(listed) == 8
    assert len({item["id"] for item in listed}) == 8
    keys = [(item["requestedAt"], item["id"]) for item in listed]
    assert keys == sorted(keys, reverse=True)
    assert listed[-1]["id"] == str(september)

    monthly, _ = await all_pages(api_client, EXPORTS, "exports", limit=2, origin="backend", storeId=store)
    assert {item["id"] for item in monthly} == {str(ids[i]) for i in (1, 3, 5)}
    assert {item["origin"] for item in monthly} == {"backend"}

    october, _ = await all_pages(
        api_client, EXPORTS, "exports", periodFrom="2026-10-01", periodTo="2026-10-31"
    )
    assert len(october) == 7
    failed, _ = await all_pages(api_client, EXPORTS, "exports", status="failed")
    assert [item["id"] for item in failed] == [str(september)]

    # An exact page: no next page is announced past the last item.
    status, body = await get(api_client, EXPORTS, limit=8)
    assert status == 200
    assert len(body["exports"]) == 8
    assert body["nextCursor"] is None


async def test_bad_cursors_are_400_with_a_message(
    api_client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    for index in range(3):
        await add_export(pool, requested_at=BASE - timedelta(minutes=index))
    status, body = await get(api_client, EXPORTS, limit=1)
    assert status == 200
    cursor = body["nextCursor"]

    for bad in ("garbage!", "eyJ4IjoxfQ", cursor[:-3], "A" * 300):
        status, body = await get(api_client, EXPORTS, limit=1, cursor=bad)
        assert status == 400, (bad, body)
        assert body["error"]["code"] == "invalid_cursor"
        assert "malformed" in body["error"]["message"]
    # Foreign: the same list with other filters, or another list.
    for path, query in ((EXPORTS, {"status": "failed"}), (REPORTS, {}), (RUNS, {})):
        status, body = await get(api_client, path, cursor=cursor, **query)
        assert status == 400, (path, body)
        assert body["error"]["code"] == "invalid_cursor"
        assert "another list" in body["error"]["message"]
    status, body = await get(api_client, EXPORTS, periodFrom="01/10/2026")
    assert status == 422
    assert "periodFrom" in body["error"]["message"]


async def test_stock_reports_page_instead_of_stopping_at_100(
    api_client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    store = await add_store(pool, "Uptown")
    await pool.executemany(
        """INSERT INTO stock_reconciliations (store_id, business_date, trigger, workflow_id, workflow_run_id,
                                              started_at, finished_at, products_checked,
                                              discrepancy_count, low_stock_count)
           VALUES ($1, $2, 'manual', 'wf', $3, $4, $4, 0, 0, 0)""",
        [
            # Runs of three at the same finish time: the id breaks the tie.
            (store, date(2026, 1, 1) + timedelta(days=index), str(index), BASE - timedelta(hours=index // 3))
            for index in range(130)
        ],
    )
    listed, pages = await all_pages(api_client, REPORTS, "reconciliations", limit=100)
    assert pages == 2
    assert len(listed) == 130
    assert len({item["id"] for item in listed}) == 130
    keys = [(item["finishedAt"], item["id"]) for item in listed]
    assert keys == sorted(keys, reverse=True)
    latest, pages = await all_pages(api_client, REPORTS, "reconciliations", latest="true", limit=1)
    assert len(latest) == 1
    assert pages == 1


async def test_runs_page_through_visibility(
    api_client: TestClient[Any, Any], dev_client: Client, task_queue: str
) -> None:
    prefix = f"runs-paging-{uuid.uuid4().hex[:8]}"
    # Nobody polls the test's queue: they stay Running until terminated.
    handles = [
        await dev_client.start_workflow(
            FINANCIAL_EXPORT.workflow_type,
            id=f"{prefix}-{index}",
            task_queue=task_queue,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(JOB_ATTRIBUTE, FINANCIAL_EXPORT.key)]
            ),
        )
        for index in range(5)
    ]
    try:
        for _ in range(50):  # visibility is eventually consistent
            listed, pages = await all_pages(
                api_client, RUNS, "runs", limit=2, job="financial-export", status="Running"
            )
            mine = [run["workflowId"] for run in listed if run["workflowId"].startswith(prefix)]
            if len(mine) == 5:
                break
        assert sorted(mine) == sorted(f"{prefix}-{index}" for index in range(5))
        assert pages >= 3
        ids = [(run["workflowId"], run["runId"]) for run in listed]
        assert len(ids) == len(set(ids))
        # A cursor of these filters is refused under others.
        status, body = await get(api_client, RUNS, limit=2, job="financial-export", status="Running")
        assert body["nextCursor"] is not None
        status, body = await get(api_client, RUNS, limit=2, status="Running", cursor=body["nextCursor"])
        assert status == 400
        assert body["error"]["code"] == "invalid_cursor"
    finally:
        for handle in handles:
            await handle.terminate(reason="test done")
