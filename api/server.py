"""`petcare api`: serve the app on PETCARE_API__HOST/PORT until SIGTERM or SIGINT, then clean up."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal

from aiohttp import web

from api.app import create_app
from petcare.config import ENV_PREFIX, Settings, SettingsError

log = logging.getLogger(__name__)

# Requests in flight get this long to finish when the process is asked to stop.
SHUTDOWN_SECONDS = 10.0


def check_api_settings(settings: Settings) -> None:
    """Refuse to start an API that would be open to anyone or could never reach its database."""
    if settings.api.token is None:  # a blank one is None too (ApiSettings strips tokens)
        raise SettingsError(
            f"{ENV_PREFIX}API__TOKEN is not set: every /api/v1 route but health requires this bearer token"
        )
    settings.require_database_url()


async def run_api(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set, or, without one, until SIGTERM/SIGINT."""
    check_api_settings(settings)
    runner = web.AppRunner(create_app(settings), handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.api.host, settings.api.port)
        try:
            await site.start()
        except OSError as error:
            raise _bind_error(settings, error) from None
        log.info("API listening on http://%s:%d", settings.api.host, settings.api.port)
        await _until_stopped(stop)
        log.info("API stopping")
    finally:
        await runner.cleanup()


async def _until_stopped(stop: asyncio.Event | None) -> None:
    if stop is not None:  # the caller (e.g. `petcare dev`) owns the signals
        await stop.wait()
        return
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _bind_error(settings: Settings, error: OSError) -> SettingsError:
    where = f"{settings.api.host}:{settings.api.port}"
    if error.errno == errno.EADDRINUSE:
        return SettingsError(
            f"port {settings.api.port} is already in use ({where}): "
            f"stop the other process or set {ENV_PREFIX}API__PORT to a free port"
        )
    return SettingsError(
        f"cannot listen on {where} ({error.strerror or error}): "
        f"check {ENV_PREFIX}API__HOST and {ENV_PREFIX}API__PORT"
    )
