"""The stock reconciliation workflows on Temporal's time-skipping server, with real PostgreSQL and SMTP.

The module starts its own time-skipping server: it moves the clock months ahead (to a DST day),
which other tests sharing the session's server must never see.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pydantic
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import ActivityTaskScheduledEventAttributes
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.stock import StockActivities
from devstack.rows import add_store
from devstack.smtp_sink import SmtpSink
from devstack.temporal_server import time_skipping_server
from petcare.config import SmtpSettings
from petcare.mail import Mailer
from petcare.models.stock import StockReconciliationInput, StockReconciliationResult
from petcare.temporal_client import PetcarePlugin
from tests.support.stock import FROM_ADDRESS, add_product
from workflows.stock import StockReconciliationWorkflow, StoreStockReconciliationWorkflow


@pytest_asyncio.fixture(scope="module")
async def clock_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_server() as env:
        yield env


@pytest_asyncio.fixture
async def worker(
    clock_env: WorkflowEnvironment, pool: asyncpg.Pool, smtp_sink: SmtpSink, task_queue: str
) -> AsyncIterator[Worker]:
    async with Mailer(SmtpSettings(host=smtp_sink.host, port=smtp_sink.port)) as mailer:
        activities = StockActivities(pool, mailer, from_address=FROM_ADDRESS, fallback_recipient=None)
        async with Worker(
            clock_env.client,
            task_queue=task_queue,
            workflows=[StockReconciliationWorkflow, StoreStockReconciliationWorkflow],
            activities=[activities.due_stores, activities.reconcile_store, activities.alert_store],
            workflow_failure_exception_types=[pydantic.ValidationError],
        ) as running:
            yield running


async def run_once(
    env: WorkflowEnvironment,
    task_queue: str,
    request: StockReconciliationInput | None = None,
    *,
    workflow_id: str | None = None,
    skip_time: bool = False,
) -> StockReconciliationResult:
    """One run. Time skips only with `skip_time` (retry backoffs): while a result is awaited,
    auto-skipping may jump the clock to any timer on the server, even years ahead."""
    handle = await env.client.start_workflow(
        StockReconciliationWorkflow.run,
        request or StockReconciliationInput(),
        id=workflow_id or f"stock-reconciliation-test-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    if skip_time:
        return await handle.result()
    with env.auto_time_skipping_disabled():
        return await handle.result()


def next_us_spring_forward(after: datetime) -> date:
    """The next day New York's clocks jump from 02:00 EST to 03:00 EDT."""
    zone = ZoneInfo("America/New_York")
    day = after.date() + timedelta(days=3)
    while True:
        noon = datetime.combine(day, time(12), zone)
        if noon.utcoffset() != (noon - timedelta(days=1)).utcoffset():
            return day
        day += timedelta(days=1)


