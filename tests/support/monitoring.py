"""A dev server whose long polls last seconds, not a minute, so that a stopped worker drops out of
the live pollers within seconds; and whose runs are marked with TemporalReportedProblems after two
failed workflow tasks instead of five."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from devstack.temporal_server import temporal_dev_server

LONG_POLL_SECONDS = 3
# What the API's health is told: a live worker re-polls every LONG_POLL_SECONDS at most.
POLLER_MAX_AGE_SECONDS = 3 * LONG_POLL_SECONDS

QUICK_POLLS = {
    "matching.longPollExpirationInterval": f'"{LONG_POLL_SECONDS}s"',
    "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute": "2",
}


@pytest_asyncio.fixture(scope="module")
async def quick_poll_server() -> AsyncIterator[WorkflowEnvironment]:
    async with temporal_dev_server(dynamic_config=QUICK_POLLS) as env:
        yield env
