"""Embedded PostgreSQL for `petcare dev`: data kept under the data dir, the server stopped at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path

import asyncpg
import psutil

from devstack.postgres import EmbeddedPostgres, with_database

log = logging.getLogger(__name__)

DATABASE = "petcare"


def _alive(pid: int) -> bool:
    # A zombie has exited: in a container whose PID 1 does not reap, it would look alive to kill(0).
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def forget_dead_handles(data_dir: Path) -> None:
    """Drop processes that no longer exist from the wheel's list of server users.

    The wheel stops the server only when the last process in that list lets go of it; a
    `petcare dev` that was killed (SIGKILL, power cut) stays listed forever, and the server
    would then outlive every later run.
    """
    handles = data_dir / ".handle_pids.json"
    if handles.exists():
        pids = [pid for pid in json.loads(handles.read_text()) if _alive(pid)]
        handles.write_text(json.dumps(pids))


def postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postmaster.pid"
    try:
        first_line = pid_file.read_text().splitlines()[0]
    except (FileNotFoundError, IndexError):
        return None
    pid = int(first_line)
    return pid if _alive(pid) else None


class DevPostgres:
    """Starts the server over `data_dir` and makes sure the `petcare` database exists."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server = EmbeddedPostgres(self.data_dir)
        self._starting: asyncio.Future[None] | None = None

    async def start(self) -> str:
        """Returns the URL of the `petcare` database."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        forget_dead_handles(self.data_dir)
        # initdb and pg_ctl block for seconds, in a thread that a Ctrl-C cannot interrupt:
        # shielded, so that stop() can wait for it to finish and then stop what it started.
        self._starting = asyncio.ensure_future(asyncio.to_thread(self._server.start))
        await asyncio.shield(self._starting)
        admin_url = self._server.url()
        connection = await asyncpg.connect(admin_url)
        try:
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
            if not exists:
                await connection.execute(f'CREATE DATABASE "{DATABASE}"')  # a constant, not input
        finally:
            await connection.close()
        return with_database(admin_url, DATABASE)

    async def stop(self, timeout: float = 15.0) -> None:
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting
        await asyncio.to_thread(self._server.stop)
        # The wheel leaves the server running if it believes another process still uses it;
        # nothing else uses the dev stack's data dir, so make sure it is down.
        pid = postmaster_pid(self.data_dir)
        if pid is None:
            return
        log.warning("PostgreSQL still running after stop: asking it to shut down (fast)")
        await asyncio.to_thread(_shut_down, pid, timeout)


def _shut_down(pid: int, timeout: float) -> None:
    try:
        postmaster = psutil.Process(pid)
        postmaster.send_signal(signal.SIGINT)  # PostgreSQL's "fast shutdown"
        try:
            postmaster.wait(timeout)
        except psutil.TimeoutExpired:
            postmaster.kill()
    except psutil.NoSuchProcess:
        return
