"""The SFTP destination (asyncssh): verified host key, key or password auth, atomic uploads.

Permanent faults (unknown or changed host key, refused credentials, missing trust or key file,
permission denied) become non-retryable ApplicationErrors with a message an operator can act
on; a refused or lost connection stays retryable, and the retry rewrites the file from the start.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncssh
from temporalio.exceptions import ApplicationError

from activities.exports.destinations import BeforeReplace, DestinationSession, Upload, Writer
from petcare.config import SftpSettings

CONNECT_TIMEOUT_SECONDS = 20.0
# Dead peers are noticed within about a minute instead of at the TCP timeout.
KEEPALIVE_SECONDS = 15.0
# AES-GCM first: with AES-NI it costs about half the CPU of asyncssh's default chacha20-poly1305
# (measured here: 60 MB put in 0.45 s instead of 0.86 s). The rest are OpenSSH's defaults.
CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
]


def _permanent(message: str, error_type: str) -> ApplicationError:
    return ApplicationError(message, type=error_type, non_retryable=True)


class _SftpUpload:
    def __init__(self, file: asyncssh.SFTPClientFile) -> None:
        self._file = file
        self._offset = 0

    async def write(self, data: bytes) -> None:
        # asyncssh splits a large write into the server's advertised maximum and pipelines them.
        await self._file.write(data, self._offset)
        self._offset += len(data)


class SftpSession:
    def __init__(self, sftp: asyncssh.SFTPClient, remote_dir: str, where: str) -> None:
        self._sftp = sftp
        self._remote_dir = remote_dir
        self._where = where

    def final_path(self, directory: str, name: str) -> str:
        return posixpath.join(self._remote_dir, directory, name)

    @asynccontextmanager
    async def upload(
        self, directory: str, name: str, writer: Writer, before_replace: BeforeReplace | None = None
    ) -> AsyncIterator[Upload]:
        folder = posixpath.join(self._remote_dir, directory)
        temp = posixpath.join(folder, writer.temp_name(name))
        try:
            try:
                await self._sftp.makedirs(folder, exist_ok=True)
                async with self._sftp.open(temp, "wb") as file:
                    yield _SftpUpload(file)
                if before_replace is not None:
                    await before_replace()
                await self._replace(temp, posixpath.join(folder, name))
            except BaseException:
                # Also on cancellation and refused writes. Best effort: after a lost connection the
                # temporary file stays (hidden, never final, and named after its run: nobody else
                # writes it).
                with contextlib.suppress(Exception):
                    await self._sftp.remove(temp)
                raise
        except asyncssh.SFTPPermissionDenied as error:
            raise _permanent(
                f"SFTP server {self._where} denied writing {folder}: {error.reason}", "SftpPermissionDenied"
            ) from None
        for earlier in writer.earlier_temp_names(name):
            with contextlib.suppress(asyncssh.SFTPError):
                await self._sftp.remove(posixpath.join(folder, earlier))

    async def remove(self, directory: str, name: str) -> None:
        # Called from an upload's `before_replace`, which classifies a refusal like the upload's own.
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            await self._sftp.remove(posixpath.join(self._remote_dir, directory, name))

    async def _replace(self, temp: str, final: str) -> None:
        try:
            await self._sftp.posix_rename(temp, final)  # atomic overwrite (OpenSSH extension)
        except asyncssh.SFTPOpUnsupported:
            # Plain SFTP rename refuses to overwrite; the old file goes first (a re-export only).
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await self._sftp.remove(final)
            await self._sftp.rename(temp, final)


class SftpDestination:
    """An SFTP server; its host key must be in PETCARE_SFTP__KNOWN_HOSTS_PATH (never auto-accepted)."""

    def __init__(self, settings: SftpSettings) -> None:
        self._settings = settings
        self._where = f"{settings.host}:{settings.port}"

    def _check_files(self) -> tuple[str, str | None]:
        known_hosts = self._settings.known_hosts_path
        if known_hosts is None:
            raise _permanent(
                "PETCARE_SFTP__KNOWN_HOSTS_PATH is not set: the SFTP server's host key must be verified",
                "SftpConfigurationError",
            )
        if not known_hosts.is_file():
            raise _permanent(
                f"PETCARE_SFTP__KNOWN_HOSTS_PATH names no readable file: {known_hosts}",
                "SftpConfigurationError",
            )
        key = self._settings.private_key_path
        if key is not None and not key.is_file():
            raise _permanent(
                f"PETCARE_SFTP__PRIVATE_KEY_PATH names no readable file: {key}", "SftpConfigurationError"
            )
        return str(known_hosts), None if key is None else str(key)

    async def _connect(self) -> asyncssh.SSHClientConnection:
        known_hosts, key = self._check_files()
        password = self._settings.password
        try:
            return await asyncssh.connect(
                self._settings.host,
                self._settings.port,
                username=self._settings.username,
                known_hosts=known_hosts,
                client_keys=None if key is None else [key],
                password=None if password is None else password.get_secret_value(),
                # Only what the settings say: no ~/.ssh/config, no agent, no default keys.
                config=None,
                agent_path=None,
                encryption_algs=CIPHERS,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                keepalive_interval=KEEPALIVE_SECONDS,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise _permanent(
                f"SFTP server {self._where} presented a host key that PETCARE_SFTP__KNOWN_HOSTS_PATH "
                f"({known_hosts}) does not trust (unknown or changed key); not uploading",
                "SftpHostKeyRejected",
            ) from None
        except asyncssh.PermissionDenied:
            raise _permanent(
                f"SFTP server {self._where} refused the credentials of user {self._settings.username!r}",
                "SftpAuthenticationFailed",
            ) from None
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as error:
            raise _permanent(
                f"PETCARE_SFTP__PRIVATE_KEY_PATH cannot be used: {error}", "SftpConfigurationError"
            ) from None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[DestinationSession]:
        connection = await self._connect()
        async with connection, connection.start_sftp_client() as sftp:
            yield SftpSession(sftp, self._settings.remote_dir, self._where)
