"""Monitoring against live processes: every metric the alert rules and dashboards query is really
exported by the worker and the API (names drift silently otherwise), and a real Prometheus (Debian's
package) scrapes both, sees a business metric after a job ran, and fires the no-worker rule once
the worker has stopped."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from devstack.ports import free_port
from devstack.rows import add_store
from petcare.config import ApiSettings, MetricsSettings, Settings
from petcare.jobs import FINANCIAL_EXPORT
from petcare.mail import Mailer
from petcare.metrics import worker_runtime
from petcare.models.exports import FinancialExportInput
from petcare.temporal_client import connect_temporal
from tests.support.monitoring import (
    POLLER_MAX_AGE_SECONDS,
    RULES_FILE,
    not_installed,
    queried_metric_names,
    quick_poll_server,
)
from tests.support.polling import poll
from tests.support.stock import add_product, reconcile_store_run
from tests.support.webhook import WebhookReceiver, webhook
from worker_main import WorkerResources, workers_running

__all__ = ["quick_poll_server", "webhook"]  # fixtures, used by name


@workflow.defn(name="MonitoringTestFaulty", sandboxed=False)
class Faulty:
    """A bug in workflow code: its workflow task fails, again and again."""

    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a bug in workflow code")


@workflow.defn(name="MonitoringTestWaiting", sandboxed=False)
class Waiting:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


class Stack:
    """A worker with its metrics endpoint and the API on real loopback ports."""

    def __init__(self, settings: Settings, client: Client, pool: asyncpg.Pool, worker_address: str) -> None:
        self.settings = settings
        self.client = client
        self.pool = pool
        self.worker_address = worker_address
        self.api_port = free_port()

    @asynccontextmanager
    async def api(self) -> AsyncIterator[None]:
        runner = web.AppRunner(create_app(self.settings, temporal=self.client, pool=self.pool))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.api_port).start()
        try:
            yield
        finally:
            await runner.cleanup()

    @asynccontextmanager
    async def worker(self, http: aiohttp.ClientSession) -> AsyncIterator[None]:
        async with Mailer(self.settings.smtp) as mailer:
            resources = WorkerResources(
                settings=self.settings, pool=self.pool, upload_pool=self.pool, mailer=mailer, http=http
            )
            async with workers_running(
                self.client, resources, task_queue=self.settings.task_queue, workflows=[Faulty, Waiting]
            ):
                yield

    async def scrape(self, http: aiohttp.ClientSession) -> set[str]:
        """The sample names (`_total`, `_bucket`, ...) the worker and the API export now."""
        names: set[str] = set()
        for url in (f"http://{self.worker_address}/metrics", f"http://127.0.0.1:{self.api_port}/metrics"):
            async with http.get(url) as response:
                assert response.status == 200, url
                text = await response.text()
            names |= {
                sample.name for family in text_string_to_metric_families(text) for sample in family.samples
            }
        return names


@pytest.fixture
def stack(
    settings: Settings, quick_poll_server: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> Any:
    async def build(webhook_url: str | None = None) -> Stack:
        address = f"127.0.0.1:{free_port()}"
        api = ApiSettings.model_validate(
            settings.api.model_dump()
            | {"token": "monitoring-test-token", "poller_max_age_seconds": POLLER_MAX_AGE_SECONDS}
        )
        configured = Settings.model_validate(
            settings.model_dump()
            | {
                "database_url": settings.database_url,
                "task_queue": task_queue,
                "api": api.model_dump(),
                "metrics": MetricsSettings(worker_bind_address=address).model_dump(),
                "ops_webhook_url": webhook_url,
            }
        )
        runtime = worker_runtime(configured)
        env = {"TEMPORAL_ADDRESS": quick_poll_server.client.service_client.config.target_host}
        client = await connect_temporal(env=env, runtime=runtime)
        return Stack(configured, client, pool, address)

    return build


async def _stock_run(stack: Stack) -> None:
    store = await add_store(stack.pool, "Monitored store")
    await add_product(stack.pool, store, "DRIFT", recorded=10, movements=(4, 3))  # a discrepancy
    await add_product(stack.pool, store, "LOW", recorded=2, threshold=5, movements=(2,))
    result = await reconcile_store_run(stack.client, store, stack.settings.task_queue)
    assert [outcome.status for outcome in result.stores] == ["reconciled"]


async def test_every_metric_the_rules_and_dashboards_query_is_exported(
    stack: Any, webhook: WebhookReceiver
) -> None:
    built: Stack = await stack(webhook.url)
    client, queue = built.client, built.settings.task_queue
    async with aiohttp.ClientSession() as http, built.api(), built.worker(http):
        await _stock_run(built)
        # A failing job run (an export nobody requested): failed workflow and activity, ops alert.
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(
                FINANCIAL_EXPORT.workflow_type,
                FinancialExportInput(export_id=uuid.uuid4()),
                id=f"monitoring-export-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
            )
        # A cancelled run, and a run whose workflow task fails.
        waiting = await client.start_workflow(
            Waiting.run, id=f"monitoring-w-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        await asyncio.sleep(0.5)
        await waiting.cancel()
        with pytest.raises(WorkflowFailureError) as cancelled:
            await waiting.result()
        assert isinstance(cancelled.value.cause, CancelledError)
        faulty = await client.start_workflow(
            Faulty.run, id=f"monitoring-f-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        try:
            wanted = queried_metric_names()

            async def missing() -> dict[str, str]:
                exported = await built.scrape(http)
                return {name: where for name, where in wanted.items() if name not in exported}

            async def all_exported() -> bool:
                return not await missing()

            try:
                # Some appear only after an empty long poll or a failed task's retry: a few seconds.
                await poll(all_exported, timeout=30, every=1.0, what="every queried metric exported")
            except AssertionError:
                pytest.fail(f"queried but not exported (name: where): {await missing()}")
        finally:
            await faulty.terminate(reason="test over")
    assert len(webhook.received) == 1, "the failed export's alert"


def _prometheus_config(tmp_path: Path, stack: Stack) -> Path:
    rules = yaml.safe_load(RULES_FILE.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "PetcareNoWorkerPolling":
                rule["for"] = "2s"  # the test's copy: minutes in production
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {"job_name": "petcare-worker", "static_configs": [{"targets": [stack.worker_address]}]},
            {"job_name": "petcare-api", "static_configs": [{"targets": [f"127.0.0.1:{stack.api_port}"]}]},
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@asynccontextmanager
async def prometheus(config: Path, port: int, data: Path) -> AsyncIterator[str]:
    """Debian's prometheus on loopback with `config`; its base URL while the block runs."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(not_installed("prometheus"))
    log = (data.parent / "prometheus.log").open("w")
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={data}",
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"{url}/-/ready") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await poll(ready, timeout=30, every=0.2, what="prometheus ready")
        yield url
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)
        log.close()


