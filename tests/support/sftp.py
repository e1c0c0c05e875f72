"""The `sftp_server` fixture: a real asyncssh SFTP server on a free port, with its keys and trust files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio

from devstack.sftp_server import SftpServer
from devstack.ssh_keys import SftpLayout
from petcare.config import SftpSettings

SFTP_USERNAME = "petcare"
SFTP_PASSWORD = "sftp-test-password"
REMOTE_DIR = "/exports"


@dataclass(frozen=True)
class SftpFixture:
    """What a client needs to reach the server, and the server itself to inject faults."""

    server: SftpServer
    host: str
    port: int
    root: Path  # local directory behind the server's "/"
    username: str
    password: str
    private_key_path: Path
    known_hosts_path: Path
    remote_dir: str

    def settings(self) -> SftpSettings:
        """SftpSettings pointing at this server with key authentication."""
        return SftpSettings(
            host=self.host,
            port=self.port,
            username=self.username,
            private_key_path=self.private_key_path,
            known_hosts_path=self.known_hosts_path,
            remote_dir=self.remote_dir,
        )


@pytest_asyncio.fixture
async def sftp_server(tmp_path: Path) -> AsyncIterator[SftpFixture]:
    """A real SFTP server rooted in a temporary directory, with `/exports` already created."""
    layout = SftpLayout(tmp_path / "sftp")
    # The port is only known once listening; the trust files are written after that.
    layout.prepare("127.0.0.1", 22, remote_dirs=(REMOTE_DIR,))
    server = SftpServer(
        "127.0.0.1",
        0,
        layout.root,
        host_key_path=layout.host_key_path,
        authorized_keys_path=layout.authorized_keys_path,
        username=SFTP_USERNAME,
        password=SFTP_PASSWORD,
    )
    await server.start()
    layout.prepare(server.host, server.port)
    try:
        yield SftpFixture(
            server=server,
            host=server.host,
            port=server.port,
            root=layout.root,
            username=SFTP_USERNAME,
            password=SFTP_PASSWORD,
            private_key_path=layout.client_key_path,
            known_hosts_path=layout.known_hosts_path,
            remote_dir=REMOTE_DIR,
        )
    finally:
        await server.stop()
