"""Web UI summaries: what each started run says it is (API starts and scheduled runs, dev server)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from temporalio.client import Client, ScheduleIntervalSpec, ScheduleSpec

from petcare.jobs import (
    EXPORT_ATTRIBUTE,
    FINANCIAL_EXPORT,
    JOB_ATTRIBUTE,
    STOCK_RECONCILIATION,
    STORE_ATTRIBUTE,
)
from petcare.models.stock import StockReconciliationInput
from petcare.schedules import ScheduleDeclaration, apply_schedules
from petcare.summaries import export_summary, period_words
from tests.support.api import AUTH
from tests.support.polling import poll


def test_summary_texts() -> None:
    assert period_words(date(2026, 10, 1), date(2026, 10, 31)) == "2026-10"
    assert period_words(date(2026, 2, 1), date(2026, 2, 28)) == "2026-02"
    assert period_words(date(2026, 10, 1), date(2026, 10, 15)) == "2026-10-01..2026-10-15"
    assert period_words(date(2026, 10, 1), date(2026, 11, 30)) == "2026-10-01..2026-11-30"
    assert export_summary(date(2026, 10, 1), date(2026, 10, 31), "csv", "Downtown") == (
        "Financial export 2026-10 csv, store Downtown"
    )
    assert export_summary(date(2026, 10, 1), date(2026, 10, 31), "json", None) == (
        "Financial export 2026-10 json, all stores"
    )
    assert len(export_summary(date(2026, 10, 1), date(2026, 10, 31), "csv", "x" * 500)) == 200


async def test_api_started_runs_carry_summary_and_search_attributes(
    api_client: TestClient[Any, Any], dev_client: Client, pool: asyncpg.Pool
) -> None:
    store_id = await pool.fetchval(
        "INSERT INTO stores (name, timezone) VALUES ('Downtown', 'Europe/Paris') RETURNING id"
    )
    response = await api_client.post(
        "/api/v1/financial-exports",
        json={
            "periodStart": "2026-10-01",
            "periodEnd": "2026-10-31",
            "format": "csv",
            "storeId": str(store_id),
        },
        headers=AUTH,
    )
    assert response.status == 202, await response.text()
    accepted = await response.json()
    handle = dev_client.get_workflow_handle(accepted["workflowId"])
    try:
        description = await handle.describe()
        assert await description.static_summary() == "Financial export 2026-10 csv, store Downtown"
        attributes = description.typed_search_attributes
        assert attributes.get(JOB_ATTRIBUTE) == FINANCIAL_EXPORT.key
        assert attributes.get(EXPORT_ATTRIBUTE) == accepted["id"]
        assert attributes.get(STORE_ATTRIBUTE) == str(store_id)
    finally:
        await handle.terminate(reason="test over")

    response = await api_client.post("/api/v1/workers/appointment-reminder/trigger", headers=AUTH)
    assert response.status == 202, await response.text()
    started = await response.json()
    handle = dev_client.get_workflow_handle(started["workflowId"], run_id=started["runId"])
    try:
        description = await handle.describe()
        assert await description.static_summary() == (
            "Appointment reminders (manual run): appointments in the next 24 h"
        )
    finally:
        await handle.terminate(reason="test over")


async def test_scheduled_runs_carry_the_schedule_summary(dev_client: Client, task_queue: str) -> None:
    declaration = ScheduleDeclaration(
        schedule_id=f"ops-summary-{uuid.uuid4().hex[:8]}",
        job=STOCK_RECONCILIATION,
        argument=StockReconciliationInput(),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        note="Stock reconciliation: each store once per local day",
    )
    await apply_schedules(dev_client, [declaration], task_queue)
    schedule = dev_client.get_schedule_handle(declaration.schedule_id)
    try:
        await schedule.trigger()

        async def started() -> str | None:
            async for execution in dev_client.list_workflows(
                f'TemporalScheduledById="{declaration.schedule_id}"'
            ):
                return execution.id
            return None

        workflow_id = await poll(started)
        description = await dev_client.get_workflow_handle(workflow_id).describe()
        assert (
            await description.static_summary()
            == "Scheduled: Stock reconciliation: each store once per local day"
        )
        assert description.typed_search_attributes.get(JOB_ATTRIBUTE) == STOCK_RECONCILIATION.key
        await dev_client.get_workflow_handle(workflow_id).terminate(reason="test over")
    finally:
        await schedule.delete()
