"""Prometheus endpoints scraped and parsed: the API's /metrics, and the worker's (Temporal SDK
runtime) with the business counters of a real stock reconciliation run on the dev server."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from devstack.ports import free_port
from devstack.rows import add_store
from petcare.config import MetricsSettings, Settings
from petcare.jobs import STOCK_RECONCILIATION
from petcare.mail import Mailer
from petcare.metrics import worker_runtime
from petcare.temporal_client import connect_temporal
from tests.support.api import AUTH
from tests.support.stock import add_product, reconcile_store_run
from worker_main import WorkerResources, workers_running

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(
        found
        for (sample, sample_labels), found in samples.items()
        if sample == name and wanted <= sample_labels
    )


async def test_api_metrics_count_requests_by_route_and_status(api_client: TestClient[Any, Any]) -> None:
    for _ in range(3):
        assert (await api_client.get("/api/v1/workers/health")).status == 200
    assert (await api_client.get("/api/v1/workers/runs/nope-" + uuid.uuid4().hex, headers=AUTH)).status == 404
    assert (await api_client.get("/api/v1/workers/runs/x")).status == 401
    assert (await api_client.get("/no/such/" + uuid.uuid4().hex)).status == 404

    response = await api_client.get("/metrics")  # no token: scraped from inside the network
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = parse(await response.text())
    requests = "petcare_api_requests_total"
    health = {"method": "GET", "route": "/api/v1/workers/health"}
    assert value(samples, requests, status="200", **health) == 3
    run = {"method": "GET", "route": "/api/v1/workers/runs/{workflowId}"}
    assert value(samples, requests, status="404", **run) == 1
    assert value(samples, requests, status="401", **run) == 1
    # Unknown URLs share one label value: no series per random path.
    assert value(samples, requests, route="unmatched", status="404") == 1
    assert value(samples, "petcare_api_request_duration_seconds_count", **health) == 3
    assert value(samples, "petcare_api_request_duration_seconds_bucket", le="+Inf", **health) == 3
    assert value(samples, "petcare_api_request_duration_seconds_sum", **health) > 0


async def test_worker_endpoint_serves_sdk_and_business_metrics(
    dev_client: Client, settings: Settings, pool: asyncpg.Pool, task_queue: str
) -> None:
    store = await add_store(pool, "Metrics store")
    await add_product(pool, store, "DRIFT", recorded=10, movements=(4, 3))  # computed 7: a discrepancy
    await add_product(pool, store, "LOW", recorded=2, threshold=5, movements=(2,))  # low stock
    await add_product(pool, store, "FINE", recorded=20, threshold=5, movements=(20,))

    address = f"127.0.0.1:{free_port()}"
    configured = settings.model_copy(update={"metrics": MetricsSettings(worker_bind_address=address)})
    runtime = worker_runtime(configured)
    assert runtime is not None
    env = {"TEMPORAL_ADDRESS": dev_client.service_client.config.target_host}
    client = await connect_temporal(env=env, runtime=runtime)
    async with Mailer(configured.smtp) as mailer, aiohttp.ClientSession() as http:
        resources = WorkerResources(
            settings=configured, pool=pool, upload_pool=pool, mailer=mailer, http=http
        )
        async with workers_running(client, resources, task_queue=task_queue):
            result = await reconcile_store_run(client, store, task_queue)
            assert [outcome.status for outcome in result.stores] == ["reconciled"]
            async with http.get(f"http://{address}/metrics") as response:
                assert response.status == 200
                samples = parse(await response.text())

    mine = {"task_queue": task_queue}
    assert value(samples, "petcare_stock_products_checked_total", **mine) == 3
    assert value(samples, "petcare_stock_discrepancies_total", **mine) == 1
    assert value(samples, "petcare_stock_low_stock_total", **mine) == 1
    assert value(samples, "petcare_stock_discrepancies_total", activity_type="stock_reconcile_store") == 1
    # The SDK's own metrics on the same endpoint.
    assert (
        value(samples, "temporal_workflow_completed_total", workflow_type=STOCK_RECONCILIATION.workflow_type)
        >= 1
    )
    assert value(samples, "temporal_activity_execution_latency_count", **mine) >= 2


def test_worker_metrics_can_be_turned_off(settings: Settings) -> None:
    off = settings.model_copy(update={"metrics": MetricsSettings(worker_bind_address="")})
    assert worker_runtime(off) is None
