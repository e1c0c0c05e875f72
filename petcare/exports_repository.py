"""All of the financial export's SQL: the `financial_exports` rows (requests and reads, shared with
the API; status transitions, the activities') and the row queries COPY streams into the files.

The row queries (`export_query`) cover every store, or one store (StorePeriod); CSV cells are
made spreadsheet-safe.

A row belongs to the period when its time falls on one of those calendar days in its store's own
time zone: an invoice at 22:30 on 31 October in New York is October's, although it is 1 November
in UTC. Amounts are decimal strings made exactly from integer cents (`cents * 0.01` has scale 2:
-5 → -0.05); timestamps are UTC ISO-8601 (`2025-11-01T02:30:00.000000Z`) beside the store-local
date that put the row in the period. Rows come in a fixed order so a re-export is byte-identical.

Columns, in file order:
  invoices:      invoice_id, number, store_id, store_name, customer_id, issued_at, local_date,
                 currency, subtotal, tax, total, status
  transactions:  transaction_id, invoice_id, store_id, store_name, occurred_at, local_date,
                 amount, currency, method, reference
  credit_notes:  credit_note_id, number, invoice_id, store_id, store_name, issued_at, local_date,
                 amount, currency, reason
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from petcare.db import Connection
from petcare.models.exports import (
    DATA_KINDS,
    EXPORT_WORKFLOW_ID_PREFIX,
    ExportedFile,
    ExportFormat,
    ExportOrigin,
    ExportStatus,
    FileKind,
    MonthlyExport,
)

# --- The export's row: requests, status transitions and reads ---

# Kept short enough for an operator's screen and the row; the full failure is in Temporal.
MAX_ERROR_LENGTH = 2000

INSERT_REQUEST = """
WITH new AS (SELECT gen_random_uuid() AS id)
INSERT INTO financial_exports (id, store_id, period_start, period_end, format, workflow_id, origin)
SELECT new.id, $1, $2, $3, $4, $5 || new.id::text, $6
FROM new
WHERE $1::uuid IS NULL OR EXISTS (SELECT 1 FROM stores WHERE id = $1::uuid)
RETURNING id, status, workflow_id
"""

_EXPORT_COLUMNS = """id, store_id, period_start, period_end, format, status, origin, requested_at,
       started_at, completed_at, error, files, workflow_id"""

SELECT_EXPORT = f"SELECT {_EXPORT_COLUMNS} FROM financial_exports WHERE id = $1"

# Newest first, paged by the keyset (requested_at, id) of the last row of the previous page ($6,
# $7). A period filter keeps the exports whose period lies within [periodFrom, periodTo].
LIST_EXPORTS = f"""
SELECT {_EXPORT_COLUMNS} FROM financial_exports
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::uuid IS NULL OR store_id = $2)
  AND ($3::text IS NULL OR origin = $3)
  AND ($4::date IS NULL OR period_start >= $4)
  AND ($5::date IS NULL OR period_end <= $5)
  AND ($6::timestamptz IS NULL OR (requested_at, id) < ($6, $7::uuid))
