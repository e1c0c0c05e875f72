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
