"""Idempotent demo data for every domain: fixed ids, `ON CONFLICT DO NOTHING`, set-based inserts."""

from __future__ import annotations

import random
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from petcare.db import Connection

NAMESPACE = uuid.UUID("5b0f6d1e-8a8e-4b8e-9d61-3f3c2b0b7a10")

STORES = [  # name, IANA time zone, email, phone, currency
    ("Downtown Grooming", "America/New_York", "downtown@petcare.example", "+12125550100", "USD"),
    ("Le Salon du Marais", "Europe/Paris", "marais@petcare.example", "+33142000000", "EUR"),
    ("Bondi Pet Clinic", "Australia/Sydney", "bondi@petcare.example", "+61290000000", "AUD"),
]
FIRST_NAMES = ["Alice", "Bruno", "Chloé", "Dev", "Emma", "Farid", "Grace", "Hugo", "Inès", "Jack"]
LAST_NAMES = ["Martin", "Nguyen", "Smith", "Dubois", "Kowalski", "Okafor", "Rossi", "Tanaka"]
PET_NAMES = ["Biscuit", "Luna", "Max", "Noisette", "Pixel", "Rex", "Simba", "Tofu"]
SERVICES = [("Full groom", 90), ("Bath & brush", 45), ("Nail trim", 15), ("Vet check-up", 30)]
PRODUCTS = [  # sku, name, threshold
    ("SHAMPOO-500", "Oatmeal shampoo 500 ml", 5),
    ("KIBBLE-2KG", "Grain-free kibble 2 kg", 8),
    ("BRUSH-SLK", "Slicker brush", 3),
    ("TREATS-DUCK", "Duck treats", 10),
    ("FLEA-SPOT", "Flea spot-on (3 pack)", 6),
]

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


def demo_id(*parts: object) -> uuid.UUID:
    """The same id for the same demo row on every run: what makes the inserts idempotent."""
    return uuid.uuid5(NAMESPACE, "/".join(str(part) for part in parts))


async def _insert(connection: Connection, table: str, rows: list[tuple[Any, ...]]) -> list[uuid.UUID]:
    """Insert the rows that are not there yet (by id); returns the ids actually inserted."""
    columns = COLUMNS[table]
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(columns, start=1))
    # Table and column names come from the constant COLUMNS above, never from input.
    sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT DO NOTHING RETURNING id"
    inserted = await connection.fetch(sql, *[list(column) for column in zip(*rows, strict=True)])
    return [record["id"] for record in inserted]


def _ascii(name: str) -> str:
    """Chloé → chloe: plain ASCII mailboxes, as most mail servers expect (no SMTPUTF8)."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def _customers(rng: random.Random) -> list[tuple[Any, ...]]:
    rows = []
    for n in range(30):
        first, last = FIRST_NAMES[n % len(FIRST_NAMES)], LAST_NAMES[n % len(LAST_NAMES)]
        has_email, has_phone = n % 7 != 3, n % 5 != 1  # a few customers lack one address
        rows.append(
            (
                demo_id("customer", n),
                first,
                last,
                f"{_ascii(first)}.{_ascii(last)}{n}@example.com" if has_email else None,
                f"+1212555{1000 + n:04d}" if has_phone else None,
                ["en", "fr", "es"][n % 3],
                n % 4 != 0,  # every fourth customer has not consented to reminders
                "sms" if n % 3 == 1 else "email",
            )
        )
    return rows


def _appointments(now: datetime, rng: random.Random) -> list[tuple[Any, ...]]:
    start = now.replace(minute=0, second=0, microsecond=0)
    rows = []
    for n in range(60):
        customer = n % 30
        starts_at = start + timedelta(hours=2 + n * 1.2)  # spread over the next three days
        status = "cancelled" if n % 11 == 5 else ("confirmed" if n % 2 else "scheduled")
        rows.append(
            (
                demo_id("appointment", n),
                demo_id("customer", customer),
                demo_id("pet", customer),
                demo_id("service", n % len(SERVICES)),
                demo_id("store", n % len(STORES)),
                starts_at,
                status,
            )
        )
    return rows


def _money(now: datetime, rng: random.Random) -> dict[str, list[tuple[Any, ...]]]:
    """A month of invoices with their payments, and a few credit notes."""
    invoices, transactions, credit_notes = [], [], []
    for n in range(240):
        store = n % len(STORES)
        currency = STORES[store][4]
        issued_at = now - timedelta(days=30) + timedelta(hours=3 * n, minutes=rng.randrange(60))
        subtotal = rng.randrange(1500, 25000)
        tax = subtotal * 20 // 100
        invoice_id = demo_id("invoice", n)
        invoices.append(
            (
                invoice_id,
                f"INV-{2026_0000 + n}",
                demo_id("store", store),
                demo_id("customer", n % 30),
                issued_at,
                currency,
                subtotal,
                tax,
                subtotal + tax,
                "paid" if n % 9 else "issued",
            )
        )
        if n % 9:
            transactions.append(
                (
                    demo_id("transaction", n),
                    invoice_id,
                    demo_id("store", store),
                    issued_at + timedelta(minutes=5),
                    subtotal + tax,
                    currency,
                    ["card", "cash", "transfer"][n % 3],
                    f"PAY-{n:05d}",
                )
            )
        if n % 40 == 7:
            credit_notes.append(
                (
                    demo_id("credit_note", n),
                    f"CN-{2026_0000 + n}",
                    invoice_id,
                    demo_id("store", store),
                    issued_at + timedelta(days=1),
                    (subtotal + tax) // 2,
                    currency,
                    "Service partly refunded",
                )
            )
    return {"invoices": invoices, "transactions": transactions, "credit_notes": credit_notes}


async def _stock(connection: Connection, now: datetime, rng: random.Random) -> dict[str, int]:
    rows, movements = [], []
    for store in range(len(STORES)):
        for index, (sku, name, threshold) in enumerate(PRODUCTS):
            received = rng.randrange(20, 60)
            sold = rng.randrange(0, received + 1) if index != 0 else received - 2  # the first runs low
            recorded = received - sold + (3 if index == 2 else 0)  # the third disagrees with its movements
            product_id = demo_id("product", store, sku)
            rows.append((product_id, demo_id("store", store), sku, name, recorded, threshold))
            movements.append(
                (product_id, received, "delivery", now - timedelta(days=20), f"PO-{store}-{index}")
            )
            if sold:
                movements.append(
                    (product_id, -sold, "sale", now - timedelta(days=2), f"SALE-{store}-{index}")
                )
    inserted = set(await _insert(connection, "products", rows))
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
        "customers": _customers(rng),
        "pets": [
            (demo_id("pet", n), demo_id("customer", n), PET_NAMES[n % len(PET_NAMES)], ["dog", "cat"][n % 2])
            for n in range(30)
        ],
        "services": [(demo_id("service", n), name, minutes) for n, (name, minutes) in enumerate(SERVICES)],
        "appointments": _appointments(now, rng),
        **_money(now, rng),
    }
    counts: dict[str, int] = {}
    async with pool.acquire() as connection, connection.transaction():
        for table, rows in tables.items():
            counts[table] = len(await _insert(connection, table, rows))
        counts.update(await _stock(connection, now, rng))
    return counts
