"""Where export files go, and the local-directory destination; every upload is atomic.

An upload writes a temporary name in the target directory and renames it to the final name
only once complete, so a reader never sees a partial file under a final name. The temporary
name carries the workflow run and the activity attempt: no other run or attempt ever writes the
same temporary file (a late writer cannot corrupt a retry's file, nor a cancelled run a re-run's).
An upload that fails or is cancelled removes its temporary file; a successful one also removes
the leftovers of its run's earlier attempts (a crashed worker's cannot be told from a live one's).
Its caller's `before_replace` runs once the data is complete, just before the rename: the export
retracts its manifest there, so no manifest ever stands beside a file it does not describe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


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
