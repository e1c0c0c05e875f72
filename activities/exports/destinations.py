"""Where export files go (a local directory or an SFTP server, as the settings say); every upload is atomic.

An upload writes a temporary name in the target directory and renames it to the final name
only once complete, so a reader never sees a partial file under a final name. The temporary
name carries the workflow run and the activity attempt: no other run or attempt ever writes the
same temporary file (a late writer cannot corrupt a retry's file, nor a cancelled run a re-run's).
An upload that fails or is cancelled removes its temporary file; a successful one also removes
the leftovers of its run's earlier attempts (a crashed worker's cannot be told from a live one's).
Its caller's `before_replace` runs once the data is complete, just before the rename: the export
retracts its manifest there, so no manifest ever stands beside a file it does not describe.

SFTP's permanent faults (unknown or changed host key, refused credentials, missing trust or key
file, permission denied) become non-retryable ApplicationErrors with a message an operator can
act on; a refused or lost connection stays retryable, and the retry rewrites the file from the start.

The API reads files back (`read`) through the same sessions, so the same settings and the same
host key check apply; a read holds one block at a time, whatever the file's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import asyncssh

from petcare.config import Settings, SftpSettings
from petcare.errors import ErrorType, application_error


@dataclass(frozen=True)
class Writer:
    """Who writes an upload: one attempt of one activity in one workflow run."""

    run_id: str
    attempt: int

    def temp_name(self, name: str) -> str:
        # A dot file: consumers that skip hidden files never pick it up.
        return f".{name}.{self.run_id}.{self.attempt}.part"

    def earlier_temp_names(self, name: str) -> Iterator[str]:
        for attempt in range(1, self.attempt):
            yield Writer(self.run_id, attempt).temp_name(name)


class Upload(Protocol):
    async def write(self, data: bytes) -> None: ...


# What a read hands over at a time: the memory a download holds, whatever the file's size.
READ_BLOCK_BYTES = 256 * 1024


class StoredFileMissing(Exception):
    """The file is not (or no longer) at the destination, or its path is outside the destination."""


@dataclass(frozen=True)
class StoredFile:
    """A file being read from the destination: its size, and its bytes block after block."""

    size: int
    blocks: AsyncIterator[bytes]


BeforeReplace = Callable[[], Awaitable[None]]


class DestinationSession(Protocol):
    def final_path(self, directory: str, name: str) -> str: ...

    def upload(
        self, directory: str, name: str, writer: Writer, before_replace: BeforeReplace | None = None
    ) -> AbstractAsyncContextManager[Upload]:
        """An upload that becomes `directory/name` when the block exits without an error;
        `before_replace` runs after the last byte is stored and before the rename."""
        ...

    async def remove(self, directory: str, name: str) -> None:
        """Remove `directory/name`; nothing to do if it is not there."""
        ...

    def read(self, path: str) -> AbstractAsyncContextManager[StoredFile]:
        """The file at `path` (a `final_path`), or StoredFileMissing."""
        ...


class Destination(Protocol):
    def session(self) -> AbstractAsyncContextManager[DestinationSession]: ...


# --- A directory on this host ---


class _LocalUpload:
    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    async def write(self, data: bytes) -> None:
        # In a thread: a slow disk must not stall the event loop (and with it the heartbeats).
        await asyncio.to_thread(self._file.write, data)


class LocalSession:
    def __init__(self, root: Path) -> None:
        self._root = root

    def final_path(self, directory: str, name: str) -> str:
        return str(self._root / directory / name)

    @asynccontextmanager
    async def upload(
        self, directory: str, name: str, writer: Writer, before_replace: BeforeReplace | None = None
    ) -> AsyncIterator[Upload]:
        folder = self._root / directory
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        temp = folder / writer.temp_name(name)
        file = await asyncio.to_thread(temp.open, "wb")
        try:
            try:
                yield _LocalUpload(file)
                await asyncio.to_thread(_flush_to_disk, file)
            finally:
                file.close()
            if before_replace is not None:
                await before_replace()
            await asyncio.to_thread(os.replace, temp, folder / name)
        except BaseException:
            # Also on cancellation: synchronous, so a second cancellation cannot skip it.
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        for earlier in writer.earlier_temp_names(name):
            with contextlib.suppress(OSError):
                (folder / earlier).unlink()

    async def remove(self, directory: str, name: str) -> None:
        await asyncio.to_thread(_remove_durably, self._root / directory / name)

    @asynccontextmanager
    async def read(self, path: str) -> AsyncIterator[StoredFile]:
        resolved = await asyncio.to_thread(Path(path).resolve)
        if not resolved.is_relative_to(self._root):
            raise StoredFileMissing(f"{path} is outside the export directory {self._root}")
        try:
            file = await asyncio.to_thread(resolved.open, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise StoredFileMissing(f"{path} is not in the export directory") from None
        try:
            size = os.fstat(file.fileno()).st_size
            yield StoredFile(size, _local_blocks(file))
        finally:
            file.close()


async def _local_blocks(file: BinaryIO) -> AsyncIterator[bytes]:
    while block := await asyncio.to_thread(file.read, READ_BLOCK_BYTES):
        yield block


def _flush_to_disk(file: BinaryIO) -> None:
    # The rename must not reach the disk before the data: otherwise a crash could leave a
    # complete-looking name over an empty file.
    file.flush()
    os.fsync(file.fileno())


def _remove_durably(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    # The removal must reach the disk before a later rename in this directory: after a crash the
    # old manifest must not come back beside files it does not describe.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class LocalDestination:
    """A directory on this host (PETCARE_EXPORT__LOCAL_DIR): for one host or a shared volume."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @asynccontextmanager
    async def session(self) -> AsyncIterator[DestinationSession]:
        yield LocalSession(self._root.resolve())


