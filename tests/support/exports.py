"""Financial export test data (stores in three time zones, rows on the period's edges, hostile text),
a worker running the real workflow and activities, and a way to hold the export's queries back."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.exports import ExportActivities, ExportNoticeActivities
from activities.exports.destinations import Destination
from activities.exports.streaming import StreamLimits
from petcare.config import ExportSettings, SmtpSettings
from petcare.db import Connection
from petcare.mail import Mailer
from petcare.models.exports import (
    FinancialExportInput,
    FinancialExportResult,
    export_workflow_id,
    upload_task_queue,
)
from workflows.exports import UPLOAD_TIMEOUT, FinancialExportWorkflow

NEW_YORK = "America/New_York"
TOKYO = "Asia/Tokyo"
OCTOBER = (date(2025, 10, 1), date(2025, 10, 31))
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
DATA_TABLES = ("invoices", "transactions", "credit_notes")


def local(zone: str, *parts: int) -> datetime:
    year, month, day, hour, minute, *rest = parts
    second, microsecond = (*rest, 0, 0)[:2]
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=ZoneInfo(zone))


@dataclass(frozen=True)
class Seeded:
    new_york: UUID
    tokyo: UUID
    in_october: set[str]  # invoice numbers that belong to October in their store's zone
    outside: set[str]


async def seed(connection: Connection) -> Seeded:
    """Stores in New York and Tokyo; invoices just inside and just outside October, local time."""
    new_york = await _store(connection, '=HYPERLINK("http://evil")', NEW_YORK)
    tokyo = await _store(connection, 'Tokyo, "Ginza" 銀座', TOKYO)
    inside = {
        "NY-LAST": (new_york, local(NEW_YORK, 2025, 10, 31, 22, 30)),  # 1 November 02:30 UTC
        "NY-FIRST": (new_york, local(NEW_YORK, 2025, 10, 1, 0, 0)),
        "TK-FIRST": (tokyo, local(TOKYO, 2025, 10, 1, 0, 0)),  # 30 September 15:00 UTC
        "TK-LAST": (tokyo, local(TOKYO, 2025, 10, 31, 23, 59, 59, 999999)),
    }
    outside = {
        "NY-NEXT": (new_york, local(NEW_YORK, 2025, 11, 1, 0, 0)),
        "NY-BEFORE": (new_york, local(NEW_YORK, 2025, 9, 30, 23, 59, 59)),
        "TK-NEXT": (tokyo, local(TOKYO, 2025, 11, 1, 0, 0)),  # still 31 October in UTC
        "TK-BEFORE": (tokyo, local(TOKYO, 2025, 9, 30, 23, 0)),
    }
    hostile = [
        "=1+2",
        "+SUM(A1)",
        "-3",
        "@cmd",
        "\tTAB",
        "\rCR",
        'quote " and, comma',
        "new\nline",
        "back\\slash",
    ]
    for index, (number, (store, issued)) in enumerate({**inside, **outside}.items()):
        invoice = await connection.fetchval(
            """INSERT INTO invoices (number, store_id, issued_at, currency, subtotal_cents, tax_cents,
                                     total_cents, status)
               VALUES ($1, $2, $3, 'USD', $4, $5, $6, $7) RETURNING id""",
            number,
            store,
            issued,
            -5 if index == 0 else 1_999 + index,
            -1 if index == 0 else 400,
            -6 if index == 0 else 9_223_372_036_854_775_807 if index == 1 else 2_399 + index,
            hostile[index % len(hostile)],
        )
        await connection.execute(
            """INSERT INTO transactions (invoice_id, store_id, occurred_at, amount_cents, currency, method,
                                         reference)
               VALUES ($1, $2, $3, $4, 'USD', $5, $6)""",
            invoice,
            store,
            issued,
            -250 if index % 2 else 2_400,
            hostile[(index + 1) % len(hostile)],
            None if index % 3 == 0 else hostile[(index + 2) % len(hostile)],
        )
        await connection.execute(
            """INSERT INTO credit_notes (number, invoice_id, store_id, issued_at, amount_cents, currency,
                                         reason)
               VALUES ($1, $2, $3, $4, $5, 'USD', $6)""",
            f"CN-{number}",
            invoice,
            store,
            issued,
            100 + index,
            hostile[(index + 3) % len(hostile)],
        )
    return Seeded(new_york, tokyo, set(inside), set(outside))


async def _store(connection: Connection, name: str, zone: str) -> UUID:
    store: UUID = await connection.fetchval(
        "INSERT INTO stores (name, timezone) VALUES ($1, $2) RETURNING id", name, zone
    )
    return store


async def request_export(
    connection: Connection, *, export_format: str = "csv", store_id: UUID | None = None
) -> UUID:
    export_id = uuid.uuid4()
    await connection.execute(
        """INSERT INTO financial_exports (id, store_id, period_start, period_end, format)
           VALUES ($1, $2, $3, $4, $5)""",
        export_id,
        store_id,
        *OCTOBER,
        export_format,
    )
    return export_id


def spreadsheet_safe(value: str | None) -> str | None:
    return "'" + value if value is not None and value.startswith(FORMULA_PREFIXES) else value


def cents(value: int) -> str:
    return str(Decimal(value).scaleb(-2))


def utc_text(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Per file kind: table, time column, tie-breaker, and (column, source, conversion) in file order.
Conversion = str  # "id", "text", "raw", "time", "date", "cents"
SPECS: dict[str, tuple[str, str, str, list[tuple[str, str, Conversion]]]] = {
    "invoices": (
        "invoices",
        "issued_at",
        "number",
        [
            ("invoice_id", "id", "id"),
            ("number", "number", "text"),
            ("store_id", "store_id", "id"),
            ("store_name", "store_name", "text"),
            ("customer_id", "customer_id", "id"),
            ("issued_at", "issued_at", "time"),
            ("local_date", "issued_at", "date"),
            ("currency", "currency", "text"),
            ("subtotal", "subtotal_cents", "cents"),
            ("tax", "tax_cents", "cents"),
            ("total", "total_cents", "cents"),
            ("status", "status", "text"),
        ],
    ),
    "transactions": (
        "transactions",
        "occurred_at",
        "id",
        [
            ("transaction_id", "id", "id"),
            ("invoice_id", "invoice_id", "id"),
            ("store_id", "store_id", "id"),
            ("store_name", "store_name", "text"),
            ("occurred_at", "occurred_at", "time"),
            ("local_date", "occurred_at", "date"),
            ("amount", "amount_cents", "cents"),
            ("currency", "currency", "text"),
            ("method", "method", "text"),
            ("reference", "reference", "text"),
        ],
    ),
    "credit_notes": (
        "credit_notes",
        "issued_at",
        "number",
        [
            ("credit_note_id", "id", "id"),
            ("number", "number", "text"),
            ("invoice_id", "invoice_id", "id"),
            ("store_id", "store_id", "id"),
            ("store_name", "store_name", "text"),
            ("issued_at", "issued_at", "time"),
            ("local_date", "issued_at", "date"),
            ("amount", "amount_cents", "cents"),
            ("currency", "currency", "text"),
            ("reason", "reason", "text"),
        ],
    ),
}


def _convert(value: Any, conversion: Conversion, zone: str, *, safe: bool) -> Any:
    if value is None:
        return None
    if conversion == "id":
        return str(value)
    if conversion == "text":
        return spreadsheet_safe(value) if safe else value
    if conversion == "time":
        return utc_text(value)
    if conversion == "date":
        return value.astimezone(ZoneInfo(zone)).date().isoformat()
    return cents(value)


async def expected_rows(
    connection: Connection, kind: str, store_id: UUID | None, *, safe: bool
) -> list[dict[str, Any]]:
    """The October rows of one file as the export should show them, computed here in Python."""
    table, time_column, tie, columns = SPECS[kind]
    # Test-chosen identifiers from SPECS, not input.
    rows = await connection.fetch(
        f"""SELECT x.*, s.name AS store_name, s.timezone FROM {table} x JOIN stores s ON s.id = x.store_id
            WHERE $1::uuid IS NULL OR x.store_id = $1 ORDER BY x.{time_column}, x.{tie}""",
        store_id,
    )
    expected = []
    for row in rows:
        local_date = row[time_column].astimezone(ZoneInfo(row["timezone"])).date()
        if OCTOBER[0] <= local_date <= OCTOBER[1]:
            expected.append(
                {
                    name: _convert(row[source], how, row["timezone"], safe=safe)
                    for name, source, how in columns
                }
            )
    return expected


POISON = "POISON"
POISON_MESSAGE = "poisoned text cell (fault injected)"
# The migration's cell function, plus a real PostgreSQL error (class 22, a DataError) on POISON.
_POISONED_TEXT_FUNCTION = f"""
CREATE OR REPLACE FUNCTION petcare_export_text(value text, spreadsheet_safe boolean) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF value = '{POISON}' THEN
        RAISE EXCEPTION '{POISON_MESSAGE}' USING ERRCODE = 'data_exception';
    END IF;
    RETURN CASE WHEN spreadsheet_safe AND ascii(value) IN (61, 43, 45, 64, 9, 13)
                THEN chr(39) || value ELSE value END;