async def _query(http: aiohttp.ClientSession, url: str, promql: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/api/v1/query", params={"query": promql}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _alerts(http: aiohttp.ClientSession, url: str, name: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/api/v1/alerts") as response:
        body = await response.json()
    return [alert for alert in body["data"]["alerts"] if alert["labels"]["alertname"] == name]


async def test_a_real_prometheus_scrapes_the_jobs_and_fires_when_no_worker_polls(
    stack: Any, tmp_path: Path
) -> None:
    built: Stack = await stack()
    queue = built.settings.task_queue
    config = _prometheus_config(tmp_path, built)
    async with (
        aiohttp.ClientSession() as http,
        built.api(),
        prometheus(config, free_port(), tmp_path / "tsdb") as url,
    ):
        async with built.worker(http):
            await _stock_run(built)

            async def discrepancy_scraped() -> list[dict[str, Any]]:
                return await _query(
                    http, url, f'sum(petcare_stock_discrepancies_total{{task_queue="{queue}"}})'
                )

            result = await poll(discrepancy_scraped, timeout=30, every=0.5, what="the business metric")
            assert float(result[0]["value"][1]) == 1

            async def targets_up() -> bool:
                up = await _query(http, url, "up")
                return {sample["metric"]["job"] for sample in up if sample["value"][1] == "1"} == {
                    "petcare-worker",
                    "petcare-api",
                }

            await poll(targets_up, timeout=15, every=0.5, what="both targets up")
            pollers = await _query(http, url, f'petcare_task_queue_pollers{{task_queue="{queue}"}}')
            assert pollers
            assert float(pollers[0]["value"][1]) >= 1
            assert await _alerts(http, url, "PetcareNoWorkerPolling") == []
        # The worker has stopped: the API's health stops counting it, the rule fires.

        async def firing() -> list[dict[str, Any]]:
            alerts = await _alerts(http, url, "PetcareNoWorkerPolling")
            return [alert for alert in alerts if alert["state"] == "firing"]

        alerts = await poll(
            firing, timeout=POLLER_MAX_AGE_SECONDS + 30, every=0.5, what="the no-worker alert"
        )
    assert alerts[0]["labels"]["task_queue"] == queue
    assert alerts[0]["labels"]["severity"] == "critical"
    assert alerts[0]["annotations"]["runbook_url"] == "docs/operations.md#petcarenoworkerpolling"
