"""A real SFTP server (asyncssh) jailed in one directory, with faults that tests can inject."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from pathlib import Path
from typing import Any

import asyncssh

log = logging.getLogger(__name__)


class _JailedSftp(asyncssh.SFTPServer):
    """asyncssh's chroot, plus a refusal of symlinks that lead out of the root."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], owner: SftpServer) -> None:
        super().__init__(chan, chroot=os.fsencode(owner.root))
        self._owner = owner
        self._root = os.fsencode(owner.root)

    def map_path(self, path: bytes) -> bytes:
        # The chroot already normalises "../" inside the root; a pre-existing symlink pointing
        # outside would still be followed, so the resolved path is checked too.
        local = super().map_path(path)
        resolved = os.path.realpath(local)
        if resolved != self._root and not resolved.startswith(self._root + b"/"):
            raise asyncssh.SFTPPermissionDenied("path leads outside the SFTP root")
        return local

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        await self._owner._writable()
        return self._owner._write(self, file_obj, offset, data)


class SftpServer:
    """Runs on the caller's event loop; `stop()` then `start()` again simulates an outage.

    Clients authenticate as `username` with a key from `authorized_keys_path` (re-read at each
    login) or, when `password` is set, with that password.
    """

    def __init__(
        self,
        host: str,
        port: int,
        root: Path,
        *,
        host_key_path: Path,
        authorized_keys_path: Path,
        username: str = "petcare",
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.root = root.resolve()
        self.host_key_path = host_key_path
        self.authorized_keys_path = authorized_keys_path
        self.username = username
        self.password = password
        self.bytes_received = 0
        self.writes_held = 0  # write requests waiting, unanswered, for `release_writes()`
        self.most_connections = 0  # the most SSH connections ever open at once
        self._cut_after: int | None = None
        self._writes_refused = False
        self._writes_open = asyncio.Event()
        self._writes_open.set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()

    async def start(self) -> None:
        self._acceptor = await asyncssh.listen(
            self.host,
            self.port,
            server_host_keys=[str(self.host_key_path)],
            server_factory=lambda: _SshServer(self),
            sftp_factory=lambda chan: _JailedSftp(chan, self),
            allow_scp=False,
        )
        # Port 0 asks for any free port; keep the real one so a restart reuses it.
        self.port = self._acceptor.get_port()
        log.info("SFTP server listening on %s:%s over %s", self.host, self.port, self.root)

    async def stop(self) -> None:
        """Stop listening and drop open connections, as a crashed server would."""
        if self._acceptor is not None:
            self._acceptor.close()
            self.drop_connections()
            await self._acceptor.wait_closed()
            self._acceptor = None

    def drop_connections(self) -> int:
        """Cut every open connection at the TCP level (no SSH goodbye); returns how many."""
        dropped = list(self._connections)
        for connection in dropped:
            connection.abort()
        self._connections.clear()
        return len(dropped)

    def cut_uploads_after(self, limit: int) -> None:
        """Once `limit` more bytes have been received, store no more and cut that connection.

        One-shot: the next connection (a retry) works normally.
        """
        self._cut_after = self.bytes_received + limit

    def refuse_writes(self, refuse: bool = True) -> None:
        """While set, every write is answered "permission denied" (as a full or read-only share
        would); the connection stays up. Until `refuse_writes(False)`."""
        self._writes_refused = refuse

    def hold_writes(self) -> None:
        """Answer no write request until `release_writes()`, as a server whose disk hangs: the
        connections stay open, and each client waits with its data unsent."""
        self._writes_open.clear()

    def release_writes(self) -> None:
        self._writes_open.set()

    async def _writable(self) -> None:
        if self._writes_open.is_set():
            return
        self.writes_held += 1
        try:
            await self._writes_open.wait()
        finally:
            self.writes_held -= 1

    def _write(self, sftp: _JailedSftp, file_obj: object, offset: int, data: bytes) -> int:
        if self._writes_refused:
            raise asyncssh.SFTPPermissionDenied("writes refused (fault injected)")
        if self._cut_after is not None and self.bytes_received + len(data) >= self._cut_after:
            data = data[: self._cut_after - self.bytes_received]
            self._cut_after = None
            written = self._store(file_obj, offset, data)
            log.info("SFTP server cutting a connection mid-upload (fault injected)")
            sftp.connection.abort()
            return written
        return self._store(file_obj, offset, data)

    def _store(self, file_obj: object, offset: int, data: bytes) -> int:
        file = file_obj  # asyncssh opened it with plain open(), so it is a binary file object
        file.seek(offset)  # type: ignore[attr-defined]
        written: int = file.write(data)  # type: ignore[attr-defined]
        file.flush()  # type: ignore[attr-defined]
        self.bytes_received += written
        return written

    def _connected(self, connection: asyncssh.SSHServerConnection) -> None:
        self._connections.add(connection)
        self.most_connections = max(self.most_connections, len(self._connections))

    def _disconnected(self, connection: asyncssh.SSHServerConnection) -> None:
        self._connections.discard(connection)

    async def __aenter__(self) -> SftpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


class _SshServer(asyncssh.SSHServer):
    """Authentication for the one SFTP user; everything but SFTP is refused by asyncssh."""

    def __init__(self, owner: SftpServer) -> None:
        self._owner = owner
        self._connection: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connection = conn
        self._owner._connected(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connection is not None:
            self._owner._disconnected(self._connection)

    def begin_auth(self, username: str) -> bool:
        # Keys are trusted for the configured user only; other names get no key at all.
        if username == self._owner.username and self._owner.authorized_keys_path.exists():
            assert self._connection is not None
            self._connection.set_authorized_keys(str(self._owner.authorized_keys_path))
        return True

    def password_auth_supported(self) -> bool:
        return self._owner.password is not None

    def validate_password(self, username: str, password: str) -> bool:
        expected = self._owner.password
        if expected is None or username != self._owner.username:
            return False
        return hmac.compare_digest(password.encode(), expected.encode())
