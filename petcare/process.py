"""How a `petcare` command runs and ends: settings and logging first, a failure an operator can
fix reported in one line, and the exit code; leaving without the interpreter's teardown when the
process used a Temporal client.

Why without teardown: the SDK's native runtime keeps threads that can call into Python while the
interpreter tears down; the process then aborts ("PyGILState_Release: thread state ... must be current when
releasing", SIGABRT or SIGSEGV; temporalio/sdk-python#300). Measured here: about one exit in
thirty of `petcare schedules list`, so a `schedules apply` that worked could report a crash.
Once a command's work is done and its output flushed, nothing in the teardown is needed.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from petcare.config import Settings, SettingsError, load_settings
from petcare.logs import configure_logging


class DevExtraMissing(Exception):
    """Dev tooling run where the dev extra, or one of its wheels, is not installed (the production
    image, say); devstack.binaries.BinaryNotFound is one."""


def run_command(work: Callable[[Settings], None], *, holds_temporal_client: bool) -> NoReturn:
    """Run one command's `work` with the settings, then end the process with its exit code."""
    code = _run_reporting_errors(work)
    if holds_temporal_client:
        exit_without_teardown(code)
    sys.exit(code)


def exit_without_teardown(code: int) -> NoReturn:
    """Flush the logs and standard streams, then end the process with `code` at once."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_reporting_errors(work: Callable[[Settings], None]) -> int:
    """The command's exit code. A failure an operator can fix is one line on stderr (code 1; the
    traceback too at PETCARE_LOG_LEVEL=DEBUG); anything else is a bug, printed with its traceback."""
    settings: Settings | None = None
    try:
        settings = load_settings()
        configure_logging(settings.log_level, json_lines=settings.log_json)
        work(settings)
    except SettingsError as error:
        print(f"petcare: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        message = expected_failure(error)
        if message is None or (settings is not None and settings.log_level == "DEBUG"):
            traceback.print_exc()
        if message is not None:
            print(f"petcare: {' '.join(message.split())}", file=sys.stderr)
        return 1
    return 0


def expected_failure(error: BaseException) -> str | None:
    """What went wrong, for a fault of the environment rather than of the code; None for a bug.

    Messages name servers, namespaces and variables, never a secret: the database URL (which may
    hold a password) appears in none of asyncpg's connection errors.
    """
    import asyncpg
    from temporalio.service import RPCError

    from petcare import db
    from petcare.temporal_client import (
        TemporalConfigurationError,
        TemporalUnreachable,
        is_configuration_refusal,
        is_unreachable,
    )

    if isinstance(error, TemporalUnreachable | TemporalConfigurationError | DevExtraMissing):
        return str(error)
    if isinstance(error, RPCError):
        if is_unreachable(error):
            return f"Temporal is unreachable: {error.message}"
        if is_configuration_refusal(error):
            return f"Temporal refused the call ({error.status.name}): {error.message}"
        return None
    # asyncpg reports a refused or unresolvable host as a bare OSError: only one raised inside the
    # driver is PostgreSQL's (a file or port problem elsewhere must not be blamed on it).
    if db.is_unreachable(error) and _raised_within(error, "asyncpg"):
        return f"PostgreSQL is unreachable (PETCARE_DATABASE_URL): {error or type(error).__name__}"
    # Wrong user or password, or no such database: the server answered and said no.
    if isinstance(error, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidCatalogNameError):
        return f"PostgreSQL refused the connection (PETCARE_DATABASE_URL): {error}"
    return None


def _raised_within(error: BaseException, package: str) -> bool:
    frames = traceback.walk_tb(error.__traceback__)
    return any(str(frame.f_globals.get("__name__", "")).startswith(f"{package}.") for frame, _ in frames)
