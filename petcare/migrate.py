"""Applies the SQL files in petcare/migrations in name order, once each, under an advisory lock."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Any fixed number: every migrating process takes the same transaction-level lock, so two
# processes starting at once apply each file exactly once.
MIGRATION_LOCK_ID = 7_310_522_118

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    folder = resources.files("petcare") / "migrations"
    files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".sql")), key=lambda e: e.name)
    return [Migration(entry.name, entry.read_text(encoding="utf-8")) for entry in files]


async def apply_migrations(
    connection: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[str]:
    """Apply what is missing, each file in its own transaction; returns the names applied."""
    applied_now: list[str] = []
    for migration in migrations if migrations is not None else bundled_migrations():
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
            await connection.execute(CREATE_MIGRATIONS_TABLE)
            done = await connection.fetchval(
                "SELECT true FROM schema_migrations WHERE name = $1", migration.name
            )
            if done:
                continue
            await connection.execute(migration.sql)
            await connection.execute("INSERT INTO schema_migrations (name) VALUES ($1)", migration.name)
            log.info("applied migration %s", migration.name)
            applied_now.append(migration.name)
    return applied_now


async def migrate_database(url: str) -> list[str]:
    """Connect to the database at `url` and apply what is missing; returns the names applied."""
    connection = await asyncpg.connect(url)
    try:
        return await apply_migrations(connection)
    finally:
        await connection.close()
