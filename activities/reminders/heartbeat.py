"""Progress heartbeats of the send activity: throttled, plus a ticker between slow provider calls."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio import activity

HEARTBEAT_EVERY = 1.0  # seconds


class Heartbeat:
    """Progress heartbeats, at most one a second: recording one costs about a millisecond."""

    def __init__(self, progress: dict[str, int]) -> None:
        self.progress = progress
        self._last = 0.0

    def now(self) -> None:
        self._last = time.monotonic()
        activity.heartbeat(self.progress)

    def after_message(self) -> None:
        if time.monotonic() - self._last >= HEARTBEAT_EVERY:
            self.now()


@contextlib.asynccontextmanager
async def heartbeat_ticker(timeout: timedelta | None, beat: Heartbeat) -> AsyncIterator[None]:
    """Heartbeats between messages too, so one slow provider call never looks like a dead worker."""
    if not timeout:
        yield
        return
    interval = max(timeout.total_seconds() / 3, 0.5)

    async def tick() -> None:
        while True:
            await asyncio.sleep(interval)
            beat.now()

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
