"""The asyncpg pool every process owns once."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from petcare.config import Settings

# What SQL helpers take: a plain connection or one borrowed from the pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


def create_pool(settings: Settings, *, dsn: str | None = None) -> asyncpg.Pool:
    """A pool to be entered with `async with`; `dsn` overrides the settings' URL (tests)."""
    return asyncpg.create_pool(
        dsn or settings.require_database_url(),
        min_size=settings.database.pool_min_size,
        max_size=settings.database.pool_max_size,
        command_timeout=settings.database.command_timeout_seconds,
    )


# Class 08 (connection exceptions) and 57 (operator intervention: shutdown, starting up), and the
# server's connection limit: the database cannot serve now, whatever the request.
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable host
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
)


def is_unreachable(error: BaseException) -> bool:
    """True for errors that mean "cannot talk to PostgreSQL" rather than "PostgreSQL said no"."""
    if isinstance(error, _UNAVAILABLE):
        return True
    # asyncpg's InterfaceError also covers misuse (a bug): only a closed connection or pool counts.
    return isinstance(error, asyncpg.InterfaceError) and ("closed" in str(error) or "closing" in str(error))


def is_transient(error: BaseException) -> bool:
    """Faults that pass within seconds: unreachable (a dropped connection, a failover) or a
    serialization conflict. Worth a short wait and another try."""
    return is_unreachable(error) or isinstance(error, asyncpg.exceptions.TransactionRollbackError)