@pytest.mark.usefixtures("worker")
async def test_hourly_runs_reconcile_each_store_once_per_local_day_across_dst(
    clock_env: WorkflowEnvironment, pool: asyncpg.Pool, smtp_sink: SmtpSink, task_queue: str
) -> None:
    zones = ["America/New_York", "Asia/Tokyo", "Europe/London", "Asia/Kolkata"]
    stores = {await add_store(pool, zone, zone): zone for zone in zones}
    london = next(store for store, zone in stores.items() if zone == "Europe/London")
    await pool.execute("UPDATE stores SET email = 'london@store.test' WHERE id = $1", london)
    await add_product(pool, london, "LOW", recorded=1, threshold=5, movements=(1,))

    dst_day = next_us_spring_forward(await clock_env.get_current_time())

    def at(days: int, hour: int) -> datetime:
        return datetime.combine(dst_day + timedelta(days=days), time(hour, 5), UTC)

    # The schedule's ticks (hourly at :05 UTC) from the day before the DST change to the day after.
    reconciled: dict[tuple[str, date], datetime] = {}
    tick = at(-1, 5)
    while tick <= at(1, 8):
        await clock_env.sleep(tick - await clock_env.get_current_time())
        result = await run_once(clock_env, task_queue)  # time moves only by the sleep above
        for outcome in result.stores:
            assert outcome.status == "reconciled", outcome
            assert outcome.business_date is not None
            key = (stores[outcome.store_id], outcome.business_date)
            assert key not in reconciled, f"{key} reconciled twice"
            reconciled[key] = result.started_at.replace(second=0, microsecond=0)
        tick += timedelta(hours=1)

    def day(n: int) -> date:
        return dst_day + timedelta(days=n)

    assert reconciled == {
        # The first tick catches every store up on its current local day.
        ("America/New_York", day(-2)): at(-1, 5),
        ("Asia/Tokyo", day(-1)): at(-1, 5),
        ("Europe/London", day(-1)): at(-1, 5),
        ("Asia/Kolkata", day(-1)): at(-1, 5),
        # Then each store right after its own 02:00.
        ("America/New_York", day(-1)): at(-1, 7),  # 02:05 EST
        ("America/New_York", day(0)): at(0, 7),  # 03:05 EDT: 02:00 does not exist that night
        ("America/New_York", day(1)): at(1, 6),  # 02:05 EDT
        ("Asia/Tokyo", day(0)): at(-1, 17),  # 02:05 JST
        ("Asia/Tokyo", day(1)): at(0, 17),
        ("Europe/London", day(0)): at(0, 2),  # 02:05 GMT
        ("Europe/London", day(1)): at(1, 2),
        ("Asia/Kolkata", day(0)): at(-1, 21),  # 02:35 IST
        ("Asia/Kolkata", day(1)): at(0, 21),
    }
    # London's low stock was alerted once, on its first run; the unchanged repeats stayed quiet.
    assert [mail.recipients for mail in smtp_sink.received] == [["london@store.test"]]


