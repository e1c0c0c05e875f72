"""Fixtures and helpers of the API tests: settings with a token, a client over the real app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
from devstack.postgres import EmbeddedPostgres, embedded_postgres
from petcare.config import ApiSettings, Settings
from petcare.migrate import migrate_database

API_TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def with_token(settings: Settings, token: str | None = API_TOKEN, *, previous: str | None = None) -> Settings:
    """The settings with these tokens, validated as if read from the environment (so stripped)."""
    api = ApiSettings.model_validate(settings.api.model_dump() | {"token": token, "previous_token": previous})
    return settings.model_copy(update={"api": api})


@pytest.fixture
def api_settings(settings: Settings, task_queue: str) -> Settings:
    """Settings with a token, the API starting its runs on the test's own task queue: where no
    worker polls (they stay Running), or only the test's own worker."""
    return with_token(settings.model_copy(update={"task_queue": task_queue}))


@pytest_asyncio.fixture
async def api_client(
    aiohttp_client: AiohttpClient, api_settings: Settings, dev_client: Client, pool: asyncpg.Pool
) -> TestClient[Any, Any]:
    """The real app on the shared dev server and the test's own database."""
    return await aiohttp_client(create_app(api_settings, temporal=dev_client, pool=pool))


@asynccontextmanager
async def own_postgres(data_dir: Path) -> AsyncIterator[tuple[EmbeddedPostgres, asyncpg.Pool]]:
    """A PostgreSQL server of the test's own (migrated) and a pool on it, to stop and start the
    server for real; stopped after."""
    async with embedded_postgres(data_dir) as server:
        await migrate_database(server.url())
        async with asyncpg.create_pool(server.url(), min_size=1, max_size=2) as pool:
            yield server, pool
