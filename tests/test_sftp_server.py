"""The local SFTP server: host key verification, authentication, the root jail, injected faults."""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from devstack.ssh_keys import SftpLayout, ensure_private_key, write_known_hosts
from tests.support.sftp import SftpFixture

# How a cut shows on the client depends on where the read was: SSH-level loss or a TCP reset.
CONNECTION_CUT = (asyncssh.SFTPConnectionLost, asyncssh.ConnectionLost, ConnectionResetError)


def _connect(
    sftp: SftpFixture, **overrides: Any
) -> AbstractAsyncContextManager[asyncssh.SSHClientConnection]:
    options: dict[str, Any] = {
        "username": sftp.username,
        "known_hosts": str(sftp.known_hosts_path),
        "client_keys": [str(sftp.private_key_path)],
        "agent_path": None,
        "config": None,  # never the developer's ~/.ssh/config
        "password": None,
    }
    options.update(overrides)
    return asyncssh.connect(sftp.host, sftp.port, **options)


async def test_upload_then_rename_with_a_verified_host_key(sftp_server: SftpFixture, tmp_path: Path) -> None:
    local = tmp_path / "report.csv"
    local.write_bytes(b"id,total\n1,1200\n" * 1000)
    async with _connect(sftp_server) as connection, connection.start_sftp_client() as client:
        await client.put(str(local), f"{sftp_server.remote_dir}/report.csv.part")
        await client.posix_rename(
            f"{sftp_server.remote_dir}/report.csv.part", f"{sftp_server.remote_dir}/report.csv"
        )
        names = sorted(await client.listdir(sftp_server.remote_dir))
    assert names == [".", "..", "report.csv"]
    assert (sftp_server.root / "exports" / "report.csv").read_bytes() == local.read_bytes()


async def test_password_authentication(sftp_server: SftpFixture) -> None:
    async with (
        _connect(sftp_server, client_keys=None, password=sftp_server.password) as connection,
        connection.start_sftp_client() as client,
    ):
        assert await client.isdir(sftp_server.remote_dir)


async def test_unknown_host_key_is_not_verifiable(sftp_server: SftpFixture, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with _connect(sftp_server, known_hosts=str(empty)):
            pass
    other = tmp_path / "other_known_hosts"
    write_known_hosts(
        other, sftp_server.host, sftp_server.port, ensure_private_key(tmp_path / "k", comment="x")
    )
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with _connect(sftp_server, known_hosts=str(other)):
            pass


async def test_wrong_key_wrong_user_and_wrong_password_are_refused(
    sftp_server: SftpFixture, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger_key"
    ensure_private_key(stranger, comment="stranger")
    with pytest.raises(asyncssh.PermissionDenied):
        async with _connect(sftp_server, client_keys=[str(stranger)]):
            pass
    with pytest.raises(asyncssh.PermissionDenied):
        async with _connect(sftp_server, username="root"):
            pass
    with pytest.raises(asyncssh.PermissionDenied):
        async with _connect(sftp_server, client_keys=None, password="not-the-password"):
            pass


async def test_paths_cannot_escape_the_root(sftp_server: SftpFixture, tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("not for SFTP clients")
    os.symlink(tmp_path, sftp_server.root / "escape")
    async with _connect(sftp_server) as connection, connection.start_sftp_client() as client:
        # "../" stops at the virtual root: the write lands inside it, the read finds nothing.
        async with client.open("../../../dotdot.txt", "wb") as remote:
            await remote.write(b"inside")
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await client.stat("/../../etc/hostname")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await client.open("/escape/outside.txt", "rb")
        # A link the client creates is mapped into the root too.
        await client.symlink("/../etc/hostname", "/link")
        assert await client.realpath("/../..") == "/"
    assert (sftp_server.root / "dotdot.txt").read_bytes() == b"inside"
    assert os.readlink(sftp_server.root / "link") == str(sftp_server.root / "etc" / "hostname")
    assert not (tmp_path.parent / "dotdot.txt").exists()


async def test_connection_cut_mid_upload_raises_on_the_client(
    sftp_server: SftpFixture, tmp_path: Path
) -> None:
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(2 * 1024 * 1024))
    remote = f"{sftp_server.remote_dir}/big.bin.part"
    sftp_server.server.cut_uploads_after(300_000)
    with pytest.raises(CONNECTION_CUT):
        async with _connect(sftp_server) as connection, connection.start_sftp_client() as client:
            await client.put(str(local), remote)
    partial = sftp_server.root / "exports" / "big.bin.part"
    assert 0 < partial.stat().st_size <= 300_000
    # One-shot fault: the retry goes through and overwrites the partial file.
    async with _connect(sftp_server) as connection, connection.start_sftp_client() as client:
        await client.put(str(local), remote)
    assert partial.read_bytes() == local.read_bytes()


async def test_drop_connections_and_outage(sftp_server: SftpFixture) -> None:
    async with _connect(sftp_server) as connection, connection.start_sftp_client() as client:
        assert await client.isdir("/")
        assert sftp_server.server.drop_connections() == 1
        with pytest.raises(CONNECTION_CUT):
            await client.listdir("/")
    await sftp_server.server.stop()
    with pytest.raises(OSError, match="Connect call failed"):
        async with _connect(sftp_server):
            pass
    await sftp_server.server.start()
    async with _connect(sftp_server) as connection, connection.start_sftp_client() as client:
        assert await client.isdir(sftp_server.remote_dir)


def test_layout_keeps_its_keys_across_restarts(tmp_path: Path) -> None:
    layout = SftpLayout(tmp_path / "sftp")
    layout.prepare("127.0.0.1", 2222)
    host_key = layout.host_key_path.read_bytes()
    client_key = layout.client_key_path.read_bytes()
    layout.prepare("127.0.0.1", 2223)
    assert layout.host_key_path.read_bytes() == host_key
    assert layout.client_key_path.read_bytes() == client_key
    assert layout.host_key_path.stat().st_mode & 0o777 == 0o600
    assert layout.known_hosts_path.read_text().startswith("[127.0.0.1]:2223,[localhost]:2223 ssh-ed25519 ")
