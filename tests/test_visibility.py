"""Visibility queries: any value, quotes and backslashes included, is one literal meaning exactly it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from petcare import visibility
from petcare.jobs import STORE_ATTRIBUTE
from tests.support.polling import poll

# None starts or ends with a single quote: the server strips those from every value (a server bug,
# temporalio/temporal pull request 12019), whatever the quoting.
AWKWARD = ('double " quote', "single ' quote", "back \\ slash", 'ends in \\", OR 1=1 "', "\\\\\"'x")


def test_literals_escape_backslashes_and_double_quotes() -> None:
    assert visibility.literal("plain") == '"plain"'
    assert visibility.literal('a"b') == '"a\\"b"'
    assert visibility.literal("a'b") == '"a\'b"'
    assert visibility.literal("a\\b") == '"a\\\\b"'
    assert visibility.literal('\\"') == '"\\\\\\""'


def test_clauses() -> None:
    since = datetime(2026, 11, 29, tzinfo=UTC)
    query = visibility.all_of(
        visibility.any_of(visibility.equals("Job", "x"), visibility.equals("WorkflowType", "X")),
        "",
        visibility.one_of("WorkflowType", ["A", "B"]),
        visibility.after("CloseTime", since),
    )
    assert query == (
        '(Job="x" OR WorkflowType="X") AND WorkflowType IN ("A", "B") '
        'AND CloseTime > "2026-11-29T00:00:00+00:00"'
    )
    assert visibility.all_of() == ""


async def test_the_server_reads_each_literal_as_exactly_the_value(dev_client: Client) -> None:
    # An ExecutionStatus value that is not a status is refused with the value as the server read it.
    for value in AWKWARD:
        with pytest.raises(RPCError) as refused:
            await dev_client.count_workflows(visibility.equals(visibility.EXECUTION_STATUS, value))
        assert f"invalid ExecutionStatus value '{value}'" in refused.value.message


async def test_a_value_matches_its_own_run_and_never_widens_the_query(
    dev_client: Client, task_queue: str
) -> None:
    prefix = f"visibility-{uuid.uuid4().hex[:8]}"
    # Nobody polls the test's queue: the runs stay Running until terminated.
    handles = [
        await dev_client.start_workflow(
            "NoSuchWorkflow",
            id=f"{prefix}-{index}",
            task_queue=task_queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(STORE_ATTRIBUTE, prefix + value)]),
        )
        for index, value in enumerate(AWKWARD)
    ]
    try:
        quote = AWKWARD.index("single ' quote")
        assert await poll(lambda: _ids(dev_client, prefix + AWKWARD[quote])) == [f"{prefix}-{quote}"]
        for index, value in enumerate(AWKWARD):
            # The dev server's SQLite store writes the value back into its own SQL with backslash
            # escapes, which SQLite does not read: values holding " or \ match no run there.
            assert set(await _ids(dev_client, prefix + value)) <= {f"{prefix}-{index}"}, value
    finally:
        for handle in handles:
            await handle.terminate(reason="test done")


async def _ids(client: Client, store_id: str) -> list[str]:
    query = visibility.equals(STORE_ATTRIBUTE.name, store_id)
    return [execution.id async for execution in client.list_workflows(query)]
