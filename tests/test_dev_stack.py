"""`petcare dev` end to end: up and healthy, SIGTERM leaves no process, a restart reuses .data."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus

from devstack.child import ChildProcess
from devstack.ports import free_ports
from devstack.temporal_server import TemporalDevServer
from petcare.jobs import CUSTOM_SEARCH_ATTRIBUTES, JOB_ATTRIBUTE
from tests.support.polling import poll

pytestmark = pytest.mark.slow

PETCARE = str(Path(sys.executable).parent / "petcare")
HEALTH_DEADLINE = 90.0


@dataclass
class Stack:
    """One `petcare dev` run in `workdir`."""

    workdir: Path
    env: dict[str, str]
    api_port: int
    ui_port: int
    temporal_port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def data(self) -> Path:
        return self.workdir / ".data"

    @property
    def output(self) -> str:
        return (self.workdir / "dev.log").read_text(errors="replace")

    def database_url(self) -> str:
        return f"postgresql://postgres:@/petcare?host={self.data / 'postgres'}"

    async def start(self) -> None:
        with (self.workdir / "dev.log").open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                PETCARE, "dev", cwd=self.workdir, env=self.env, stdout=log, stderr=log
            )

    async def wait_healthy(self) -> None:
        url = f"http://127.0.0.1:{self.api_port}/api/v1/workers/health"
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                assert self.process is not None
                assert self.process.returncode is None, self.output
                try:
                    async with http.get(url) as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            try:
                await poll(healthy, timeout=HEALTH_DEADLINE, every=0.5, what=f"a 200 from {url}")
            except AssertionError as error:
                raise AssertionError(f"{error}\n{self.output}") from None

    def processes(self) -> list[psutil.Process]:
        """Every process of the stack: itself, its descendants, and PostgreSQL (which pg_ctl detached)."""
        assert self.process is not None
        own = psutil.Process(self.process.pid)
        postmaster = psutil.Process(int((self.data / "postgres" / "postmaster.pid").read_text().split()[0]))
        return [own, *own.children(recursive=True), postmaster, *postmaster.children(recursive=True)]

    async def wait_exit(self, timeout: float = 90.0) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)


@asynccontextmanager
async def dev_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    temporal_port, ui_port, smtp_port, sftp_port, api_port = free_ports(5)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PETCARE_", "TEMPORAL_"))}
    env.update(
        PETCARE_DEV__TEMPORAL_PORT=str(temporal_port),
        PETCARE_DEV__TEMPORAL_UI_PORT=str(ui_port),
        PETCARE_DEV__SMTP_PORT=str(smtp_port),
        PETCARE_DEV__SFTP_PORT=str(sftp_port),
        PETCARE_API__PORT=str(api_port),
    )
    stack = Stack(tmp_path, env, api_port, ui_port, temporal_port)
    try:
        yield stack
    finally:
        # Whatever the test did, nothing it started survives it.
        if stack.process is not None and stack.process.returncode is None:
            stack.process.send_signal(signal.SIGTERM)
            await stack.wait_exit()


async def _assert_all_gone(processes: list[psutil.Process]) -> None:
    def alive() -> list[psutil.Process]:
        return [p for p in processes if p.is_running() and p.status() != "zombie"]

    await poll(lambda: not alive(), timeout=10, every=0.1, what="every process of the stack gone")


async def _first_run(stack: Stack) -> tuple[str, str]:
    """Up, healthy, UI answers; leaves a row and a workflow behind; SIGTERM stops everything."""
    await stack.start()
    await stack.wait_healthy()
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{stack.ui_port}/") as ui:
        assert ui.status == 200
    marker = f"restart-marker-{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(stack.database_url())
    try:
        await connection.execute(
            "INSERT INTO stores (id, name, timezone) VALUES ($1, $2, 'Europe/Paris')", uuid.uuid4(), marker
        )
    finally:
        await connection.close()
    client = await Client.connect(f"127.0.0.1:{stack.temporal_port}")
    workflow_id = f"dev-stack-restart-{uuid.uuid4().hex[:8]}"
    # A type no worker polls for: it stays open, and must still be there after a restart.
    await client.start_workflow("NobodyRunsThis", id=workflow_id, task_queue="dev-stack-test-idle")
    processes = stack.processes()
    assert {"temporal", "petcare"} <= {p.name() for p in processes}
    assert stack.process is not None
    stack.process.send_signal(signal.SIGTERM)
    assert await stack.wait_exit() == 0, stack.output
    await _assert_all_gone(processes)
    return marker, workflow_id


async def test_dev_stack_starts_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    async with dev_stack(tmp_path) as stack:
        marker, workflow_id = await _first_run(stack)
        token = (stack.data / "api-token").read_text()
        assert (stack.data / "api-token").stat().st_mode & 0o777 == 0o600
        host_key = (stack.data / "sftp" / "ssh_host_ed25519_key").read_bytes()

        await stack.start()
        await stack.wait_healthy()
        assert (stack.data / "api-token").read_text() == token
        assert (stack.data / "sftp" / "ssh_host_ed25519_key").read_bytes() == host_key
        connection = await asyncpg.connect(stack.database_url())
        try:
            assert await connection.fetchval("SELECT count(*) FROM stores WHERE name = $1", marker) == 1
        finally:
            await connection.close()
        client = await Client.connect(f"127.0.0.1:{stack.temporal_port}")
        description = await client.get_workflow_handle(workflow_id).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        await client.get_workflow_handle(workflow_id).terminate("test done")

        # A child that dies takes the whole stack down, with a message saying which one.
        processes = stack.processes()
        worker = next(p for p in processes if p.cmdline()[-1:] == ["worker"])
        worker.kill()
        assert await stack.wait_exit() == 1
        assert (
            "stopped because the worker (petcare worker) exited unexpectedly (killed by SIGKILL)"
            in stack.output
        )
        await _assert_all_gone(processes)


async def test_taken_port_is_named_with_its_setting(tmp_path: Path) -> None:
    async with dev_stack(tmp_path) as stack:
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            taken = squatter.getsockname()[1]
            stack.env["PETCARE_DEV__SFTP_PORT"] = str(taken)
            await stack.start()
            code = await stack.wait_exit(timeout=30)
    assert code == 2
    assert f"port {taken} on 127.0.0.1 (SFTP server) is already in use" in stack.output
    assert "PETCARE_DEV__SFTP_PORT" in stack.output
    assert not (stack.data / "postgres").exists(), "nothing starts before the ports are checked"


async def test_temporal_restart_registers_attributes_added_since(tmp_path: Path) -> None:
    """start-dev ignores a new --search-attribute over an existing database: the stack adds it."""
    port, ui_port = free_ports(2)
    db_file = tmp_path / "temporal.db"
    first = TemporalDevServer(
        port=port,
        ui_port=ui_port,
        db_file=db_file,
        log_file=tmp_path / "t.log",
        search_attributes=[JOB_ATTRIBUTE],
    )
    await first.start()
    await first.stop()
    assert first.process.returncode is not None
    second = TemporalDevServer(port=port, ui_port=ui_port, db_file=db_file, log_file=tmp_path / "t.log")
    client = await second.start()
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        assert {key.name for key in CUSTOM_SEARCH_ATTRIBUTES} <= set(listed.custom_attributes)
    finally:
        await second.stop()


async def test_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    child = ChildProcess(
        "stubborn", ["sh", "-c", "trap '' TERM; echo ready; sleep 60"], log_file=tmp_path / "c.log"
    )
    await child.start()
    # The trap must be set before SIGTERM comes.
    await poll(lambda: "ready" in (tmp_path / "c.log").read_text(), timeout=30, every=0.05, what="ready")
    started = time.monotonic()
    assert await child.stop(timeout=1.0) == -signal.SIGKILL
    assert time.monotonic() - started < 5
