"""Who polls a task queue, across all its partitions (what DescribeTaskQueue on the name alone misses)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

# The server splits a task queue into partitions (4 by default: matching.numTaskqueueReadPartitions).
# A worker's long poll waits on one partition and is listed only in that partition's description,
# so asking the root alone can miss a worker that is polling. Partition n > 0 is addressed as
# `/_sys/<name>/<n>`. Asking a partition the server does not have makes it load one, so only the
# default count is asked; a server configured with more would need this raised.
PARTITIONS_ASKED = 4

BOTH_KINDS = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)


def partition_names(task_queue: str, partitions: int = PARTITIONS_ASKED) -> list[str]:
    return [task_queue, *(f"/_sys/{task_queue}/{number}" for number in range(1, partitions))]


async def task_queue_pollers(
    client: Client,
    task_queue: str,
    kinds: Iterable[TaskQueueType.ValueType] = BOTH_KINDS,
    timeout: timedelta | None = None,
    partitions: int = PARTITIONS_ASKED,
) -> list[PollerInfo]:
    """Every poller of `task_queue` of the given kinds, one entry per partition it was seen on."""
    requests = [
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=name, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=kind,
        )
        for kind in kinds
        for name in partition_names(task_queue, partitions)
    ]
    # At once: a container health check has seconds, not one round trip per partition in a row.
    answers = await asyncio.gather(
        *(client.workflow_service.describe_task_queue(request, timeout=timeout) for request in requests)
    )
    return [poller for answer in answers for poller in answer.pollers]


async def live_pollers(
    client: Client,
    task_queue: str,
    max_age: timedelta,
    *,
    now: datetime | None = None,
    timeout: timedelta | None = None,
) -> set[str]:
    """The identities of the workers that polled `task_queue` within `max_age`.

    The server keeps a stopped worker listed for minutes, with the time of its last poll, and a
    live worker's entry on a partition is as old as its current long poll (up to about a minute on
    an idle queue); so a worker counts while one of its entries is younger than `max_age`, which
    should be about two long polls.
    """
    cutoff = (now or datetime.now(UTC)) - max_age
    return {
        poller.identity
        for poller in await task_queue_pollers(client, task_queue, timeout=timeout)
        if poller.last_access_time.ToDatetime(tzinfo=UTC) >= cutoff
    }