ORDER BY requested_at DESC, id DESC
LIMIT $8
"""

# --- Idempotent requests: the key, the request's digest, the export it created ---

# Inserted in the export's own transaction: of two requests with one key, the second waits here
# for the first to commit, then inserts nothing (and rolls its own export back).
CLAIM_IDEMPOTENCY_KEY = """
INSERT INTO financial_export_requests (idempotency_key, request_digest, export_id)
VALUES ($1, $2, $3)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING export_id
"""

SELECT_IDEMPOTENCY_KEY = """
SELECT request_digest, export_id FROM financial_export_requests WHERE idempotency_key = $1
"""

# Keys are kept at least IDEMPOTENCY_KEY_HOURS; older ones go a few at a time with each new key.
PURGE_IDEMPOTENCY_KEYS = """
DELETE FROM financial_export_requests
WHERE idempotency_key IN (
    SELECT idempotency_key FROM financial_export_requests
    WHERE created_at < now() - make_interval(hours => $1)
    ORDER BY created_at LIMIT 100
)
"""
IDEMPOTENCY_KEY_HOURS = 24

# --- The monthly close: one export per store, month, format (the partial unique key) ---

STORES_PAGE = """
SELECT id, timezone FROM stores
WHERE $1::uuid IS NULL OR id > $1::uuid
ORDER BY id
LIMIT $2
"""

# Set-based for a page of stores ($1, $2, $3 in step). A row an earlier trigger made is left alone.
INSERT_MONTHLY = """
INSERT INTO financial_exports (id, store_id, period_start, period_end, format, origin, workflow_id)
SELECT w.id, w.store_id, w.period_start, w.period_end, $4, 'monthly', $5 || w.id::text
FROM (SELECT gen_random_uuid() AS id, u.*
      FROM unnest($1::uuid[], $2::date[], $3::date[]) AS u(store_id, period_start, period_end)) AS w
ON CONFLICT (store_id, period_start, period_end, format) WHERE origin = 'monthly' DO NOTHING
RETURNING id
"""

SELECT_MONTHLY = """
SELECT e.id, e.store_id, e.period_start, e.period_end, e.status
FROM financial_exports e
JOIN unnest($1::uuid[], $2::date[], $3::date[]) AS u(store_id, period_start, period_end)
  ON e.store_id = u.store_id AND e.period_start = u.period_start AND e.period_end = u.period_end
WHERE e.origin = 'monthly' AND e.format = $4
ORDER BY e.store_id
"""

# --- The completion notice: where it goes, and the record that it went ---

NOTICE_TARGET = """
SELECT e.id, e.store_id, e.period_start, e.period_end, e.format, s.name AS store_name,
       s.email AS store_email
FROM financial_exports e LEFT JOIN stores s ON s.id = e.store_id
WHERE e.id = $1
"""

# The claim exists before the send; only a run whose notice has `sent_at` is skipped on retry.
CLAIM_NOTICE = """
INSERT INTO financial_export_notices (run_id, export_id, recipient)
VALUES ($1, $2, $3)
ON CONFLICT (run_id) DO UPDATE SET recipient = EXCLUDED.recipient
RETURNING sent_at IS NOT NULL
"""

MARK_NOTICE_SENT = "UPDATE financial_export_notices SET sent_at = now() WHERE run_id = $1"

# Pending exports, and `processing` ones: a run that was terminated or timed out leaves its export
# `processing` (no workflow code runs then). Starting under the export's fixed workflow id decides:
# a run still going is joined, a closed one lets the export run again.
SELECT_STARTABLE = """
SELECT id, store_id FROM financial_exports
WHERE status IN ('pending', 'processing')
ORDER BY requested_at
LIMIT $1
"""

SELECT_SUMMARIES = """
SELECT e.id, e.period_start, e.period_end, e.format, s.name AS store_name
FROM financial_exports AS e LEFT JOIN stores AS s ON s.id = e.store_id
WHERE e.id = ANY($1::uuid[])
"""

# Claims the export for this workflow run. A `processing` row is claimed again on purpose: the
# workflow id admits one run at a time, so such a row was left by a run that is gone (terminated
# or timed out).
CLAIM = """
UPDATE financial_exports
SET status = 'processing', started_at = now(), completed_at = NULL, error = NULL, workflow_id = $2
WHERE id = $1 AND (status <> 'completed' OR $3::boolean)
RETURNING id
"""

COMPLETE = """
UPDATE financial_exports
SET status = 'completed', completed_at = now(), error = NULL, files = $2::jsonb
WHERE id = $1
"""

# While a run writes, `files` follows the destination file by file, so a run that fails half-way
# leaves the row listing what is really there. Before a file (or the manifest) is replaced it is
# forgotten, and recorded again once in place: the row may list less than the destination holds,
# never a file that is not there as listed. Entries keep the manifest's order whatever the
# order the parallel uploads finish in.
FORGET_FILES = """
UPDATE financial_exports
SET files = COALESCE(
    (SELECT jsonb_agg(e.entry ORDER BY e.position)
     FROM jsonb_array_elements(files) WITH ORDINALITY AS e(entry, position)
     WHERE NOT (e.entry->>'name' = ANY($2::text[]))),
    '[]'::jsonb)
