"""Bounded calls to Temporal from request handlers: a slow or absent server is a 503, never a hang,
and a namespace that does not fit the jobs is a 503 saying so, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError
from petcare.temporal_client import is_configuration_refusal, is_namespace_not_found, is_unreachable

__all__ = ["CALL_TIMEOUT", "is_missing", "is_unreachable", "temporal_call"]

# Long enough for a healthy server under load, short enough that a health probe answers promptly.
CALL_TIMEOUT = timedelta(seconds=2)


def is_missing(error: BaseException) -> bool:
    """The workflow or schedule asked for does not exist (a 404), as opposed to the namespace."""
    return (
        isinstance(error, RPCError)
        and error.status == RPCStatusCode.NOT_FOUND
        and not is_namespace_not_found(error)
    )


@asynccontextmanager
async def temporal_call(timeout: timedelta = CALL_TIMEOUT) -> AsyncIterator[None]:
    """Bound the enclosed Temporal calls; turn "Temporal is unreachable" and "Temporal refuses
    this deployment" (an unregistered search attribute, a missing namespace, a key without the
    rights) into 503 ApiErrors."""
    try:
        async with asyncio.timeout(timeout.total_seconds()):
            yield
    except Exception as error:
        if is_unreachable(error):
            raise ApiError(
                503, "temporal_unavailable", "Temporal is unreachable; try again shortly"
            ) from error
        if isinstance(error, RPCError) and is_configuration_refusal(error):
            # The server's own words name what is missing (e.g. "Namespace default has no mapping
            # defined for search attribute Job"); they hold no secret.
            raise ApiError(
                503,
                "temporal_misconfigured",
                f"Temporal refused the call: {error.message} (an operator must fix the Temporal "
                "namespace or the connection settings; see docs/production.md)",
            ) from error
        raise
