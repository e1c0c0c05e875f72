"""Applies the SQL files in petcare/migrations in name order, once each, under an advisory lock."""

from __future__ import annotations

import asyncio
import logging
import re
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
# would lock against inserts for as long as the build takes. Such a file holds plain statements,
# each ending with `;` at the end of a line (no `$$` bodies), and must be safe to run again from
# the start (a crash can stop it half-way): `IF NOT EXISTS`, `IF EXISTS`. A concurrent build that
# stopped half-way leaves an invalid index, which `IF NOT EXISTS` would keep: before such a file
# runs, the runner drops the invalid indexes it is about to build.
NO_TRANSACTION = "-- petcare: no-transaction"
_STATEMENT_END = re.compile(r";[ \t]*\r?\n")
_BUILT_INDEX = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE
)

FIND_INVALID_INDEX = """
SELECT true FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid
"""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def transactional(self) -> bool:
        return not self.sql.startswith(NO_TRANSACTION)

    def statements(self) -> list[str]:
        """The statements of a no-transaction file: each ends with `;` at the end of a line."""
        if "$$" in self.sql:
            raise ValueError(f"{self.name}: a no-transaction migration holds plain statements, no $$ bodies")
        statements = (_without_comment_lines(chunk) for chunk in _STATEMENT_END.split(self.sql + "\n"))
        return [statement for statement in statements if statement]

    def built_indexes(self) -> list[str]:
        """The indexes a no-transaction file builds concurrently."""
        return [found.group(1) for statement in self.statements() if (found := _BUILT_INDEX.match(statement))]


def _without_comment_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("--")).strip()


def bundled_migrations() -> list[Migration]:
    folder = resources.files("petcare") / "migrations"
    files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".sql")), key=lambda e: e.name)
    return [Migration(entry.name, entry.read_text(encoding="utf-8")) for entry in files]


# How often a process waiting for another's migrations asks again for the lock.
LOCK_POLL_SECONDS = 0.2
# The backend holding the lock (a bigint key is split into two 32-bit halves in pg_locks).
LOCK_HOLDER = """
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted
  AND classid::bigint = $1::bigint >> 32 AND objid::bigint = $1::bigint & 4294967295
LIMIT 1
"""


async def _take_migration_lock(connection: asyncpg.Connection) -> None:
    # Polled, never waited for inside a statement: a session blocked in pg_advisory_lock keeps a
    # snapshot open, and the lock holder's CREATE INDEX CONCURRENTLY waits for every older
    # snapshot to end: the two would deadlock.
    said = False
    while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_ID):
        if not said:
            holder = await connection.fetchval(LOCK_HOLDER, MIGRATION_LOCK_ID)
            log.info("waiting for the migrations of another process (PostgreSQL backend %s)", holder)
            said = True
        await asyncio.sleep(LOCK_POLL_SECONDS)


async def _apply(connection: asyncpg.Connection, migration: Migration) -> None:
    record = "INSERT INTO schema_migrations (name) VALUES ($1)"
    if migration.transactional:
        async with connection.transaction():
            await connection.execute(migration.sql)
            await connection.execute(record, migration.name)
    else:
        for index in migration.built_indexes():
            if await connection.fetchval(FIND_INVALID_INDEX, index):
                log.warning("dropping index %s, left invalid by an interrupted %s", index, migration.name)
                await connection.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index}"')  # a \w+ name
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
