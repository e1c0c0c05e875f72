"""A namespace without the jobs' search attributes, on real dev servers: the worker registers them
where the server allows it, else exits with one line saying what to create; the API answers 503
`temporal_misconfigured`, never 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from devstack.smtp_sink import SmtpSink
from devstack.temporal_server import temporal_dev_server
from petcare.config import Settings
from petcare.jobs import CUSTOM_SEARCH_ATTRIBUTES
from petcare.temporal_client import create_command
from tests.support.api import AUTH
from tests.support.worker_process import (
    one_line,
    run_petcare,
    start_worker_process,
    stop_worker_processes,
    wait_until_polling,
    worker_env,
)

JOB_NAMES = [key.name for key in CUSTOM_SEARCH_ATTRIBUTES]
# The dev server's SQLite visibility holds at most 10 custom Keyword attributes (server 1.32): a
# namespace whose 10 are taken by another team refuses ours for real, as Temporal Cloud refuses
# any registration through the operator API.
KEYWORD_SLOTS = 10
OTHER_TEAMS_ATTRIBUTES = [
    SearchAttributeKey.for_keyword(f"OtherTeam{index}") for index in range(KEYWORD_SLOTS)
]


async def registered(client: Client) -> set[str]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return set(listed.custom_attributes)


@pytest_asyncio.fixture
async def bare_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of the test's own, started without the jobs' search attributes."""
    async with temporal_dev_server([]) as env:
        yield env


@pytest_asyncio.fixture(scope="module")
async def crowded_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server without the jobs' attributes that refuses to register them (no slot left)."""
    async with temporal_dev_server(OTHER_TEAMS_ATTRIBUTES) as env:
        # The premise, checked: the server itself refuses one more Keyword attribute.
        with pytest.raises(RPCError, match="cannot have more than"):
            await env.client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=env.client.namespace,
                    search_attributes={"Probe": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
                )
            )
        yield env


async def test_the_worker_registers_missing_attributes_then_applies_schedules_and_polls(
    bare_server: WorkflowEnvironment,
    database_url: str,
    task_queue: str,
    smtp_sink: SmtpSink,
    tmp_path: Path,
) -> None:
    client = bare_server.client
    assert not set(JOB_NAMES) & await registered(client)
    env = worker_env(
        bare_server,
        database_url=database_url,
        task_queue=task_queue,
        smtp_port=smtp_sink.port,
        extra={"PETCARE_LOG_LEVEL": "INFO"},
    )
    log_file = tmp_path / "worker.log"
    worker = await start_worker_process(env, log_file, apply_schedules=True)
    try:
        await wait_until_polling(client, task_queue, [worker], timeout=90)
        assert set(JOB_NAMES) <= await registered(client)
        # Schedules carry the Job attribute: applied after the registration, so they exist.
        for schedule_id in ("appointment-reminder", "stock-reconciliation"):
            description = await client.get_schedule_handle(schedule_id).describe()
            assert description.schedule.state.paused is False
    finally:
        await stop_worker_processes(worker)
    log = log_file.read_text()
    assert f"registered the search attributes {', '.join(JOB_NAMES)} in namespace default" in log
    assert "Traceback" not in log


