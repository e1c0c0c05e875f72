"""The demo rows: three stores in three time zones and everything the jobs need, with fixed ids."""

from __future__ import annotations

import random
import unicodedata
import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

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


class StockRows(NamedTuple):
    products: list[tuple[Any, ...]]
    movements: list[tuple[Any, ...]]


def demo_id(*parts: object) -> uuid.UUID:
    """The same id for the same demo row on every run: what makes the inserts idempotent."""
    return uuid.uuid5(NAMESPACE, "/".join(str(part) for part in parts))


def _ascii(name: str) -> str:
    """Chloé → chloe: plain ASCII mailboxes, as most mail servers expect (no SMTPUTF8)."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def customers() -> list[tuple[Any, ...]]:
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


def appointments(now: datetime) -> list[tuple[Any, ...]]:
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


def money(now: datetime, rng: random.Random) -> dict[str, list[tuple[Any, ...]]]:
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


def stock_rows(now: datetime, rng: random.Random) -> StockRows:
    """Products (some low, one per store inconsistent with its movements) and their movements."""
    products, movements = [], []
    for store in range(len(STORES)):
        for index, (sku, name, threshold) in enumerate(PRODUCTS):
            received = rng.randrange(20, 60)
            sold = rng.randrange(0, received + 1) if index != 0 else received - 2  # the first runs low
            recorded = received - sold + (3 if index == 2 else 0)  # the third disagrees with its movements
            product_id = demo_id("product", store, sku)
            products.append((product_id, demo_id("store", store), sku, name, recorded, threshold))
            movements.append(
                (product_id, received, "delivery", now - timedelta(days=20), f"PO-{store}-{index}")
            )
            if sold:
                movements.append(
                    (product_id, -sold, "sale", now - timedelta(days=2), f"SALE-{store}-{index}")
                )
    return StockRows(products, movements)
