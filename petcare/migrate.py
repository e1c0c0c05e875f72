"""Applies the SQL files in petcare/migrations in name order, once each, under an advisory lock."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Any fixed number: every migrating process takes the same session-level lock, so two
# processes starting at once apply each file exactly once.
MIGRATION_LOCK_ID = 7_310_522_118

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


# A file whose first line is this runs outside a transaction, one statement at a time: for
# `CREATE INDEX CONCURRENTLY` on the tables the main backend writes, which a plain CREATE INDEX
# would lock against inserts for as long as the build takes. Such a file must be safe to run
# again from the start (a crash can stop it half-way): `IF NOT EXISTS`, `IF EXISTS`.
NO_TRANSACTION = "-- petcare: no-transaction"


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def transactional(self) -> bool:
        return not self.sql.startswith(NO_TRANSACTION)

    def statements(self) -> list[str]:
        """The statements of a no-transaction file: each ends with `;` at the end of a line."""
        return [statement.strip() for statement in self.sql.split(";\n") if _has_sql(statement)]


def _has_sql(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def bundled_migrations() -> list[Migration]:
    folder = resources.files("petcare") / "migrations"
    files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".sql")), key=lambda e: e.name)
    return [Migration(entry.name, entry.read_text(encoding="utf-8")) for entry in files]


# How often a process waiting for another's migrations asks again for the lock.
LOCK_POLL_SECONDS = 0.2


async def _take_migration_lock(connection: asyncpg.Connection) -> None:
    # Polled, never waited for inside a statement: a session blocked in pg_advisory_lock keeps a
    # snapshot open, and the lock holder's CREATE INDEX CONCURRENTLY waits for every older
    # snapshot to end: the two would deadlock.
    while not await connection.fetchval(  # noqa: ASYNC110 (the lock is the server's: nothing local to wait on)
        "SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_ID
    ):
        await asyncio.sleep(LOCK_POLL_SECONDS)


async def _apply(connection: asyncpg.Connection, migration: Migration) -> None:
    record = "INSERT INTO schema_migrations (name) VALUES ($1)"
    if migration.transactional:
        async with connection.transaction():
            await connection.execute(migration.sql)
            await connection.execute(record, migration.name)
    else:
        for statement in migration.statements():
            await connection.execute(statement)
        await connection.execute(record, migration.name)
    log.info("applied migration %s", migration.name)


async def apply_migrations(
    connection: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[str]:
    """Apply what is missing, each file in its own transaction (unless it says otherwise, see
    NO_TRANSACTION), one migrating process at a time; returns the names applied."""
    applied_now: list[str] = []
    await _take_migration_lock(connection)
    try:
        await connection.execute(CREATE_MIGRATIONS_TABLE)
        done = {row["name"] for row in await connection.fetch("SELECT name FROM schema_migrations")}
        for migration in migrations if migrations is not None else bundled_migrations():
            if migration.name not in done:
                await _apply(connection, migration)
                applied_now.append(migration.name)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now


async def migrate_database(url: str) -> list[str]:
    """Connect to the database at `url` and apply what is missing; returns the names applied."""
    connection = await asyncpg.connect(url)
    try:
        return await apply_migrations(connection)
    finally:
        await connection.close()