WHERE id = $1 AND status = 'processing'
RETURNING id
"""

RECORD_FILE = """
UPDATE financial_exports
SET files = (
    SELECT jsonb_agg(kept.entry ORDER BY array_position($3::text[], kept.entry->>'kind'))
    FROM (SELECT e.entry FROM jsonb_array_elements(files) AS e(entry)
          WHERE e.entry->>'name' <> $2::jsonb->>'name'
          UNION ALL SELECT $2::jsonb) AS kept(entry)
)
WHERE id = $1
"""

# Never over a completed export: a run cancelled while it recorded its completion must not
# call complete files failed (a later forced run sets `processing` first).
FAIL = """
UPDATE financial_exports SET status = 'failed', completed_at = NULL, error = left($2, $3)
WHERE id = $1 AND status <> 'completed'
"""


@dataclass(frozen=True)
class ExportRow:
    id: UUID
    store_id: UUID | None
    period_start: date
    period_end: date
    format: ExportFormat
    status: ExportStatus
    origin: ExportOrigin
    requested_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None
    files: list[ExportedFile]
    workflow_id: str | None


def _files(value: Any) -> list[ExportedFile]:
    # asyncpg returns jsonb as text unless a codec is set; the pool is shared, so parse here.
    items = json.loads(value) if isinstance(value, str) else value
    return [ExportedFile.model_validate(item) for item in items or []]


def _entry(file: ExportedFile) -> dict[str, Any]:
    return file.model_dump(mode="json", by_alias=True)


def files_json(files: list[ExportedFile]) -> str:
    return json.dumps([_entry(file) for file in files])


async def insert_request(
    connection: Connection,
    *,
    store_id: UUID | None,
    period_start: date,
    period_end: date,
    export_format: ExportFormat,
    origin: ExportOrigin = "backend",
) -> tuple[UUID, ExportStatus, str] | None:
    """The new export's id, status and workflow id; None when the store does not exist."""
    row = await connection.fetchrow(
        INSERT_REQUEST, store_id, period_start, period_end, export_format, EXPORT_WORKFLOW_ID_PREFIX, origin
    )
    return None if row is None else (row["id"], row["status"], row["workflow_id"])


def _export_row(row: asyncpg.Record) -> ExportRow:
    return ExportRow(**{**dict(row), "files": _files(row["files"])})


async def fetch_export(connection: Connection, export_id: UUID) -> ExportRow | None:
    row = await connection.fetchrow(SELECT_EXPORT, export_id)
    return None if row is None else _export_row(row)


@dataclass(frozen=True)
class ExportFilters:
    status: ExportStatus | None = None
    store_id: UUID | None = None
    origin: ExportOrigin | None = None
    period_from: date | None = None
    period_to: date | None = None


