"""The test suite's PostgreSQL server: an external one or embedded PostgreSQL from the wheel."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from devstack.postgres import create_database, drop_database, embedded_postgres, with_database


class TestPostgres:
    """Creates and drops the per-test databases on one server."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def url_for(self, database: str) -> str:
        return with_database(self.admin_url, database)

    async def create_database(self, name: str, *, template: str | None = None) -> str:
        return await create_database(self.admin_url, name, template=template)

    async def drop_database(self, name: str) -> None:
        await drop_database(self.admin_url, name)


@asynccontextmanager
async def start_test_postgres(data_dir: Path) -> AsyncIterator[TestPostgres]:
    """PETCARE_TEST_DATABASE_URL if set, else embedded PostgreSQL over `data_dir`."""
    external = os.environ.get("PETCARE_TEST_DATABASE_URL")
    if external:
        yield TestPostgres(external)
        return
    async with embedded_postgres(data_dir) as server:
        yield TestPostgres(server.url())