async def test_where_the_server_refuses_the_worker_exits_with_one_line_naming_what_to_create(
    crowded_server: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    env = worker_env(
        crowded_server,
        database_url=database_url,
        task_queue="petcare-refused",
        smtp_port=1025,
        extra={"PETCARE_LOG_LEVEL": "INFO"},
    )
    done = await asyncio.to_thread(run_petcare, ["worker"], env, tmp_path)
    assert done.returncode == 1, done.stderr
    line = one_line(done.stderr)
    assert f"lacks the search attributes {', '.join(JOB_NAMES)}" in line
    assert "cannot have more than 10 search attribute of type Keyword" in line  # the server's reason
    for key in CUSTOM_SEARCH_ATTRIBUTES:
        assert create_command("default", key) in line
    assert "temporal operator search-attribute create --namespace default --name Job --type Keyword" in line
    assert not set(JOB_NAMES) & await registered(crowded_server.client)

    # `schedules apply` sets the Job attribute too: the same check, the same one line.
    done = await asyncio.to_thread(run_petcare, ["schedules", "apply"], env, tmp_path)
    assert done.returncode == 1
    assert one_line(done.stderr) == line

    # At DEBUG the traceback comes too, before the same line.
    debug = await asyncio.to_thread(run_petcare, ["worker"], env | {"PETCARE_LOG_LEVEL": "DEBUG"}, tmp_path)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == line


@pytest_asyncio.fixture
async def misconfigured_api(
    aiohttp_client: AiohttpClient,
    api_settings: Settings,
    crowded_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
) -> TestClient[Any, Any]:
    """The real app on a namespace without the jobs' search attributes."""
    return await aiohttp_client(create_app(api_settings, temporal=crowded_server.client, pool=pool))


async def assert_misconfigured(response: Any, *expected: str) -> str:
    assert response.status == 503, await response.text()
    body = await response.json()
    assert body["error"]["code"] == "temporal_misconfigured"
    message: str = body["error"]["message"]
    for part in expected:
        assert part in message
    return message


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/workers/appointment-reminder/trigger", None),
        ("POST", "/api/v1/workers/stock-reconciliation/trigger", {}),
    ],
)
async def test_starting_a_job_on_a_namespace_without_the_attributes_is_503(
    misconfigured_api: TestClient[Any, Any], method: str, path: str, body: Any
) -> None:
    response = await misconfigured_api.request(method, path, json=body, headers=AUTH)
    await assert_misconfigured(response, "Job")


async def test_an_export_request_is_recorded_and_the_503_says_so(
    misconfigured_api: TestClient[Any, Any],
) -> None:
    response = await misconfigured_api.post(
        "/api/v1/financial-exports",
        json={"periodStart": "2026-10-01", "periodEnd": "2026-10-31", "format": "csv"},
        headers=AUTH,
    )
    message = await assert_misconfigured(response, "no mapping defined for search attribute")
    assert "recorded as pending" in message


async def test_listing_runs_by_job_on_a_namespace_without_the_attributes_is_503(
    misconfigured_api: TestClient[Any, Any],
) -> None:
    response = await misconfigured_api.get("/api/v1/workers/runs?job=financial-export", headers=AUTH)
    await assert_misconfigured(response, "Job")


async def test_a_namespace_that_does_not_exist_is_503_not_404(
    aiohttp_client: AiohttpClient,
    api_settings: Settings,
    crowded_server: WorkflowEnvironment,
    pool: asyncpg.Pool,
) -> None:
    address = crowded_server.client.service_client.config.target_host
    client = await Client.connect(
        address, namespace="petcare-missing", data_converter=pydantic_data_converter
    )
    api = await aiohttp_client(create_app(api_settings, temporal=client, pool=pool))
    for method, path in [
        ("GET", "/api/v1/schedules"),
        ("POST", "/api/v1/schedules/appointment-reminder/pause"),
        ("GET", "/api/v1/workers/runs/some-workflow"),
        ("POST", "/api/v1/workers/appointment-reminder/trigger"),
    ]:
        response = await api.request(method, path, headers=AUTH)
        await assert_misconfigured(response, "Namespace petcare-missing is not found")


async def test_a_missing_namespace_or_a_mistyped_attribute_is_one_line(
    crowded_server: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    env = worker_env(crowded_server, database_url=database_url, task_queue="petcare-refused", smtp_port=1025)
    done = await asyncio.to_thread(
        run_petcare, ["schedules", "apply"], env | {"TEMPORAL_NAMESPACE": "petcare-missing"}, tmp_path
    )
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert "namespace 'petcare-missing' does not exist" in line
    assert "temporal operator namespace create --namespace petcare-missing" in line

    async with temporal_dev_server([SearchAttributeKey.for_text("Job")]) as mistyped:
        env = worker_env(mistyped, database_url=database_url, task_queue="petcare-refused", smtp_port=1025)
        done = await asyncio.to_thread(run_petcare, ["worker"], env, tmp_path)
    assert done.returncode == 1
    assert "search attributes of the wrong type: Job is Text, not Keyword" in one_line(done.stderr)