async def list_exports(
    connection: Connection,
    filters: ExportFilters,
    *,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[ExportRow]:
    """Newest first; `after` is the (requested_at, id) of the previous page's last export."""
    after_time, after_id = after or (None, None)
    rows = await connection.fetch(
        LIST_EXPORTS,
        filters.status,
        filters.store_id,
        filters.origin,
        filters.period_from,
        filters.period_to,
        after_time,
        after_id,
        limit,
    )
    return [_export_row(row) for row in rows]


async def claim_idempotency_key(
    connection: Connection, key: str, digest: str, export_id: UUID
) -> UUID | None:
    """Record `key` for this new export (in its transaction); None if the key was taken already."""
    await connection.execute(PURGE_IDEMPOTENCY_KEYS, IDEMPOTENCY_KEY_HOURS)
    claimed: UUID | None = await connection.fetchval(CLAIM_IDEMPOTENCY_KEY, key, digest, export_id)
    return claimed


async def idempotency_key(connection: Connection, key: str) -> tuple[str, UUID] | None:
    """The request digest and the export of a key already used, if any."""
    row = await connection.fetchrow(SELECT_IDEMPOTENCY_KEY, key)
    return None if row is None else (row["request_digest"], row["export_id"])


async def stores_page(
    connection: Connection, after_store_id: UUID | None, limit: int
) -> list[tuple[UUID, str]]:
    """Id and time zone of the next `limit` stores by id."""
    rows = await connection.fetch(STORES_PAGE, after_store_id, limit)
    return [(row["id"], row["timezone"]) for row in rows]


async def create_monthly(
    connection: Connection,
    periods: list[tuple[UUID, date, date]],
    export_format: ExportFormat,
) -> list[MonthlyExport]:
    """The monthly export of each (store, first day, last day): created, or the one made before."""
    columns = [list(column) for column in zip(*periods, strict=True)] if periods else [[], [], []]
    async with connection.transaction():
        created = {
            row["id"]
            for row in await connection.fetch(
                INSERT_MONTHLY, *columns, export_format, EXPORT_WORKFLOW_ID_PREFIX
            )
        }
        rows = await connection.fetch(SELECT_MONTHLY, *columns, export_format)
    return [
        MonthlyExport(**{**dict(row), "export_id": row["id"]}, created=row["id"] in created) for row in rows
    ]


async def notice_target(connection: Connection, export_id: UUID) -> asyncpg.Record | None:
    """Period, format, store name and store email of an export (see NOTICE_TARGET)."""
    row: asyncpg.Record | None = await connection.fetchrow(NOTICE_TARGET, export_id)
    return row


async def claim_notice(connection: Connection, run_id: str, export_id: UUID, recipient: str) -> bool:
    """Record the notice of this run as being sent; True if it was sent already."""
    return bool(await connection.fetchval(CLAIM_NOTICE, run_id, export_id, recipient))


async def mark_notice_sent(connection: Connection, run_id: str) -> None:
    await connection.execute(MARK_NOTICE_SENT, run_id)


async def startable_exports(connection: Connection, limit: int) -> list[tuple[UUID, UUID | None]]:
    """Id and store of the oldest pending or processing exports (see SELECT_STARTABLE)."""
    return [(row["id"], row["store_id"]) for row in await connection.fetch(SELECT_STARTABLE, limit)]


async def summary_rows(connection: Connection, export_ids: list[UUID]) -> list[asyncpg.Record]:
    """Period, format and store name of each export: what its Web UI summary says."""
    return list(await connection.fetch(SELECT_SUMMARIES, export_ids))


async def claim(connection: Connection, export_id: UUID, *, workflow_id: str, force: bool) -> bool:
    """Mark the export processing for this run; False when it is completed (and not forced) or absent."""
    return await connection.fetchval(CLAIM, export_id, workflow_id, force) is not None


async def complete(connection: Connection, export_id: UUID, files: list[ExportedFile]) -> None:
    await connection.execute(COMPLETE, export_id, files_json(files))


async def forget_files(connection: Connection, export_id: UUID, names: list[str]) -> bool:
    """Drop these files from the row's list (they are about to be replaced or removed); False, and
    nothing dropped, unless the export is `processing`: its run has recorded how it ended."""
    return await connection.fetchval(FORGET_FILES, export_id, names) is not None


async def record_file(connection: Connection, export_id: UUID, file: ExportedFile) -> None:
    """Add (or replace) one file in the row's list once it is in place at the destination."""
    await connection.execute(RECORD_FILE, export_id, json.dumps(_entry(file)), [*DATA_KINDS, "manifest"])


async def fail(connection: Connection, export_id: UUID, error: str) -> None:
    await connection.execute(FAIL, export_id, error, MAX_ERROR_LENGTH)


# --- The files: one row query per kind, formatted entirely by PostgreSQL through COPY ---

# UTC with microseconds, so a parsed value equals the stored timestamptz exactly.
_UTC = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""


@dataclass(frozen=True)
class StorePeriod:
    """A single-store export's store and period, as the row queries take them: the period's two
    bounds as instants (computed by PostgreSQL in the store's zone, exactly as the all-stores
    queries compute each row's), its name and its zone."""

    store_id: UUID
    name: str
    timezone: str
    starts: datetime
    ends: datetime  # exclusive: the first instant of the day after the period


STORE_PERIOD = """
SELECT id AS store_id, name, timezone,
       $1::date::timestamp AT TIME ZONE timezone AS starts,
       ($2::date + 1)::timestamp AT TIME ZONE timezone AS ends
FROM stores WHERE id = $3
"""


async def store_period(
    connection: Connection, store_id: UUID, period_start: date, period_end: date
) -> StorePeriod | None:
    row = await connection.fetchrow(STORE_PERIOD, period_start, period_end, store_id)
    return None if row is None else StorePeriod(**dict(row))


@dataclass(frozen=True)
class _Table:
    """One file's rows: the table, its time column, its tie-breaker and its cells."""

    table: str
    alias: str
    time: str
    tie_breaker: str
    columns: str  # {store_name}, {zone}, {safe} and {amount[column]} are filled in by _row_query


_TABLES: dict[FileKind, _Table] = {
    "invoices": _Table(
        "invoices",
        "i",
        "issued_at",
        "number",
        f"""i.id AS invoice_id,
       petcare_export_text(i.number, {{safe}}) AS number,
       i.store_id,
       petcare_export_text({{store_name}}, {{safe}}) AS store_name,
       i.customer_id,
       to_char(i.issued_at AT TIME ZONE 'UTC', {_UTC}) AS issued_at,
       (i.issued_at AT TIME ZONE {{zone}})::date AS local_date,
       petcare_export_text(i.currency::text, {{safe}}) AS currency,
       {{amount[subtotal_cents]}} AS subtotal,
       {{amount[tax_cents]}} AS tax,
       {{amount[total_cents]}} AS total,
       petcare_export_text(i.status, {{safe}}) AS status""",
    ),
    "transactions": _Table(
        "transactions",
        "t",
        "occurred_at",
        "id",
        f"""t.id AS transaction_id,
       t.invoice_id,
       t.store_id,
       petcare_export_text({{store_name}}, {{safe}}) AS store_name,
       to_char(t.occurred_at AT TIME ZONE 'UTC', {_UTC}) AS occurred_at,
       (t.occurred_at AT TIME ZONE {{zone}})::date AS local_date,
       {{amount[amount_cents]}} AS amount,
       petcare_export_text(t.currency::text, {{safe}}) AS currency,
       petcare_export_text(t.method, {{safe}}) AS method,
       petcare_export_text(t.reference, {{safe}}) AS reference""",
    ),
    "credit_notes": _Table(
        "credit_notes",
        "c",
        "issued_at",
        "number",
        f"""c.id AS credit_note_id,
       petcare_export_text(c.number, {{safe}}) AS number,
       c.invoice_id,
       c.store_id,
       petcare_export_text({{store_name}}, {{safe}}) AS store_name,
       to_char(c.issued_at AT TIME ZONE 'UTC', {_UTC}) AS issued_at,
       (c.issued_at AT TIME ZONE {{zone}})::date AS local_date,
       {{amount[amount_cents]}} AS amount,
       petcare_export_text(c.currency::text, {{safe}}) AS currency,
       petcare_export_text(c.reason, {{safe}}) AS reason""",
    ),
}


class _Amounts:
    """`{amount[total_cents]}` in a table's cells: the amount column as a decimal."""

    def __init__(self, alias: str, export_format: ExportFormat) -> None:
        self._alias = alias
        self._format = export_format

    def __getitem__(self, column: str) -> str:
        # `cents * 0.01` is exact with scale 2 (-5 -> -0.05). COPY writes a numeric in CSV as its
        # text already; JSON needs the text (a string, "0.05") where row_to_json would write a
        # number. The cast is not free (0.2 CPU-s per million invoices), so CSV goes without it.
        value = f"{self._alias}.{column} * 0.01"
        return f"({value})::text" if self._format == "json" else value


def _row_query(kind: FileKind, export_format: ExportFormat, *, one_store: bool) -> str:
    """The SELECT of one file's rows, in file order. Parameters:

    all stores: $1 first local day, $2 last local day (inclusive), $3 spreadsheet-safe text.
                Each row's bounds in its own store's zone, through the join (a parallel scan of
                the period, then one sort).
    one store:  $1 first instant, $2 end instant (exclusive), $3 store id, $4 spreadsheet-safe,
                $5 store name, $6 zone (StorePeriod). COPY sends parameters as literals
                (asyncpg inlines them), so the planner knows the range: the store's
                (store_id, time, tie-breaker) index returns the period already in file order,
                with no sort and no join.
    """
    table = _TABLES[kind]
    alias, time = table.alias, f"{table.alias}.{table.time}"
    amount = _Amounts(alias, export_format)
    if one_store:
        cells = table.columns.format(store_name="$5::text", zone="$6::text", safe="$4", amount=amount)
        source = f"""FROM {table.table} {alias}
WHERE {alias}.store_id = $3::uuid AND {time} >= $1::timestamptz AND {time} < $2::timestamptz"""
    else:
        cells = table.columns.format(store_name="s.name", zone="s.timezone", safe="$3", amount=amount)
        source = f"""FROM {table.table} {alias}
JOIN stores s ON s.id = {alias}.store_id
WHERE {time} >= ($1::date::timestamp AT TIME ZONE s.timezone)
  AND {time} < (($2::date + 1)::timestamp AT TIME ZONE s.timezone)"""
    return f"SELECT {cells}\n{source}\nORDER BY {time}, {alias}.{table.tie_breaker}"


# The zones the row queries convert with: every store's, or the one store's of a single-store
# export ($1). PostgreSQL accepts names the project does not (POSIX `UTC+3` is three hours *behind*
# UTC), so the activity checks each with the project's own parser before the first row query.
STORE_ZONES = """
SELECT id, name, timezone FROM stores
WHERE $1::uuid IS NULL OR id = $1::uuid
ORDER BY name, id
"""

# JSON lines: one object per row, keys as the CSV header. row_to_json escapes every control
# character, so COPY's CSV mode with quote and delimiter bytes that never occur passes each line
# through untouched (text mode would double the backslashes of JSON escapes).
_JSON_LINES = "SELECT row_to_json(r) FROM ({rows}) r"
COPY_OPTIONS: dict[ExportFormat, dict[str, Any]] = {
    "csv": {"format": "csv", "header": True},
    "json": {"format": "csv", "quote": "\x01", "delimiter": "\x02"},
}


def export_query(
    kind: FileKind,
    export_format: ExportFormat,
    *,
    period_start: date,
    period_end: date,
    store: StorePeriod | None,
) -> tuple[str, tuple[Any, ...]]:
    """The SELECT to COPY for one file and its parameters: every store's rows of the period, or
    one store's (see _row_query)."""
    rows = _row_query(kind, export_format, one_store=store is not None)
    query = rows if export_format == "csv" else _JSON_LINES.format(rows=rows)
    safe = export_format == "csv"
    if store is None:
        return query, (period_start, period_end, safe)
    return query, (store.starts, store.ends, store.store_id, safe, store.name, store.timezone)


async def store_zones(connection: Connection, store_id: UUID | None) -> list[asyncpg.Record]:
    """Id, name and time zone of each store the export covers (see STORE_ZONES)."""
    return list(await connection.fetch(STORE_ZONES, store_id))
