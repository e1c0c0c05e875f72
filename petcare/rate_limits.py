"""Rate limits shared by every worker process, kept in PostgreSQL (table rate_limit_slots).

A provider limits the account, not one process: N workers must not send N times the rate.
"""

from __future__ import annotations

import asyncio

import asyncpg

# The slot is taken on the database's clock, the one clock every worker shares.
_RESERVE_SLOT = """
INSERT INTO rate_limit_slots AS slots (name, next_slot_at)
VALUES ($1, clock_timestamp() + make_interval(secs => $2))
ON CONFLICT (name) DO UPDATE
SET next_slot_at = greatest(slots.next_slot_at, clock_timestamp()) + make_interval(secs => $2)
RETURNING extract(epoch FROM slots.next_slot_at - clock_timestamp())::float8 - $2
"""


class SharedRateLimiter:
    """At most `rate` acquisitions per second of the limit `name`, spaced evenly, across every
    worker process. Each acquisition reserves the next slot (one short statement) and sleeps
    until it comes."""

    def __init__(self, pool: asyncpg.Pool, name: str, rate: float) -> None:
        self._pool = pool
        self._name = name
        self._interval = 1.0 / rate

    async def acquire(self) -> None:
        wait: float = await self._pool.fetchval(_RESERVE_SLOT, self._name, self._interval)
        if wait > 0:
            await asyncio.sleep(wait)
