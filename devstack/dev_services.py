"""The servers of `petcare dev`, each started with its stop registered on the stack's exit stack."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path

from devstack.demo_data import insert_demo_data
from devstack.dev_postgres import DevPostgres
from devstack.sftp_server import SftpServer
from devstack.smtp_sink import SinkHandler, SmtpSink
from devstack.ssh_keys import SftpLayout
from devstack.temporal_server import TemporalDevServer
from petcare.config import Settings
from petcare.db import create_pool
from petcare.migrate import migrate_database

log = logging.getLogger("petcare.dev")

LOOPBACK = "127.0.0.1"


async def prepare_database(settings: Settings, data_dir: Path, stack: AsyncExitStack) -> tuple[str, str]:
    """Embedded PostgreSQL unless PETCARE_DATABASE_URL is set; migrated, with demo data.

    Returns the URL and a line describing it for the banner (no password in it).
    """
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        line = "PETCARE_DATABASE_URL (external)"
    else:
        postgres = DevPostgres(data_dir / "postgres")
        stack.push_async_callback(postgres.stop)
        url = await postgres.start()
        line = f"{url}   (data in {postgres.data_dir})"
    applied = await migrate_database(url)
    log.info("migrations applied: %s", ", ".join(applied) or "none (up to date)")
    async with create_pool(settings, dsn=url) as pool:
        added = await insert_demo_data(pool)
    log.info("demo data: %s", ", ".join(f"{table} +{count}" for table, count in added.items()))
    return url, line


async def start_temporal(settings: Settings, data_dir: Path, stack: AsyncExitStack) -> TemporalDevServer:
    """The dev server with its state in data_dir/temporal, kept across restarts."""
    server = TemporalDevServer(
        ip=LOOPBACK,
        port=settings.dev.temporal_port,
        ui_port=settings.dev.temporal_ui_port,
        db_file=data_dir / "temporal" / "temporal.db",
        log_file=data_dir / "temporal" / "server.log",
    )
    stack.push_async_callback(server.stop)
    await server.start()
    return server


async def start_mail_and_sftp(settings: Settings, data_dir: Path, stack: AsyncExitStack) -> SftpLayout:
    """The SMTP sink (.eml files in data_dir/mail) and the SFTP server over data_dir/sftp/root."""
    (data_dir / "mail").mkdir(parents=True, exist_ok=True)  # printed in the banner: exists from the start
    sink = SmtpSink(LOOPBACK, settings.dev.smtp_port, SinkHandler(mail_dir=data_dir / "mail"))
    stack.push_async_callback(sink.stop)
    await sink.start()
    layout = SftpLayout(data_dir / "sftp")
    layout.prepare(LOOPBACK, settings.dev.sftp_port, remote_dirs=(settings.sftp.remote_dir,))
    sftp = SftpServer(
        LOOPBACK,
        settings.dev.sftp_port,
        layout.root,
        host_key_path=layout.host_key_path,
        authorized_keys_path=layout.authorized_keys_path,
        username=settings.sftp.username,
    )
    stack.push_async_callback(sftp.stop)
    await sftp.start()
    return layout
