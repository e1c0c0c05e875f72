"""Bounded PostgreSQL work in request handlers: a database that is down or slow is a 503, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from api.errors import ApiError

# A request's own queries are small (one row, a short list); this only bounds an unreachable server.
CALL_TIMEOUT_SECONDS = 5.0

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


@asynccontextmanager
async def database_call(timeout: float = CALL_TIMEOUT_SECONDS) -> AsyncIterator[None]:
    """Bound the enclosed pool work; turn "PostgreSQL is unreachable" into a 503 ApiError."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except Exception as error:
        if is_unreachable(error):
            raise ApiError(
                503, "database_unavailable", "PostgreSQL is unreachable; try again shortly"
            ) from error
        raise
