"""Rows the tests and the benchmarks add as they need them: a store, an appointment with its
customer, pet and service, or many appointments at once (the fixed demo data is demo_data.py's)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from petcare.db import Connection


async def add_store(
    pool: asyncpg.Pool | Connection,
    name: str = "Paws & Co",
    timezone: str = "UTC",
    *,
    email: str | None = None,
    phone: str | None = "+15550001111",
) -> UUID:
    store_id: UUID = await pool.fetchval(
        "INSERT INTO stores (name, timezone, email, phone) VALUES ($1, $2, $3, $4) RETURNING id",
        name,
        timezone,
        email,
        phone,
    )
    return store_id


async def add_appointment(
    pool: asyncpg.Pool,
    *,
    store_id: UUID,
    starts_at: datetime,
    email: str | None = "owner@example.com",
    phone: str | None = None,
    consent: bool = True,
    preferred_channel: str = "email",
    locale: str = "en",
    status: str = "scheduled",
    pet: str = "Rex",
    service: str = "Full grooming",
    first_name: str = "Alex",
) -> UUID:
    async with pool.acquire() as connection, connection.transaction():
        customer_id = await connection.fetchval(
            """INSERT INTO customers (first_name, last_name, email, phone, locale, consent_reminders,
                                      preferred_channel)
               VALUES ($1, 'Doe', $2, $3, $4, $5, $6) RETURNING id""",
            first_name,
            email,
            phone,
            locale,
            consent,
            preferred_channel,
        )
        pet_id = await connection.fetchval(
            "INSERT INTO pets (customer_id, name, species) VALUES ($1, $2, 'dog') RETURNING id",
            customer_id,
            pet,
        )
        service_id = await connection.fetchval(
            "INSERT INTO services (name, duration_minutes) VALUES ($1, 60) RETURNING id", service
        )
        appointment_id: UUID = await connection.fetchval(
            """INSERT INTO appointments (customer_id, pet_id, service_id, store_id, starts_at, status)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            customer_id,
            pet_id,
            service_id,
            store_id,
            starts_at,
            status,
        )
    return appointment_id


async def add_many_appointments(
    pool: asyncpg.Pool, *, store_id: UUID, count: int, first_at: datetime, spacing: timedelta, domain: str
) -> None:
    """`count` consenting email customers, one appointment each, in a few set-based statements."""
    tag = uuid.uuid4().hex[:8]
    async with pool.acquire() as connection, connection.transaction():
        service_id = await connection.fetchval(
            "INSERT INTO services (name, duration_minutes) VALUES ('Bath & brush', 45) RETURNING id"
        )
        await connection.execute(
            """
            WITH customer AS (
                INSERT INTO customers (first_name, last_name, email, consent_reminders)
                SELECT 'Owner' || n, $2, 'owner' || n || '@' || $3, true FROM generate_series(1, $1) AS n
                RETURNING id, email),
            pet AS (
                INSERT INTO pets (customer_id, name, species)
                SELECT id, 'Pet ' || split_part(email, '@', 1), 'dog' FROM customer
                RETURNING id, customer_id)
            INSERT INTO appointments (customer_id, pet_id, service_id, store_id, starts_at)
            SELECT pet.customer_id, pet.id, $4, $5,
                   $6::timestamptz + $7::interval * (row_number() OVER (ORDER BY pet.id) - 1)
            FROM pet
            """,
            count,
            tag,
            domain,
            service_id,
            store_id,
            first_at,
            spacing,
        )
