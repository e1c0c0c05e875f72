"""Idempotent demo data for every domain: fixed ids, `ON CONFLICT DO NOTHING`, set-based inserts."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from devstack.demo_rows import (
    PET_NAMES,
    SERVICES,
    STORES,
    appointments,
    customers,
    demo_id,
    money,
    stock_rows,
)
from petcare.db import Connection

# Column lists per table, in the order of the arrays handed to unnest().
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "stores": [("id", "uuid"), ("name", "text"), ("timezone", "text"), ("email", "text"), ("phone", "text")],
    "customers": [
        ("id", "uuid"),
        ("first_name", "text"),
        ("last_name", "text"),
        ("email", "text"),
        ("phone", "text"),
        ("locale", "text"),
        ("consent_reminders", "bool"),
        ("preferred_channel", "text"),
    ],
    "pets": [("id", "uuid"), ("customer_id", "uuid"), ("name", "text"), ("species", "text")],
    "services": [("id", "uuid"), ("name", "text"), ("duration_minutes", "int4")],
    "appointments": [
        ("id", "uuid"),
        ("customer_id", "uuid"),
        ("pet_id", "uuid"),
        ("service_id", "uuid"),
        ("store_id", "uuid"),
        ("starts_at", "timestamptz"),
        ("status", "text"),
    ],
    "invoices": [
        ("id", "uuid"),
        ("number", "text"),
        ("store_id", "uuid"),
        ("customer_id", "uuid"),
        ("issued_at", "timestamptz"),
        ("currency", "text"),
        ("subtotal_cents", "int8"),
        ("tax_cents", "int8"),
        ("total_cents", "int8"),
        ("status", "text"),
    ],
    "transactions": [
        ("id", "uuid"),
        ("invoice_id", "uuid"),
        ("store_id", "uuid"),
        ("occurred_at", "timestamptz"),
        ("amount_cents", "int8"),
        ("currency", "text"),
        ("method", "text"),
        ("reference", "text"),
    ],
    "credit_notes": [
        ("id", "uuid"),
        ("number", "text"),
        ("invoice_id", "uuid"),
        ("store_id", "uuid"),
        ("issued_at", "timestamptz"),
        ("amount_cents", "int8"),
        ("currency", "text"),
        ("reason", "text"),
    ],
    "products": [
        ("id", "uuid"),
        ("store_id", "uuid"),
        ("sku", "text"),
        ("name", "text"),
        ("stock_quantity", "int4"),
        ("low_stock_threshold", "int4"),
    ],
}


async def _insert(connection: Connection, table: str, rows: list[tuple[Any, ...]]) -> list[uuid.UUID]:
    """Insert the rows that are not there yet (by id); returns the ids actually inserted."""
    columns = COLUMNS[table]
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(columns, start=1))
    # Table and column names come from the constant COLUMNS above, never from input.
    sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT DO NOTHING RETURNING id"
    inserted = await connection.fetch(sql, *[list(column) for column in zip(*rows, strict=True)])
    return [record["id"] for record in inserted]


async def _stock(connection: Connection, now: datetime, rng: random.Random) -> dict[str, int]:
    products, movements = stock_rows(now, rng)
    inserted = set(await _insert(connection, "products", products))
    # Movements have serial ids: only a product inserted just now gets its movements.
    new_movements = [m for m in movements if m[0] in inserted]
    if new_movements:
        await connection.executemany(
            "INSERT INTO stock_movements (product_id, quantity, kind, occurred_at, reference)"
            " VALUES ($1, $2, $3, $4, $5)",
            new_movements,
        )
    return {"products": len(inserted), "stock_movements": len(new_movements)}


async def insert_demo_data(pool: asyncpg.Pool, *, now: datetime | None = None) -> dict[str, int]:
    """Insert what is missing of the demo data; returns rows added per table (all 0 the second time)."""
    now = now or datetime.now(UTC)
    rng = random.Random(20261128)  # noqa: S311 - demo values, not secrets; fixed seed: same values every run
    stores = [
        (demo_id("store", n), name, tz, email, phone) for n, (name, tz, email, phone, _) in enumerate(STORES)
    ]
    tables: dict[str, list[tuple[Any, ...]]] = {
        "stores": stores,
        "customers": customers(),
        "pets": [
            (demo_id("pet", n), demo_id("customer", n), PET_NAMES[n % len(PET_NAMES)], ["dog", "cat"][n % 2])
            for n in range(30)
        ],
        "services": [(demo_id("service", n), name, minutes) for n, (name, minutes) in enumerate(SERVICES)],
        "appointments": appointments(now),
        **money(now, rng),
    }
    counts: dict[str, int] = {}
    async with pool.acquire() as connection, connection.transaction():
        for table, rows in tables.items():
            counts[table] = len(await _insert(connection, table, rows))
        counts.update(await _stock(connection, now, rng))
    return counts
