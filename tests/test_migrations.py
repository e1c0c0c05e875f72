"""Migrations: every contract table, re-runnable, and safe with several processes at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from petcare.migrate import MIGRATION_LOCK_ID, Migration, apply_migrations, bundled_migrations

CONTRACT_COLUMNS = {
    "stores": {"id", "name", "timezone", "email", "phone"},
    "customers": {
        "id", "first_name", "last_name", "email", "phone", "locale", "consent_reminders", "preferred_channel",
    },
    "pets": {"id", "customer_id", "name", "species"},
    "services": {"id", "name", "duration_minutes"},
    "appointments": {
        "id", "customer_id", "pet_id", "service_id", "store_id", "starts_at", "status", "reminder_sent_at",
    },
    "invoices": {
        "id", "number", "store_id", "customer_id", "issued_at", "currency",
        "subtotal_cents", "tax_cents", "total_cents", "status",
    },
    "transactions": {
        "id", "invoice_id", "store_id", "occurred_at", "amount_cents", "currency", "method", "reference",
    },
    "credit_notes": {
        "id", "number", "invoice_id", "store_id", "issued_at", "amount_cents", "currency", "reason",
    },
    "financial_exports": {
        "id", "store_id", "period_start", "period_end", "format", "status",
        "requested_at", "started_at", "completed_at", "error",
    },
    "products": {"id", "store_id", "sku", "name", "stock_quantity", "low_stock_threshold"},
    "stock_movements": {"id", "product_id", "quantity", "kind", "occurred_at", "reference"},
}  # fmt: skip


async def _applied(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT name FROM schema_migrations ORDER BY name")
        return [row["name"] for row in rows]
    finally:
        await connection.close()


async def test_applies_everything_once_then_nothing(empty_database_url: str) -> None:
    connection = await asyncpg.connect(empty_database_url)
    try:
        first = await apply_migrations(connection)
        second = await apply_migrations(connection)
    finally:
        await connection.close()
    assert first == [migration.name for migration in bundled_migrations()]
    assert second == []
    assert await _applied(empty_database_url) == first


async def test_contract_tables_and_columns(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = 'public'"
        )
    finally:
        await connection.close()
    columns: dict[str, dict[str, asyncpg.Record]] = {}
    for row in rows:
        columns.setdefault(row["table_name"], {})[row["column_name"]] = row
    for table, contract in CONTRACT_COLUMNS.items():
        assert contract <= set(columns[table]), f"{table} lacks {contract - set(columns[table])}"
        for name, column in columns[table].items():
            if "timestamp" in column["data_type"]:
                assert column["data_type"] == "timestamp with time zone", f"{table}.{name}"
            if name not in contract:  # the main backend inserts naming only contract columns
                assert column["is_nullable"] == "YES" or column["column_default"] is not None, (
                    f"{table}.{name}"
                )
    assert columns["stock_movements"]["id"]["data_type"] == "bigint"
    assert columns["stores"]["id"]["data_type"] == "uuid"


async def test_backend_style_insert_with_contract_columns_only(pool: asyncpg.Pool) -> None:
    store_id = await pool.fetchval(
        "INSERT INTO stores (name, timezone) VALUES ('S', 'Europe/Paris') RETURNING id"
    )
    export_id = await pool.fetchval(
        "INSERT INTO financial_exports (store_id, period_start, period_end, format)"
        " VALUES ($1, '2026-10-01', '2026-10-31', 'csv') RETURNING id",
        store_id,
    )
    status = await pool.fetchval("SELECT status FROM financial_exports WHERE id = $1", export_id)
    assert status == "pending"


async def test_check_constraints_refuse_bad_rows(pool: asyncpg.Pool) -> None:
    bad_rows = [
        "INSERT INTO customers (first_name, last_name, preferred_channel) VALUES ('a', 'b', 'fax')",
        "INSERT INTO customers (first_name, last_name, phone) VALUES ('a', 'b', '0612345678')",
        "INSERT INTO financial_exports (period_start, period_end) VALUES ('2026-10-31', '2026-10-01')",
    ]
    for sql in bad_rows:
        try:
            await pool.execute(sql)
        except asyncpg.CheckViolationError:
            continue
        raise AssertionError(f"accepted: {sql}")


async def test_two_processes_migrating_at_once(empty_database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PETCARE_")}
    env["PETCARE_DATABASE_URL"] = empty_database_url

    async def migrate() -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "petcare", "migrate",
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode() + err.decode()

    results = await asyncio.gather(*(migrate() for _ in range(3)))
    assert [code for code, _ in results] == [0, 0, 0], results
    names = [migration.name for migration in bundled_migrations()]
    assert await _applied(empty_database_url) == names


async def test_a_no_transaction_migration_builds_indexes_concurrently_and_reruns_after_a_failure(
    database_url: str,
) -> None:
    """A no-transaction file runs statement by statement (CREATE INDEX CONCURRENTLY refuses a
    transaction). A build that fails half-way leaves an invalid index and no record; the rerun
    drops that index and builds it again, keeping what was built already."""
    build = """-- petcare: no-transaction\r
-- a unique index the data refuses until it is fixed\r
CREATE INDEX CONCURRENTLY IF NOT EXISTS scratch_name_idx ON scratch (name);\r
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS scratch_code_idx\r
    ON scratch (code);\r
"""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "CREATE TABLE scratch (name text, code int); INSERT INTO scratch VALUES ('a', 1), ('b', 1)"
        )
        migration = Migration("9999_scratch.sql", build)
        assert not migration.transactional
        assert migration.built_indexes() == ["scratch_name_idx", "scratch_code_idx"]
        with pytest.raises(asyncpg.UniqueViolationError):
            await apply_migrations(connection, [migration])
        assert "9999_scratch.sql" not in await _applied(database_url)
        assert await _index_validity(connection) == {"scratch_name_idx": True, "scratch_code_idx": False}
        # The failure released the migration lock: another process can migrate.
        other = await asyncpg.connect(database_url)
        try:
            assert await other.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_ID)
        finally:
            await other.close()

        await connection.execute("UPDATE scratch SET code = 2 WHERE name = 'b'")
        assert await asyncio.wait_for(apply_migrations(connection, [migration]), 10) == ["9999_scratch.sql"]
        assert await _index_validity(connection) == {"scratch_name_idx": True, "scratch_code_idx": True}
    finally:
        await connection.close()


async def _index_validity(connection: asyncpg.Connection) -> dict[str, bool]:
    rows = await connection.fetch(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname LIKE 'scratch_%'"
    )
    return {row["relname"]: row["indisvalid"] for row in rows}


def test_a_no_transaction_migration_refuses_bodies_it_cannot_split() -> None:
    body = Migration("9998_scratch.sql", "-- petcare: no-transaction\nDO $$ BEGIN PERFORM 1; END $$;\n")
    with pytest.raises(ValueError, match=r"no \$\$ bodies"):
        body.statements()


async def test_the_export_order_indexes_replace_the_store_time_indexes(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT tablename, indexdef FROM pg_indexes"
        " WHERE tablename IN ('invoices', 'transactions', 'credit_notes') AND indexdef LIKE '%(store_id%'"
    )
    assert sorted(row["indexdef"].split(" USING ")[1] for row in rows) == [
        "btree (store_id, issued_at, number)",
        "btree (store_id, issued_at, number)",
        "btree (store_id, occurred_at, id)",
    ]
