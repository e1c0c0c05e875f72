"""Demo data: every domain covered, and a second run adds nothing."""

from __future__ import annotations

import asyncpg

from devstack.demo_data import insert_demo_data


async def test_second_run_adds_nothing(pool: asyncpg.Pool) -> None:
    first = await insert_demo_data(pool)
    totals = {table: await pool.fetchval(f"SELECT count(*) FROM {table}") for table in first}
    second = await insert_demo_data(pool)
    assert all(added > 0 for added in first.values()), first
    assert all(added == 0 for added in second.values()), second
    assert totals == first
    assert totals == {table: await pool.fetchval(f"SELECT count(*) FROM {table}") for table in first}


async def test_covers_the_cases_the_jobs_need(pool: asyncpg.Pool) -> None:
    await insert_demo_data(pool)
    assert await pool.fetchval("SELECT count(DISTINCT timezone) FROM stores") >= 3
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE consent_reminders") > 0
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE NOT consent_reminders") > 0
    assert await pool.fetchval("SELECT count(DISTINCT preferred_channel) FROM customers") == 2
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE email IS NULL OR phone IS NULL") > 0
    emails = [row["email"] for row in await pool.fetch("SELECT email FROM customers WHERE email IS NOT NULL")]
    assert all(email.isascii() for email in emails), "the mailer sends no SMTPUTF8: ASCII mailboxes only"
    upcoming = await pool.fetchval(
        "SELECT count(*) FROM appointments WHERE starts_at BETWEEN now() AND now() + interval '24 hours'"
    )
    assert upcoming > 0
    span_days = await pool.fetchval("SELECT max(issued_at) - min(issued_at) FROM invoices")
    assert span_days.days >= 28
    assert await pool.fetchval("SELECT count(*) FROM credit_notes") > 0
    stock = await pool.fetch(
        "SELECT p.stock_quantity, p.low_stock_threshold, coalesce(sum(m.quantity), 0) AS computed"
        " FROM products p LEFT JOIN stock_movements m ON m.product_id = p.id GROUP BY p.id"
    )
    assert any(row["computed"] != row["stock_quantity"] for row in stock), "no inconsistent product"
    assert any(row["computed"] <= row["low_stock_threshold"] for row in stock), "no low-stock product"
