"""The health answer cache: one computation for concurrent misses, a fresh one after the TTL."""

from __future__ import annotations

import asyncio

import pytest

from api.workers import TtlCache


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


async def test_a_stale_answer_is_served_while_one_refresh_runs_then_callers_wait() -> None:
    # A stale allowance far above the sleeps, so a stalled event loop cannot run past it early.
    cache: TtlCache[int] = TtlCache(ttl=0.05, stale=1.0)
    calls = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()
        return calls

    assert await cache.get(compute) == 1
    await asyncio.sleep(0.1)  # expired, within the stale allowance
    # Callers during the refresh get the old answer at once; only one refresh starts.
    assert await asyncio.gather(*(cache.get(compute) for _ in range(10))) == [1] * 10
    assert calls == 2
    await asyncio.sleep(1.0)  # past the stale allowance: a caller now waits for the fresh answer
    waiting = asyncio.create_task(cache.get(compute))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    release.set()
    assert await waiting == 2
    assert calls == 2
