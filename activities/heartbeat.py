"""Heartbeats for long activities: a background ticker, so one slow call never looks like a dead worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from temporalio import activity

# Call sites give activities a heartbeat timeout well above this.
HEARTBEAT_EVERY = 5.0  # seconds


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
