"""`petcare api` (run_api): refuses bad settings clearly, serves, and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from temporalio.testing import WorkflowEnvironment

from api.server import run_api
from devstack.ports import free_port
from petcare.config import Settings, SettingsError
from tests.support.api import API_TOKEN, AUTH, with_token
from tests.support.polling import poll


def on_port(settings: Settings, port: int) -> Settings:
    return settings.model_copy(update={"api": settings.api.model_copy(update={"port": port})})


async def test_refuses_to_start_without_a_token(settings: Settings) -> None:
    for token in (None, "  "):
        with pytest.raises(SettingsError, match="PETCARE_API__TOKEN"):
            await run_api(with_token(settings, token))


async def test_refuses_to_start_without_a_database_url(api_settings: Settings) -> None:
    with pytest.raises(SettingsError, match="PETCARE_DATABASE_URL"):
        await run_api(api_settings.model_copy(update={"database_url": None}))


async def test_port_in_use_is_a_clear_error(
    api_settings: Settings, dev_server: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server.client.service_client.config.target_host)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=f"port {port} is already in use") as raised:
            await run_api(on_port(api_settings, port))
    assert "PETCARE_API__PORT" in str(raised.value)


async def test_serves_until_stopped(
    api_settings: Settings, dev_server: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server.client.service_client.config.target_host)
    port = free_port()
    stop = asyncio.Event()
    server = asyncio.create_task(run_api(on_port(api_settings, port), stop=stop))
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        async with aiohttp.ClientSession() as session:

            async def healthy() -> bool:
                try:
                    async with session.get(f"{base}/workers/health") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await poll(healthy, timeout=15)
            async with session.get(f"{base}/workers/runs/x") as response:
                assert response.status == 401
            async with session.get(f"{base}/workers/runs/x", headers=AUTH) as response:
                assert response.status == 404
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=15)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(f"{base}/workers/health"):
            pass


async def test_petcare_api_command_serves_and_exits_on_sigterm(
    api_settings: Settings, dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PETCARE_DATABASE_URL": api_settings.require_database_url(),
        "PETCARE_API__TOKEN": API_TOKEN,
        "PETCARE_API__PORT": str(port),
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "TEMPORAL_CONFIG_FILE": os.devnull,
    }
    # cwd: an empty directory, so no developer .env is read.
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "petcare"),
        "api",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def healthy() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/api/v1/workers/health") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await poll(healthy, timeout=20)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output.decode()
    assert API_TOKEN not in output.decode()


async def test_petcare_api_command_without_token_names_the_variable(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PETCARE_")}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "petcare"),
        "api",
        cwd=tmp_path,
        env={**env, "PETCARE_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "PETCARE_API__TOKEN" in errors.decode()
    assert "Traceback" not in errors.decode()
