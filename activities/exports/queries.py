"""The export queries: one row query per file kind, formatted entirely by PostgreSQL through COPY.

Parameters of every row query: $1 first local day, $2 last local day (inclusive), $3 store id or
NULL for all stores, $4 true to make text cells spreadsheet-safe (CSV only).

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

from typing import Any

from petcare.models.exports import ExportFormat, FileKind

# UTC with microseconds, so a parsed value equals the stored timestamptz exactly.
_UTC = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""

INVOICE_ROWS = f"""
SELECT i.id AS invoice_id,
       petcare_export_text(i.number, $4) AS number,
       i.store_id,
       petcare_export_text(s.name, $4) AS store_name,
       i.customer_id,
       to_char(i.issued_at AT TIME ZONE 'UTC', {_UTC}) AS issued_at,
       (i.issued_at AT TIME ZONE s.timezone)::date AS local_date,
       petcare_export_text(i.currency::text, $4) AS currency,
       (i.subtotal_cents * 0.01)::text AS subtotal,
       (i.tax_cents * 0.01)::text AS tax,
       (i.total_cents * 0.01)::text AS total,
       petcare_export_text(i.status, $4) AS status
FROM invoices i
JOIN stores s ON s.id = i.store_id
WHERE ($3::uuid IS NULL OR i.store_id = $3::uuid)
  AND i.issued_at >= ($1::date::timestamp AT TIME ZONE s.timezone)
  AND i.issued_at < (($2::date + 1)::timestamp AT TIME ZONE s.timezone)
ORDER BY i.issued_at, i.number
"""

TRANSACTION_ROWS = f"""
SELECT t.id AS transaction_id,
       t.invoice_id,
       t.store_id,
       petcare_export_text(s.name, $4) AS store_name,
       to_char(t.occurred_at AT TIME ZONE 'UTC', {_UTC}) AS occurred_at,
       (t.occurred_at AT TIME ZONE s.timezone)::date AS local_date,
       (t.amount_cents * 0.01)::text AS amount,
       petcare_export_text(t.currency::text, $4) AS currency,
       petcare_export_text(t.method, $4) AS method,
       petcare_export_text(t.reference, $4) AS reference
FROM transactions t
JOIN stores s ON s.id = t.store_id
WHERE ($3::uuid IS NULL OR t.store_id = $3::uuid)
  AND t.occurred_at >= ($1::date::timestamp AT TIME ZONE s.timezone)
  AND t.occurred_at < (($2::date + 1)::timestamp AT TIME ZONE s.timezone)
ORDER BY t.occurred_at, t.id
"""

CREDIT_NOTE_ROWS = f"""
SELECT c.id AS credit_note_id,
       petcare_export_text(c.number, $4) AS number,
       c.invoice_id,
       c.store_id,
       petcare_export_text(s.name, $4) AS store_name,
       to_char(c.issued_at AT TIME ZONE 'UTC', {_UTC}) AS issued_at,
       (c.issued_at AT TIME ZONE s.timezone)::date AS local_date,
       (c.amount_cents * 0.01)::text AS amount,
       petcare_export_text(c.currency::text, $4) AS currency,
       petcare_export_text(c.reason, $4) AS reason
FROM credit_notes c
JOIN stores s ON s.id = c.store_id
WHERE ($3::uuid IS NULL OR c.store_id = $3::uuid)
  AND c.issued_at >= ($1::date::timestamp AT TIME ZONE s.timezone)
  AND c.issued_at < (($2::date + 1)::timestamp AT TIME ZONE s.timezone)
ORDER BY c.issued_at, c.number
"""

# The zones the row queries convert with: every store's, or the one store's of a single-store
# export ($1). PostgreSQL accepts names the project does not (POSIX `UTC+3` is three hours *behind*
# UTC), so the activity checks each with the project's own parser before the first row query.
STORE_ZONES = """
SELECT id, name, timezone FROM stores
WHERE $1::uuid IS NULL OR id = $1::uuid
ORDER BY name, id
"""

ROW_QUERIES: dict[FileKind, str] = {
    "invoices": INVOICE_ROWS,
    "transactions": TRANSACTION_ROWS,
    "credit_notes": CREDIT_NOTE_ROWS,
}

# JSON lines: one object per row, keys as the CSV header. row_to_json escapes every control
# character, so COPY's CSV mode with quote and delimiter bytes that never occur passes each line
# through untouched (text mode would double the backslashes of JSON escapes).
_JSON_LINES = "SELECT row_to_json(r) FROM ({rows}) r"
COPY_OPTIONS: dict[ExportFormat, dict[str, Any]] = {
    "csv": {"format": "csv", "header": True},
    "json": {"format": "csv", "quote": "\x01", "delimiter": "\x02"},
}


def export_query(kind: FileKind, export_format: ExportFormat) -> str:
    """The SELECT to COPY for one file; parameters as in the module docstring."""
    rows = ROW_QUERIES[kind]
    return rows if export_format == "csv" else _JSON_LINES.format(rows=rows)