END
$$
"""


async def poison_text_cells(connection: Connection) -> None:
    """Make every export query that meets a text cell `POISON` fail inside PostgreSQL; the cell
    function all row queries call is replaced in this test's own database only."""
    await connection.execute(_POISONED_TEXT_FUNCTION)


async def table_rows(pool: asyncpg.Pool, table: str) -> int:
    async with pool.acquire() as connection:
        count: int = await connection.fetchval(f"SELECT count(*) FROM {table}")  # test-chosen name
    return count


@asynccontextmanager
async def export_worker(
    client: Client,
    task_queue: str,
    pool: asyncpg.Pool,
    destination: Destination,
    limits: StreamLimits | None = None,
    max_cached_workflows: int = 1000,
) -> AsyncIterator[None]:
    """The real export workflow and activities on `task_queue`. Heartbeats reach the server at
    least every second (the SDK's default throttle is 0.8 x the heartbeat timeout), so a
    cancellation reaches the uploads within a second or two of their next heartbeat."""
    activities = ExportActivities(pool, destination, limits or StreamLimits(heartbeat_seconds=0.5))
    # Notices go nowhere unless a test's stores have an email (these have none): no SMTP needed.
    notices = ExportNoticeActivities(
        pool, Mailer(SmtpSettings()), ExportSettings(), sender="exports@petcare.test"
    )
    async with (
        Worker(
            client,
            task_queue=task_queue,
            workflows=[FinancialExportWorkflow],
            activities=[*activities.status_methods(), notices.notify_completed],
            max_cached_workflows=max_cached_workflows,
        ),
        Worker(
            client,
            task_queue=upload_task_queue(task_queue),
            activities=activities.upload_methods(),
            max_heartbeat_throttle_interval=timedelta(seconds=1),
        ),
    ):
        yield


