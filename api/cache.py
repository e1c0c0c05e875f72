"""A one-value cache with a time to live, computed once however many requests wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """Holds the last answer for `ttl` seconds; concurrent misses share one computation."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._value: T | None = None
        self._expires = 0.0
        self._pending: asyncio.Task[T] | None = None

    async def get(self, compute: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        if self._value is not None and loop.time() < self._expires:
            return self._value
        if self._pending is None:
            self._pending = loop.create_task(self._refresh(compute))
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
