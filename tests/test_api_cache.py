"""The health answer cache: one computation for concurrent misses, a fresh one after the TTL."""

from __future__ import annotations

import asyncio

import pytest

from api.cache import TtlCache


async def test_concurrent_misses_share_one_computation() -> None:
    cache: TtlCache[int] = TtlCache(ttl=60)
    calls = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    waiters = [asyncio.create_task(cache.get(compute)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [1] * 20
    assert await cache.get(compute) == 1  # still fresh
    assert calls == 1


async def test_expired_value_is_recomputed_and_errors_are_not_cached() -> None:
    cache: TtlCache[str] = TtlCache(ttl=0.05)
    answers = iter(["first", "second", "third"])

    async def compute() -> str:
        return next(answers)

    async def failing() -> str:
        raise ConnectionError("down")

    assert await cache.get(compute) == "first"
    await asyncio.sleep(0.1)
    assert await cache.get(compute) == "second"
    await asyncio.sleep(0.1)
    with pytest.raises(ConnectionError):
        await cache.get(failing)
    # The failure left nothing behind: the next caller computes afresh.
    assert await cache.get(compute) == "third"


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    cache: TtlCache[str] = TtlCache(ttl=60)
    release = asyncio.Event()

    async def compute() -> str:
        await release.wait()
        return "answer"

    impatient = asyncio.create_task(cache.get(compute))
    patient = asyncio.create_task(cache.get(compute))
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert await patient == "answer"
    with pytest.raises(asyncio.CancelledError):
        await impatient
