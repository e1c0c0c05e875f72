"""Long activities: a heartbeat ticker, so one slow call never looks like a dead worker, and the
timeout of their long statements, derived from the attempt's budget."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from temporalio import activity

from petcare.errors import ErrorType, application_error

# Call sites give activities a heartbeat timeout well above this.
HEARTBEAT_EVERY = 5.0  # seconds

# The share of an attempt's start-to-close budget one long statement may use. The rest lets the
# attempt fail on the statement's own timeout (connection and locks released, a clear message)
# before Temporal times the attempt out and starts a retry while the statement still runs.
STATEMENT_SHARE = 0.9


def heartbeat_interval() -> float:
    """How often the running activity heartbeats: well inside its heartbeat timeout (a third of
    it), so one slow provider call never looks like a dead worker and starts a second attempt."""
    timeout = activity.info().heartbeat_timeout
    return min(HEARTBEAT_EVERY, max(timeout.total_seconds() / 3, 0.5)) if timeout else HEARTBEAT_EVERY


@contextlib.asynccontextmanager
async def heartbeating(
    details: Callable[[], Any] | None = None, *, every: float = HEARTBEAT_EVERY
) -> AsyncIterator[None]:
    """Heartbeat every `every` seconds while the block runs, with `details()` as progress if given.

    The ticker is cancelled with the block, also when Temporal cancels the activity.
    """

    async def tick() -> None:
        while True:
            if details is None:
                activity.heartbeat()
            else:
                activity.heartbeat(details())
            await asyncio.sleep(every)

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def statement_timeout(cap: float | None = None) -> float:
    """Seconds a long statement may run in the current attempt: 90 % of its start-to-close budget,
    at most `cap`. Passed as the call's `timeout=`, which overrides the pool's command timeout
    (PETCARE_DATABASE__COMMAND_TIMEOUT_SECONDS, sized for short statements)."""
    budget = activity.info().start_to_close_timeout
    if budget is None:
        if cap is None:
            raise application_error(
                "a long statement needs its activity's start-to-close timeout to be bounded",
                ErrorType.MISSING_ACTIVITY_TIMEOUT,
            )
        return cap
    share = budget.total_seconds() * STATEMENT_SHARE
    return share if cap is None else min(share, cap)