# --- An SFTP server (asyncssh) ---

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
            raise application_error(
                f"SFTP server {self._where} denied writing {folder}: {error.reason}",
                ErrorType.SFTP_PERMISSION_DENIED,
            ) from None
        for earlier in writer.earlier_temp_names(name):
            with contextlib.suppress(asyncssh.SFTPError):
                await self._sftp.remove(posixpath.join(folder, earlier))

    async def remove(self, directory: str, name: str) -> None:
        # Called from an upload's `before_replace`, which classifies a refusal like the upload's own.
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            await self._sftp.remove(posixpath.join(self._remote_dir, directory, name))

    @asynccontextmanager
    async def read(self, path: str) -> AsyncIterator[StoredFile]:
        try:
            file = await self._sftp.open(path, "rb")
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure):
            raise StoredFileMissing(f"{path} is not on SFTP server {self._where}") from None
        except asyncssh.SFTPPermissionDenied as error:
            raise application_error(
                f"SFTP server {self._where} denied reading {path}: {error.reason}",
                ErrorType.SFTP_PERMISSION_DENIED,
            ) from None
        async with file:
            size = (await file.stat()).size or 0
            yield StoredFile(size, _sftp_blocks(file))

    async def _replace(self, temp: str, final: str) -> None:
        try:
            await self._sftp.posix_rename(temp, final)  # atomic overwrite (OpenSSH extension)
        except asyncssh.SFTPOpUnsupported:
            # Plain SFTP rename refuses to overwrite; the old file goes first (a re-export only).
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await self._sftp.remove(final)
            await self._sftp.rename(temp, final)


async def _sftp_blocks(file: asyncssh.SFTPClientFile) -> AsyncIterator[bytes]:
    offset = 0
    while block := await file.read(READ_BLOCK_BYTES, offset):
        assert isinstance(block, bytes)  # opened in binary mode
        offset += len(block)
        yield block


class SftpDestination:
    """An SFTP server; its host key must be in PETCARE_SFTP__KNOWN_HOSTS_PATH (never auto-accepted)."""

    def __init__(self, settings: SftpSettings) -> None:
        self._settings = settings
        self._where = f"{settings.host}:{settings.port}"

    def _check_files(self) -> tuple[str, str | None]:
        known_hosts = self._settings.known_hosts_path
        if known_hosts is None:
            raise application_error(
                "PETCARE_SFTP__KNOWN_HOSTS_PATH is not set: the SFTP server's host key must be verified",
                ErrorType.SFTP_CONFIGURATION_ERROR,
            )
        if not known_hosts.is_file():
            raise application_error(
                f"PETCARE_SFTP__KNOWN_HOSTS_PATH names no readable file: {known_hosts}",
                ErrorType.SFTP_CONFIGURATION_ERROR,
            )
        key = self._settings.private_key_path
        if key is not None and not key.is_file():
            raise application_error(
                f"PETCARE_SFTP__PRIVATE_KEY_PATH names no readable file: {key}",
                ErrorType.SFTP_CONFIGURATION_ERROR,
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
            raise application_error(
                f"SFTP server {self._where} presented a host key that PETCARE_SFTP__KNOWN_HOSTS_PATH "
                f"({known_hosts}) does not trust (unknown or changed key); not uploading",
                ErrorType.SFTP_HOST_KEY_REJECTED,
            ) from None
        except asyncssh.PermissionDenied:
            raise application_error(
                f"SFTP server {self._where} refused the credentials of user {self._settings.username!r}",
                ErrorType.SFTP_AUTHENTICATION_FAILED,
            ) from None
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as error:
            raise application_error(
                f"PETCARE_SFTP__PRIVATE_KEY_PATH cannot be used: {error}", ErrorType.SFTP_CONFIGURATION_ERROR
            ) from None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[DestinationSession]:
        connection = await self._connect()
        async with connection, connection.start_sftp_client() as sftp:
            yield SftpSession(sftp, self._settings.remote_dir, self._where)


def destination_for(settings: Settings) -> Destination:
    """The destination PETCARE_EXPORT__DESTINATION names."""
    if settings.export.destination == "local":
        return LocalDestination(settings.export.local_dir)
    return SftpDestination(settings.sftp)
