"""Waiting in tests for what happens elsewhere (a server, another process, Temporal's visibility,
which lags a run's close): the one poll loop, and the visibility wait built on it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from temporalio.client import Client


async def poll(
    check: Callable[[], Any], *, timeout: float = 15.0, every: float = 0.25, what: str = "condition"
) -> Any:
    """Call `check` (plain or async) until it returns something truthy, and return that; an
    AssertionError naming `what` and the last outcome after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return outcome
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not met within {timeout} s: {what}; last outcome: {outcome!r}")
        await asyncio.sleep(every)


async def until_visible(client: Client, query: str, count: int, timeout: float = 30) -> None:
    """Until `query` counts at least `count` runs (a query before that would not see them yet)."""

    async def counted() -> bool:
        return (await client.count_workflows(query)).count >= count

    await poll(counted, timeout=timeout, every=0.2, what=f"{count} runs in visibility: {query}")
