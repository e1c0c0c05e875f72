"""Export files against real PostgreSQL: period edges across time zones, CSV/JSON read back, formula cells."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.exports import ExportActivities
from activities.exports.destinations import LocalDestination
from activities.exports.streaming import StreamLimits
from petcare import exports_repository
from petcare.db import Connection
from petcare.models.exports import DATA_KINDS, BeginRequest, ExportFormat, ExportPlan, FileKind, FileRequest
from tests.support.exports import FORMULA_PREFIXES, expected_rows, request_export, seed, upload_environment

# Tiny blocks, so even these few rows travel through several queued blocks.
LIMITS = StreamLimits(block_bytes=4096, queue_blocks=2)


async def plan_for(activities: ExportActivities, export_id: UUID) -> ExportPlan:
    request = BeginRequest(export_id=export_id, force=False, workflow_id=f"test-{export_id}")
    plan: ExportPlan = await ActivityEnvironment().run(activities.begin, request)
    return plan


async def export_file(
    pool: asyncpg.Pool, root: Path, export_format: str, kind: FileKind, store_id: UUID | None = None
) -> tuple[bytes, int]:
    activities = ExportActivities(pool, LocalDestination(root), LIMITS)
    async with pool.acquire() as connection:
        export_id = await request_export(connection, export_format=export_format, store_id=store_id)
    plan = await plan_for(activities, export_id)
    exported = await upload_environment().run(activities.write_file, FileRequest(plan=plan, kind=kind))
    data = await asyncio.to_thread(Path(exported.remote_path).read_bytes)
    assert exported.bytes == len(data)
    return data, exported.rows


def read_csv(data: bytes) -> list[dict[str, Any]]:
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    # PostgreSQL writes NULL as an empty unquoted cell; the test data has no empty strings.
    return [{key: value if value != "" else None for key, value in row.items()} for row in rows]


@pytest.mark.parametrize("kind", DATA_KINDS)
async def test_csv_read_back_equals_the_database_rows(
    pool: asyncpg.Pool, tmp_path: Path, kind: FileKind
) -> None:
    async with pool.acquire() as connection:
        await seed(connection)
        expected = await expected_rows(connection, kind, None, safe=True)
    data, rows = await export_file(pool, tmp_path, "csv", kind)
    assert read_csv(data) == expected
    assert rows == len(expected) == 4  # two rows inside October in each of two stores


@pytest.mark.parametrize("kind", DATA_KINDS)
async def test_json_lines_read_back_equal_the_database_rows(
    pool: asyncpg.Pool, tmp_path: Path, kind: FileKind
) -> None:
    async with pool.acquire() as connection:
        await seed(connection)
        expected = await expected_rows(connection, kind, None, safe=False)
    data, rows = await export_file(pool, tmp_path, "json", kind)
    lines = data.decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == expected
    assert rows == len(lines) == 4


async def test_period_is_local_calendar_days_of_each_store(pool: asyncpg.Pool, tmp_path: Path) -> None:
    async with pool.acquire() as connection:
        seeded = await seed(connection)
    data, _ = await export_file(pool, tmp_path, "csv", "invoices")
    numbers = {row["number"] for row in read_csv(data)}
    # 22:30 on 31 October in New York is 1 November in UTC, and still October's.
    assert numbers == seeded.in_october
    assert "NY-LAST" in numbers
    assert "TK-NEXT" not in numbers

    only_tokyo, _ = await export_file(pool, tmp_path / "tokyo", "csv", "invoices", store_id=seeded.tokyo)
    assert {row["number"] for row in read_csv(only_tokyo)} == {"TK-FIRST", "TK-LAST"}


async def test_formula_cells_are_neutralised_in_csv_only(pool: asyncpg.Pool, tmp_path: Path) -> None:
    formulas = ["=1+2", "+SUM(A1)", "-3", "@cmd", "\tTAB", "\rCR", '=HYPERLINK("http://evil")']
    async with pool.acquire() as connection:
        seeded = await seed(connection)
        for formula in formulas:
            await connection.execute(
                """INSERT INTO transactions (store_id, occurred_at, amount_cents, currency, method, reference)
                   VALUES ($1, '2025-10-15T12:00:00Z', -250, 'USD', $2, 'plain')""",
                seeded.new_york,
                formula,
            )
    csv_rows = read_csv((await export_file(pool, tmp_path / "csv", "csv", "transactions"))[0])
    methods = {row["method"] for row in csv_rows}
    assert {"'" + formula for formula in formulas} <= methods
    text_cells = [
        row[name] for row in csv_rows for name in ("store_name", "method", "reference") if row[name]
    ]
    assert not [cell for cell in text_cells if cell.startswith(FORMULA_PREFIXES)]
    # Amounts are numbers, not text: a negative amount keeps its sign.
    assert "-2.50" in {row["amount"] for row in csv_rows}

    json_data, _ = await export_file(pool, tmp_path / "json", "json", "transactions")
    json_methods = {json.loads(line)["method"] for line in json_data.decode().splitlines()}
    assert set(formulas) <= json_methods  # JSON keeps the text as stored


async def test_empty_period_gives_a_header_only_csv(pool: asyncpg.Pool, tmp_path: Path) -> None:
    data, rows = await export_file(pool, tmp_path, "csv", "credit_notes")
    assert rows == 0
    assert data.decode().splitlines() == [
        "credit_note_id,number,invoice_id,store_id,store_name,issued_at,local_date,amount,currency,reason"
    ]


async def test_completed_export_is_skipped_unless_forced(pool: asyncpg.Pool, tmp_path: Path) -> None:
    activities = ExportActivities(pool, LocalDestination(tmp_path), LIMITS)
    async with pool.acquire() as connection:
        export_id = await request_export(connection)
        await connection.execute("UPDATE financial_exports SET status = 'completed' WHERE id = $1", export_id)
    assert (await plan_for(activities, export_id)).skip
    forced = BeginRequest(export_id=export_id, force=True, workflow_id="test")
    plan = await ActivityEnvironment().run(activities.begin, forced)
    assert not plan.skip
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT status FROM financial_exports WHERE id = $1", export_id) == (
            "processing"
        )


# Zones whose clocks change at local midnight (Santiago, Havana), by half an hour (Lord Howe), at
# odd offsets (St John's, Kathmandu), or never (Tokyo).
EDGE_ZONES = (
    "Europe/Paris",
    "America/Santiago",
    "America/Havana",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Asia/Kathmandu",
    "Asia/Tokyo",
)


async def _copied_records(
    connection: Connection, query: str, args: tuple[Any, ...], export_format: ExportFormat
) -> tuple[list[bytes], list[tuple[str, bytes]]]:
    """The file's header line (CSV) and its records, each with its store id: CSV records are cut
    where the CSV reader ends them (a quoted cell may hold a line break), JSON lines at LF."""
    chunks: list[bytes] = []

    async def keep(chunk: bytes) -> None:
        chunks.append(chunk)

    options = exports_repository.COPY_OPTIONS[export_format]
    await connection.copy_from_query(query, *args, output=keep, **options)
    data = b"".join(chunks)
    if export_format == "json":
        return [], [(json.loads(line)["store_id"], line) for line in data.splitlines()]
    lines = data.decode().split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    header, records = lines[0], []
    reader = csv.reader(lines[1:])
    column = next(csv.reader([header])).index("store_id")
    consumed = 0
    for row in reader:
        # The reader reports how many physical lines it read so far: those lines are this record.
        record = "".join(lines[1 + consumed : 1 + reader.line_num])
        consumed = reader.line_num
        records.append((row[column], record.encode()))
    assert header + "".join(record.decode() for _, record in records) == data.decode(), "cut faithfully"
    return [header.encode()], records


@pytest.mark.parametrize("export_format", ["csv", "json"])
@pytest.mark.parametrize("kind", DATA_KINDS)
async def test_single_store_shape_gives_the_all_stores_rows_of_that_store(
    pool: asyncpg.Pool, kind: FileKind, export_format: ExportFormat
) -> None:
    """The one-store query (its period bounds computed once, so the store's index gives its rows in
    time order) yields exactly the rows, values and order of the all-stores query (bounds in each
    row's zone, one sort), across a year of clock changes, including changes at local midnight."""
    async with pool.acquire() as connection:
        stores = await connection.fetch(
            "INSERT INTO stores (name, timezone) SELECT 'Store ' || z, z FROM unnest($1::text[]) AS z "
            "RETURNING id",
            list(EDGE_ZONES),
        )
        # Every 41 minutes from the last day of 2024 to the first of 2026: every hour of the day,
        # both sides of each change.
        # Names a spreadsheet would run or that need quoting, a line break and a backslash.
        await connection.executemany(
            "UPDATE stores SET name = $2 WHERE id = $1",
            [(stores[0]["id"], '=HYPERLINK("x")'), (stores[1]["id"], 'Quote "Q", comma\nand \\ slash')],
        )
        # Every 41 minutes from the last day of 2024 to the first of 2026: every hour of the day,
        # both sides of each change; amounts of every sign and size, text cells with line breaks.
        await connection.execute(
            """
            WITH inserted AS (
                INSERT INTO invoices (number, store_id, issued_at, currency, subtotal_cents, tax_cents,
                                      total_cents, status)
                SELECT 'E-' || s.n || '-' || g.n, s.id,
                       timestamptz '2024-12-31 00:00+00' + g.n * interval '41 minutes', 'EUR',
                       (g.n % 7 - 3) * 123457, -(g.n % 5), g.n - 4000, 'paid'
                  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM stores) AS s,
                       generate_series(0, 366 * 24 * 60 / 41 + 80) AS g(n)
                RETURNING id, store_id, issued_at, number, total_cents
            ), tx AS (
                INSERT INTO transactions (invoice_id, store_id, occurred_at, amount_cents, currency, method,
                                          reference)
                SELECT id, store_id, issued_at, total_cents, 'EUR', 'card',
                       CASE WHEN total_cents % 3 = 0 THEN E'two\nlines, "quoted"' ELSE '-' || number END
                  FROM inserted
            )
            INSERT INTO credit_notes (number, invoice_id, store_id, issued_at, amount_cents, currency, reason)
            SELECT 'C' || number, id, store_id, issued_at, -total_cents, 'EUR', E'refund\r\nagain'
              FROM inserted
            """
        )
        period = {"period_start": date(2025, 1, 1), "period_end": date(2025, 12, 31)}
        query, args = exports_repository.export_query(kind, export_format, **period, store=None)
        header, every_store = await _copied_records(connection, query, args, export_format)
        for store in stores:
            one = await exports_repository.store_period(connection, store["id"], **period)
            assert one is not None
            query, args = exports_repository.export_query(kind, export_format, **period, store=one)
            one_header, one_store = await _copied_records(connection, query, args, export_format)
            assert len(one_store) > 100, "each store has rows in the period"
            # The same bytes: the CSV header, then the store's records in the same order.
            assert one_header == header
            assert one_store == [record for record in every_store if record[0] == str(store["id"])]
