"""Schedules over HTTP against the real dev server: list, pause, unpause, trigger, backfill, bad input."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from temporalio.client import Client, ScheduleIntervalSpec, ScheduleSpec

from api.app import create_app
from petcare.config import Settings
from petcare.jobs import STOCK_RECONCILIATION
from petcare.models.stock import StockReconciliationInput
from petcare.schedules import ScheduleDeclaration, apply_schedules
from tests.support.api import AUTH
from tests.support.polling import poll

SCHEDULES = "/api/v1/schedules"


@pytest.fixture
def schedule_minute() -> int:
    """The test schedule's minute past the hour, about half an hour from now: it never fires
    mid-test. Never 0, which the schedule's description leaves out ("every 1h")."""
    return (datetime.now(UTC).minute + 30) % 59 + 1


@pytest_asyncio.fixture
async def schedule_id(dev_client: Client, task_queue: str, schedule_minute: int) -> AsyncIterator[str]:
    """A schedule of this test's own (nobody polls its queue), through the real registry code."""
    declaration = ScheduleDeclaration(
        schedule_id=f"ops-test-{uuid.uuid4().hex[:8]}",
        job=STOCK_RECONCILIATION,
        argument=StockReconciliationInput(),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(hours=1), offset=timedelta(minutes=schedule_minute))
            ]
        ),
        note="ops test schedule",
    )
    assert await apply_schedules(dev_client, [declaration], task_queue) == {
        declaration.schedule_id: "created"
    }
    yield declaration.schedule_id
    await dev_client.get_schedule_handle(declaration.schedule_id).delete()
    async for execution in dev_client.list_workflows(f'TemporalScheduledById="{declaration.schedule_id}"'):
        if execution.close_time is None:
            await dev_client.get_workflow_handle(execution.id, run_id=execution.run_id).terminate("test over")


async def listed(client: TestClient[Any, Any], schedule_id: str) -> dict[str, Any]:
    """The schedule's entry in the API's list, waiting for it: the list comes from visibility,
    which can lag a schedule's creation (NOTES.md), so a first look may not find it yet."""

    async def entry() -> dict[str, Any] | None:
        response = await client.get(SCHEDULES, headers=AUTH)
        assert response.status == 200
        body = await response.json()
        return next((entry for entry in body["schedules"] if entry["id"] == schedule_id), None)

    found: dict[str, Any] = await poll(entry, what=f"schedule {schedule_id} in GET {SCHEDULES}")
    return found


