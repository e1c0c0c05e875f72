"""Bounded PostgreSQL work in request handlers: a database that is down or slow is a 503, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from api.errors import ApiError
from petcare.db import is_unreachable

# A request's own queries are small (one row, a short list); this only bounds an unreachable server.
CALL_TIMEOUT_SECONDS = 5.0


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
