"""`petcare api` (run_api): refuses bad settings clearly, serves, and stops cleanly."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from api.server import run_api
from petcare.config import Settings, SettingsError
from tests.support.api import AUTH, closed_port, poll, with_token


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
    port = closed_port()
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


def test_secret_token_is_not_in_settings_repr(api_settings: Settings) -> None:
    assert isinstance(api_settings.api.token, SecretStr)
    assert api_settings.api.token.get_secret_value() not in repr(api_settings)
