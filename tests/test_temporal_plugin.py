"""PetcarePlugin: the one configuration of clients, workers and replayers, applied once per worker."""

from __future__ import annotations

import asyncpg
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from petcare.config import Settings
from petcare.metrics import BusinessMetricsInterceptor
from petcare.temporal_client import PetcarePlugin, connect_temporal, plugins_for_worker
from tests.support.reminder_data import reminder_mailer
from worker_main import WorkerResources, build_workers
from workflows.alerts import OpsAlertInterceptor


async def test_a_connected_client_carries_the_plugin_and_its_workers_apply_it_once(
    dev_server: WorkflowEnvironment, settings: Settings, pool: asyncpg.Pool, task_queue: str
) -> None:
    address = dev_server.client.service_client.config.target_host
    client = await connect_temporal(env={"TEMPORAL_ADDRESS": address})
    assert client.data_converter is pydantic_data_converter
    assert plugins_for_worker(client) == []  # a worker takes the client's plugin by itself
    # A client made otherwise (the tests' fixtures) gets it from the worker instead.
    assert [type(p) for p in plugins_for_worker(dev_server.client)] == [PetcarePlugin]

    async with reminder_mailer(settings) as mailer:
        resources = WorkerResources(settings=settings, pool=pool, upload_pool=pool, mailer=mailer, http=None)  # type: ignore[arg-type]
        for built_on in (client, dev_server.client):
            for worker in build_workers(built_on, resources, task_queue=task_queue):
                config = worker.config(active_config=True)
                kinds = [type(interceptor) for interceptor in config.get("interceptors", [])]
                assert kinds.count(OpsAlertInterceptor) == 1, kinds
                assert kinds.count(BusinessMetricsInterceptor) == 1, kinds
                failure_types = list(config.get("workflow_failure_exception_types", []))
                assert [t.__name__ for t in failure_types] == ["ValidationError"]
