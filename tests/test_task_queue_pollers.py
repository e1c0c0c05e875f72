"""Pollers are found on every partition of a task queue, not only on the root the name addresses."""

from __future__ import annotations

from temporalio import activity
from temporalio.api.taskqueue.v1 import PollerInfo
from temporalio.client import Client
from temporalio.worker import Worker

from petcare.task_queue_pollers import task_queue_pollers
from tests.support.polling import poll


@activity.defn(name="pollers_test_noop")
async def _noop() -> None:
    """Something to register, so the worker polls for activities."""


async def test_a_workers_pollers_are_seen_beyond_the_root_partition(
    dev_client: Client, task_queue: str
) -> None:
    polls = 5  # several long polls at once, so they spread over partitions
    async with Worker(
        dev_client, task_queue=task_queue, activities=[_noop], max_concurrent_activity_task_polls=polls
    ):

        async def seen_beyond_the_root() -> list[PollerInfo] | None:
            everywhere = await task_queue_pollers(dev_client, task_queue)
            root_only = await task_queue_pollers(dev_client, task_queue, partitions=1)
            # The worker's several long polls land on several partitions: only asking them all sees that.
            return everywhere if len(everywhere) > len(root_only) else None

        everywhere = await poll(seen_beyond_the_root, timeout=30)
    identities = {poller.identity for poller in everywhere}
    assert identities == {dev_client.identity}


async def test_an_unpolled_task_queue_has_no_pollers(dev_client: Client, task_queue: str) -> None:
    assert await task_queue_pollers(dev_client, task_queue) == []