@pytest.mark.usefixtures("worker")
async def test_a_failing_store_is_retried_and_reported_without_stopping_the_others(
    clock_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    fine = await add_store(pool, "Fine")
    flaky = await add_store(pool, "Flaky")
    broken = await add_store(pool, "Broken")
    lost = await add_store(pool, "Lost", timezone="Mars/Olympus_Mons")
    await add_product(pool, flaky, "A", recorded=2, movements=(2,))
    # Real faults inside PostgreSQL: the flaky store's first two attempts fail, the broken store's
    # always do. A sequence counts attempts because it is not rolled back with the failure.
    await pool.execute("CREATE SEQUENCE flaky_attempts")
    await pool.execute("CREATE TABLE injected_faults (store_id uuid PRIMARY KEY, kind text NOT NULL)")
    await pool.executemany(
        "INSERT INTO injected_faults VALUES ($1, $2)", [(broken, "always"), (flaky, "twice")]
    )
    await pool.execute(
        """CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE fault text := (SELECT kind FROM injected_faults WHERE store_id = NEW.store_id);
            BEGIN
              IF fault = 'always' THEN RAISE EXCEPTION 'injected fault: disk on fire'; END IF;
              IF fault = 'twice' AND nextval('flaky_attempts') <= 2 THEN
                RAISE EXCEPTION 'injected fault: flaky';
              END IF;
              RETURN NEW;
            END $$"""
    )
    await pool.execute(
        "CREATE TRIGGER inject_fault BEFORE INSERT ON stock_reconciliations "
        "FOR EACH ROW EXECUTE FUNCTION inject_fault()"
    )

    result = await run_once(clock_env, task_queue, skip_time=True)  # through the retry backoffs

    outcomes = {outcome.store_id: outcome for outcome in result.stores}
    assert {store: outcome.status for store, outcome in outcomes.items()} == {
        fine: "reconciled",
        flaky: "reconciled",
        broken: "failed",
        lost: "failed",
    }
    assert await pool.fetchval("SELECT last_value FROM flaky_attempts") == 3
    flaky_summary = outcomes[flaky].summary
    assert flaky_summary is not None
    assert flaky_summary.products_checked == 1
    assert "injected fault: disk on fire" in (outcomes[broken].error or "")
    assert "not an IANA time zone" in (outcomes[lost].error or "")
    assert result.failed == 2


@pytest.mark.usefixtures("worker")
async def test_a_forced_store_runs_again_replays_and_an_unknown_store_fails_clearly(
    clock_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    store = await add_store(pool, "Forced")
    await add_store(pool, "Bystander")
    scheduled_id = f"stock-reconciliation-test-{uuid.uuid4().hex[:8]}"
    scheduled = await run_once(clock_env, task_queue, workflow_id=scheduled_id)
    forced = await run_once(clock_env, task_queue, StockReconciliationInput(store_id=store))

    again = await run_once(clock_env, task_queue)
    everything = await run_once(clock_env, task_queue, StockReconciliationInput(force=True))

    assert len(scheduled.stores) == 2
    assert again.stores == []  # both stores already have today's scheduled reconciliation
    assert [outcome.status for outcome in everything.stores] == ["reconciled", "reconciled"]
    assert [(outcome.store_id, outcome.status) for outcome in forced.stores] == [(store, "reconciled")]
    triggers = await pool.fetch("SELECT trigger FROM stock_reconciliations WHERE store_id = $1", store)
    assert sorted(row["trigger"] for row in triggers) == ["manual", "manual", "schedule"]

    # The histories replay on the current code: the workflows are deterministic.
    replayer = Replayer(
        workflows=[StockReconciliationWorkflow, StoreStockReconciliationWorkflow],
        plugins=[PetcarePlugin()],
    )
    child_id = f"{scheduled_id}/store-{store}"
    for workflow_id in (scheduled_id, child_id):
        history = await clock_env.client.get_workflow_handle(workflow_id).fetch_history()
        await replayer.replay_workflow(history)

    with pytest.raises(WorkflowFailureError) as failed:
        await run_once(clock_env, task_queue, StockReconciliationInput(store_id=uuid.uuid4()))
    cause = failed.value.cause
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert "unknown store" in str(cause)


def longest(scheduled: ActivityTaskScheduledEventAttributes) -> timedelta:
    """How long an activity can take through all its attempts, as the server was told."""
    attempt = scheduled.start_to_close_timeout.ToTimedelta()
    policy = scheduled.retry_policy
    total, interval = attempt * policy.maximum_attempts, policy.initial_interval.ToTimedelta()
    for _ in range(policy.maximum_attempts - 1):
        total += min(interval, policy.maximum_interval.ToTimedelta())
        interval *= policy.backoff_coefficient
    deadline = scheduled.schedule_to_close_timeout.ToTimedelta()
    return min(total, deadline) if deadline else total


@pytest.mark.usefixtures("worker")
async def test_a_store_s_activities_always_end_inside_its_child_timeout(
    clock_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    store = await add_store(pool, "Timed", email="timed@store.test")
    await add_product(pool, store, "LOW", recorded=0, threshold=2)  # so the alert activity runs too
    workflow_id = f"stock-reconciliation-test-{uuid.uuid4().hex[:8]}"
    await run_once(clock_env, task_queue, StockReconciliationInput(store_id=store), workflow_id=workflow_id)

    parent = await clock_env.client.get_workflow_handle(workflow_id).fetch_history()
    [child_start] = [
        event.start_child_workflow_execution_initiated_event_attributes
        for event in parent.events
        if event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    ]
    child = await clock_env.client.get_workflow_handle(child_start.workflow_id).fetch_history()
    activities = [
        event.activity_task_scheduled_event_attributes
        for event in child.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]

    assert [a.activity_type.name for a in activities] == ["stock_reconcile_store", "stock_alert_store"]
    # Retries of both activities end before the child times out: a store whose report exists is
    # never reported failed by the child's timeout.
    assert (
        sum((longest(a) for a in activities), timedelta())
        < child_start.workflow_execution_timeout.ToTimedelta()
    )


@pytest.mark.usefixtures("worker")
async def test_past_a_page_of_stores_the_run_continues_as_new(
    clock_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    stores = [await add_store(pool, f"Store {n}") for n in range(5)]
    workflow_id = f"stock-reconciliation-test-{uuid.uuid4().hex[:8]}"
    request = StockReconciliationInput(force=True, stores_per_run=2)

    result = await run_once(clock_env, task_queue, request, workflow_id=workflow_id)  # follows the chain

    assert (result.earlier_runs, result.earlier_stores, result.failed) == (2, 4, 0)
    assert [outcome.status for outcome in result.stores] == ["reconciled"]
    counted = await pool.fetch(
        "SELECT store_id, count(*) AS runs FROM stock_reconciliations GROUP BY store_id"
    )
    assert {row["store_id"]: row["runs"] for row in counted} == {store: 1 for store in stores}
