"""Fixtures and helpers of the API tests: settings with a token, a client over the real app factory."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from temporalio.client import Client

from api.app import create_app
from devstack.postgres import EmbeddedPostgres
from petcare.config import ApiSettings, Settings
from petcare.migrate import apply_migrations

API_TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def with_token(settings: Settings, token: str | None = API_TOKEN, *, previous: str | None = None) -> Settings:
    """The settings with these tokens, validated as if read from the environment (so stripped)."""
    api = ApiSettings.model_validate(settings.api.model_dump() | {"token": token, "previous_token": previous})
    return settings.model_copy(update={"api": api})


def closed_port() -> int:
    """A loopback port nobody listens on (bound once by us, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def poll(check: Callable[[], Awaitable[Any]], *, timeout: float = 15.0, every: float = 0.25) -> Any:
    """Retry `check` until it returns something truthy (visibility is eventually consistent)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        outcome = await check()
        if outcome:
            return outcome
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last outcome: {outcome!r}")
        await asyncio.sleep(every)


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return with_token(settings)


@pytest_asyncio.fixture
async def api_client(
    aiohttp_client: AiohttpClient, api_settings: Settings, dev_client: Client, pool: asyncpg.Pool
) -> TestClient[Any, Any]:
    """The real app on the shared dev server and the test's own database."""
    return await aiohttp_client(create_app(api_settings, temporal=dev_client, pool=pool))


@pytest_asyncio.fixture
async def queued_api_client(
    aiohttp_client: AiohttpClient,
    api_settings: Settings,
    dev_client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
) -> TestClient[Any, Any]:
    """The real app starting its workflows on the test's own task queue, where only the test's
    worker (if any) polls. Import it into the test module to use it."""
    settings = api_settings.model_copy(update={"task_queue": task_queue})
    return await aiohttp_client(create_app(settings, temporal=dev_client, pool=pool))


@asynccontextmanager
async def own_postgres(data_dir: Path) -> AsyncIterator[tuple[EmbeddedPostgres, asyncpg.Pool]]:
    """A PostgreSQL server of the test's own (migrated) and a pool on it, to stop and start the
    server for real; stopped after."""
    server = EmbeddedPostgres(data_dir)
    await asyncio.to_thread(server.start)
    try:
        connection = await asyncpg.connect(server.url())
        try:
            await apply_migrations(connection)
        finally:
            await connection.close()
        async with asyncpg.create_pool(server.url(), min_size=1, max_size=2) as pool:
            yield server, pool
    finally:
        await asyncio.to_thread(server.stop)
