"""An export that stops early: a file that fails cancels its siblings, a cancelled run records its
failure, and nothing is left or written afterwards. Real PostgreSQL (table locks hold the queries
back), a local destination and the Temporal dev server."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError

from activities.exports.destinations import LocalDestination
from tests.support.exports import (
    DATA_TABLES,
    POISON,
    POISON_MESSAGE,
    export_status,
    export_worker,
    poison_text_cells,
    request_export,
    seed,
    start_export,
    tables_locked,
)
from tests.support.polling import poll
from workflows.exports import CANCELLED_MESSAGE


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


async def uploads_started(handle: WorkflowHandle[Any, Any], count: int) -> bool:
    description = await handle.describe()
    started = [
        activity
        for activity in description.raw_description.pending_activities
        if activity.activity_type.name == "financial_export.write_file"
        and activity.attempt >= 1
        and activity.last_started_time.seconds > 0
    ]
    return len(started) >= count


async def test_a_failed_file_cancels_its_siblings_before_the_failure_is_recorded(
    dev_client: Client, task_queue: str, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    async with pool.acquire() as connection:
        seeded = await seed(connection)
        # A PostgreSQL error in credit notes only: the invoice and transaction queries never meet
        # the poisoned cell. (A store's bad zone would not do: the zone check fails all three files.)
        await poison_text_cells(connection)
        await connection.execute(
            """INSERT INTO credit_notes (number, invoice_id, store_id, issued_at, amount_cents, currency,
                                         reason)
               SELECT 'CN-POISON', id, store_id, '2025-10-15T12:00:00Z', 100, 'USD', $1
               FROM invoices WHERE store_id = $2 LIMIT 1""",
            POISON,
            seeded.new_york,
        )
        export_id = await request_export(connection)
    root = tmp_path / "exports"
    async with export_worker(dev_client, task_queue, pool, LocalDestination(root)):
        # Invoices and transactions wait on the locks with their temporary files open.
        async with tables_locked(database_url, "invoices", "transactions"):
            handle = await start_export(dev_client, task_queue, export_id)
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
        # Released: an upload that had not been stopped would now write and rename its file.
        await asyncio.sleep(1.5)
        assert files_under(root) == []  # neither final nor temporary files

    assert POISON_MESSAGE in str(failure.value.cause)
    status, error = await export_status(pool, export_id)
    assert status == "failed"
    assert error is not None
    assert error.startswith("cannot export credit_notes")

    events = [event async for event in handle.fetch_history_events()]
    cancelled = [
        i for i, event in enumerate(events) if event.HasField("activity_task_canceled_event_attributes")
    ]
    recorded = [
        i
        for i, event in enumerate(events)
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name == "financial_export.fail"
    ]
    assert len(cancelled) == 2  # invoices and transactions, stopped by the workflow
    assert len(recorded) == 1
    assert recorded[0] > max(cancelled)  # the failure recorded after they stopped


async def test_a_cancelled_run_records_the_export_as_failed(
    dev_client: Client, task_queue: str, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    async with pool.acquire() as connection:
        await seed(connection)
        export_id = await request_export(connection)
    root = tmp_path / "exports"
    async with (
        export_worker(dev_client, task_queue, pool, LocalDestination(root)),
        tables_locked(database_url, *DATA_TABLES),
    ):
        handle = await start_export(dev_client, task_queue, export_id)
        await poll(lambda: uploads_started(handle, 3))
        assert (await export_status(pool, export_id))[0] == "processing"
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()

    assert isinstance(failure.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert await export_status(pool, export_id) == ("failed", CANCELLED_MESSAGE)
    assert files_under(root) == []  # the uploads removed their temporary files


async def test_a_run_evicted_after_every_task_mid_upload_completes(
    dev_client: Client, task_queue: str, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    # Without a workflow cache the worker drops the run after each of its tasks, mid-upload too,
    # and rebuilds it from its history for the next: the uploads' wait must replay, and tearing
    # the evicted copies down must raise nothing (pytest reports unraisable errors as failures).
    async with pool.acquire() as connection:
        await seed(connection)
        export_id = await request_export(connection)
    destination = LocalDestination(tmp_path / "exports")
    async with export_worker(dev_client, task_queue, pool, destination, max_cached_workflows=0):
        async with tables_locked(database_url, "invoices", "transactions"):
            handle = await start_export(dev_client, task_queue, export_id)
            await poll(lambda: uploads_started(handle, 2))
            gc.collect()
        result = await asyncio.wait_for(handle.result(), 60)
    gc.collect()
    assert result.status == "completed"
