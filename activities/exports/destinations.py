"""Where export files go, and the local-directory destination; every upload is atomic.

An upload writes a temporary name in the target directory and renames it to the final name
only once complete, so a reader never sees a partial file under a final name. The temporary
name carries the activity attempt, so a late writer of an earlier attempt cannot corrupt a
retry's file; a successful upload removes the leftovers of earlier attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import BinaryIO, Protocol


def temp_name(name: str, attempt: int) -> str:
    # A dot file: consumers that skip hidden files never pick it up.
    return f".{name}.{attempt}.part"


class Upload(Protocol):
    async def write(self, data: bytes) -> None: ...


class DestinationSession(Protocol):
    def final_path(self, directory: str, name: str) -> str: ...

    def upload(self, directory: str, name: str, attempt: int) -> AbstractAsyncContextManager[Upload]:
        """An upload that becomes `directory/name` when the block exits without an error."""
        ...


class Destination(Protocol):
    def session(self) -> AbstractAsyncContextManager[DestinationSession]: ...


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
    async def upload(self, directory: str, name: str, attempt: int) -> AsyncIterator[Upload]:
        folder = self._root / directory
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        temp = folder / temp_name(name, attempt)
        file = await asyncio.to_thread(temp.open, "wb")
        try:
            try:
                yield _LocalUpload(file)
                await asyncio.to_thread(_flush_to_disk, file)
            finally:
                file.close()
            await asyncio.to_thread(os.replace, temp, folder / name)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        for earlier in range(1, attempt):
            with contextlib.suppress(OSError):
                (folder / temp_name(name, earlier)).unlink()


def _flush_to_disk(file: BinaryIO) -> None:
    # The rename must not reach the disk before the data: otherwise a crash could leave a
    # complete-looking name over an empty file.
    file.flush()
    os.fsync(file.fileno())


class LocalDestination:
    """A directory on this host (PETCARE_EXPORT__LOCAL_DIR): for one host or a shared volume."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @asynccontextmanager
    async def session(self) -> AsyncIterator[DestinationSession]:
        yield LocalSession(self._root.resolve())
