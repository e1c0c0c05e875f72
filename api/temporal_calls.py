"""Bounded calls to Temporal from request handlers: a slow or absent server is a 503, never a hang."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError

# Long enough for a healthy server under load, short enough that a health probe answers promptly.
CALL_TIMEOUT = timedelta(seconds=2)

_UNREACHABLE_CODES = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}
)


def is_unreachable(error: BaseException) -> bool:
    """True for errors that mean "cannot talk to Temporal" rather than "Temporal said no"."""
    if isinstance(error, TimeoutError | ConnectionError):
        return True
    if isinstance(error, RPCError):
        return error.status in _UNREACHABLE_CODES
    # A lazy client that cannot connect raises this from its first call.
    return isinstance(error, RuntimeError) and "client connect" in str(error)


@asynccontextmanager
async def temporal_call(timeout: timedelta = CALL_TIMEOUT) -> AsyncIterator[None]:
    """Bound the enclosed Temporal calls; turn "Temporal is unreachable" into a 503 ApiError."""
    try:
        async with asyncio.timeout(timeout.total_seconds()):
            yield
    except Exception as error:
        if is_unreachable(error):
            raise ApiError(
                503, "temporal_unavailable", "Temporal is unreachable; try again shortly"
            ) from error
        raise