async def start_export(
    client: Client, task_queue: str, export_id: UUID, *, force: bool = False
) -> WorkflowHandle[FinancialExportWorkflow, FinancialExportResult]:
    """Start the export's workflow under its one workflow id, as the API does."""
    return await client.start_workflow(
        FinancialExportWorkflow.run,
        FinancialExportInput(export_id=export_id, force=force),
        id=export_workflow_id(export_id),
        task_queue=task_queue,
    )


async def started_attempts(
    handle: WorkflowHandle[FinancialExportWorkflow, FinancialExportResult],
) -> list[int]:
    """The attempt of each activity as its history records it (the last attempt only)."""
    return [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]


def upload_environment() -> ActivityEnvironment:
    """An environment for the upload activities with the workflow's budget per attempt (their
    COPY's timeout derives from it; ActivityEnvironment's own default is 1 s)."""
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, start_to_close_timeout=UPLOAD_TIMEOUT)
    return environment


@asynccontextmanager
async def tables_locked(database_url: str, *tables: str) -> AsyncIterator[None]:
    """Hold an exclusive lock on `tables` (test-chosen names): any COPY of them waits, sending nothing."""
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            for table in tables:
                await connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await connection.close()


async def export_status(pool: asyncpg.Pool, export_id: UUID) -> tuple[str, str | None]:
    row = await pool.fetchrow("SELECT status, error FROM financial_exports WHERE id = $1", export_id)
    assert row is not None
    return row["status"], row["error"]