async def test_list_pause_unpause_and_trigger(
    api_client: TestClient[Any, Any], schedule_id: str, schedule_minute: int
) -> None:
    entry = await listed(api_client, schedule_id)
    assert entry["workflowType"] == STOCK_RECONCILIATION.workflow_type
    assert entry["spec"] == f"every 1h at +{schedule_minute}m"
    assert entry["overlap"] == "skip"
    assert entry["paused"] is False
    assert entry["note"] == "ops test schedule"
    assert entry["recentActions"] == []
    next_runs = [datetime.fromisoformat(value) for value in entry["nextRuns"]]
    assert len(next_runs) == 5
    assert all(later - earlier == timedelta(hours=1) for earlier, later in itertools.pairwise(next_runs))
    assert all(run.minute == schedule_minute for run in next_runs)

    response = await api_client.post(
        f"{SCHEDULES}/{schedule_id}/pause", json={"note": "supplier audit"}, headers=AUTH
    )
    assert response.status == 200
    body = await response.json()
    assert (body["paused"], body["note"]) == (True, "supplier audit")
    assert (await listed(api_client, schedule_id))["paused"] is True

    # No body at all: `curl -X POST` works, with a default note.
    response = await api_client.post(f"{SCHEDULES}/{schedule_id}/unpause", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["paused"] is False
    assert body["note"] == "unpaused through the API"

    response = await api_client.post(f"{SCHEDULES}/{schedule_id}/trigger", headers=AUTH)
    assert response.status == 202
    assert await response.json() == {"scheduleId": schedule_id, "triggered": True}

    async def triggered_run_listed() -> dict[str, Any] | None:
        actions = (await listed(api_client, schedule_id))["recentActions"]
        return actions[0] if actions and actions[0]["status"] else None

    action = await poll(triggered_run_listed)
    assert action["workflowId"].startswith(f"{schedule_id}-")
    assert action["status"] == "Running"  # nobody polls the test's queue
    assert action["runId"]


async def test_backfill_starts_one_run_per_missed_time(
    api_client: TestClient[Any, Any], dev_client: Client, schedule_id: str, schedule_minute: int
) -> None:
    # Three hours ending in the past, both ends half an hour from the schedule's ticks: three ticks.
    last_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    end = last_hour + timedelta(minutes=(schedule_minute + 30) % 60)
    start = end - timedelta(hours=3)
    response = await api_client.post(
        f"{SCHEDULES}/{schedule_id}/backfill",
        json={"start": start.isoformat(), "end": end.isoformat(), "overlap": "allow_all"},
        headers=AUTH,
    )
    assert response.status == 202, await response.text()
    body = await response.json()
    assert body["scheduleId"] == schedule_id
    assert body["overlap"] == "allow_all"
    assert datetime.fromisoformat(body["start"]) == start

    async def three_runs() -> int | None:
        count = (await dev_client.count_workflows(f'TemporalScheduledById="{schedule_id}"')).count
        return count if count >= 3 else None

    assert await poll(three_runs) == 3


async def test_a_backfill_over_the_run_limit_is_refused_before_it_starts_anything(
    aiohttp_client: AiohttpClient,
    api_settings: Settings,
    dev_client: Client,
    pool: asyncpg.Pool,
    schedule_id: str,
    schedule_minute: int,
) -> None:
    api = api_settings.api.model_copy(update={"backfill_max_runs": 2})
    client = await aiohttp_client(
        create_app(api_settings.model_copy(update={"api": api}), temporal=dev_client, pool=pool)
    )
    backfill = f"{SCHEDULES}/{schedule_id}/backfill"
    last_tick = datetime.now(UTC).replace(minute=schedule_minute, second=0, microsecond=0)
    if last_tick > datetime.now(UTC):
        last_tick -= timedelta(hours=1)
    last_tick -= timedelta(hours=1)  # well in the past

    # Both ends on a tick: [t-2h, t] holds three runs, one more than the limit.
    three = {"start": (last_tick - timedelta(hours=2)).isoformat(), "end": last_tick.isoformat()}
    response = await client.post(backfill, json=three | {"overlap": "allow_all"}, headers=AUTH)
    assert response.status == 422, await response.text()
    body = await response.json()
    assert body["error"]["code"] == "validation_error"
    message = body["error"]["message"]
    assert "would start 3 runs" in message
    assert "limit of 2" in message
    assert "PETCARE_API__BACKFILL_MAX_RUNS" in message

    # Exactly the limit passes: [t-1h, t] holds two runs.
    two = {"start": (last_tick - timedelta(hours=1)).isoformat(), "end": last_tick.isoformat()}
    response = await client.post(backfill, json=two | {"overlap": "allow_all"}, headers=AUTH)
    assert response.status == 202, await response.text()

    async def started() -> list[str] | None:
        ids = [run.id async for run in dev_client.list_workflows(f'TemporalScheduledById="{schedule_id}"')]
        return sorted(ids) if len(ids) >= 2 else None

    # Only the accepted backfill's two runs: the refused one started nothing (its runs, started
    # before these, would be listed by now).
    expected = [
        f"{schedule_id}-{tick:%Y-%m-%dT%H:%M:%SZ}" for tick in (last_tick - timedelta(hours=1), last_tick)
    ]
    assert await poll(started) == expected


async def test_the_default_limit_refuses_three_days_of_an_hourly_schedule(
    api_client: TestClient[Any, Any], schedule_id: str
) -> None:
    end = datetime.now(UTC) - timedelta(hours=1)
    response = await api_client.post(
        f"{SCHEDULES}/{schedule_id}/backfill",
        json={"start": (end - timedelta(days=3)).isoformat(), "end": end.isoformat()},
        headers=AUTH,
    )
    assert response.status == 422, await response.text()
    message = (await response.json())["error"]["message"]
    assert "would start 72 runs" in message
    assert "limit of 48" in message


async def test_bad_requests(api_client: TestClient[Any, Any], schedule_id: str) -> None:
    backfill = f"{SCHEDULES}/{schedule_id}/backfill"
    now = datetime.now(UTC)
    cases: list[tuple[Any, int, str]] = [
        (
            {"start": now.isoformat(), "end": (now - timedelta(hours=1)).isoformat()},
            422,
            "start must be before end",
        ),
        ({"start": now.isoformat(), "end": now.isoformat()}, 422, "start must be before end"),
        ({"start": (now - timedelta(days=40)).isoformat(), "end": now.isoformat()}, 422, "at most 31 days"),
        (
            {"start": "2026-11-01T00:00:00", "end": "2026-11-02T00:00:00+00:00"},
            422,
            "start: Input should have timezone",
        ),
        ({"start": "yesterday", "end": now.isoformat()}, 422, "start:"),
        # Out of the years 2000-2999: once a 500 (protobuf timestamps overflow below year 1 UTC).
        (
            {"start": "0001-01-01T00:00:00+01:00", "end": "0001-01-02T00:00:00+01:00"},
            422,
            "start: Value error, must be in the years 2000 to 2999",
        ),
        (
            {"start": "9999-12-30T00:00:00-01:00", "end": "9999-12-31T23:59:59-01:00"},
            422,
            "end: Value error, must be in the years 2000 to 2999",
        ),
        ({"end": now.isoformat()}, 422, "start: Field required"),
        (
            {"start": (now - timedelta(hours=1)).isoformat(), "end": now.isoformat(), "overlap": "sometimes"},
            422,
            "overlap:",
        ),
    ]
    for body, status, message in cases:
        response = await api_client.post(backfill, json=body, headers=AUTH)
        assert response.status == status, (body, await response.text())
        assert message in (await response.json())["error"]["message"], body

    response = await api_client.post(backfill, data="{not json", headers=AUTH)
    assert response.status == 400
    response = await api_client.post(
        f"{SCHEDULES}/{schedule_id}/pause", json={"reason": "typo"}, headers=AUTH
    )
    assert response.status == 422
    assert "reason" in (await response.json())["error"]["message"]

    unknown = f"ops-test-unknown-{uuid.uuid4().hex[:8]}"
    for action in ("pause", "unpause", "trigger"):
        response = await api_client.post(f"{SCHEDULES}/{unknown}/{action}", headers=AUTH)
        assert response.status == 404, action
        assert unknown in (await response.json())["error"]["message"]
    hour_ago = (now - timedelta(hours=1)).isoformat()
    response = await api_client.post(
        f"{SCHEDULES}/{unknown}/backfill", json={"start": hour_ago, "end": now.isoformat()}, headers=AUTH
    )
    assert response.status == 404

    response = await api_client.post(f"{SCHEDULES}/{schedule_id}/pause")  # no token
    assert response.status == 401
    assert (await listed(api_client, schedule_id))["paused"] is False
