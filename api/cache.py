"""A one-value cache with a time to live, computed once however many requests wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """Holds the last answer for `ttl` seconds; concurrent misses share one computation.

    For `stale` seconds after it expires the old answer is still served while a fresh one is
    computed in the background, so a burst of requests never queues behind the refresh (that
    queue was what set the p99 under load). Past that, callers wait for the fresh answer.
    """

    def __init__(self, ttl: float, *, stale: float = 0.0) -> None:
        self.ttl = ttl
        self.stale = stale
        self._value: T | None = None
        self._expires = 0.0
        self._pending: asyncio.Task[T] | None = None

    async def get(self, compute: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._value is not None and now < self._expires:
            return self._value
        if self._pending is None:
            self._pending = loop.create_task(self._refresh(compute))
            self._pending.add_done_callback(_retrieve_exception)
        if self._value is not None and now < self._expires + self.stale:
            return self._value
        # Shielded: a client that hangs up must not cancel the answer the others wait for.
        return await asyncio.shield(self._pending)

    async def _refresh(self, compute: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await compute()
            self._value = value
            self._expires = asyncio.get_running_loop().time() + self.ttl
            return value
        finally:
            self._pending = None


def _retrieve_exception(task: asyncio.Task[object]) -> None:
    # A background refresh nobody awaited must not log "exception was never retrieved"; the next
    # caller that waits sees the failure of its own refresh.
    if not task.cancelled():
        task.exception()
