"""Waiting for Temporal's visibility, which lags a run's close a little."""

from __future__ import annotations

import asyncio

from temporalio.client import Client


async def until_visible(client: Client, query: str, count: int, timeout: float = 30) -> None:
    """Until `query` counts at least `count` runs (a query before that would not see them yet)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (await client.count_workflows(query)).count < count:
        assert asyncio.get_running_loop().time() < deadline, f"not {count} runs in visibility: {query}"
        await asyncio.sleep(0.2)
