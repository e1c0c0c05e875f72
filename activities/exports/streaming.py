"""COPY ... TO STDOUT streamed into an upload while hashing and counting: memory stays flat.

PostgreSQL formats the rows; this module only moves bytes. The COPY fills blocks of about
`block_bytes` into a queue of at most `queue_blocks`; a second task hashes and uploads them, so
reading from PostgreSQL and writing to the destination overlap, and a slow destination slows
the COPY down (asyncpg stops reading the socket) instead of filling memory.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from activities.exports.destinations import Upload
from petcare.db import Connection


@dataclass(frozen=True)
class StreamLimits:
    block_bytes: int = 1024 * 1024
    queue_blocks: int = 4
    timeout_seconds: float = 3600.0  # the whole COPY; the connection's command timeout is far shorter


@dataclass(frozen=True)
class Streamed:
    rows: int
    bytes: int
    sha256: str


def copied_rows(status: str) -> int:
    """The row count of a COPY's command tag (`COPY 1234`), which excludes the header line."""
    tag, _, count = status.partition(" ")
    if tag != "COPY" or not count.isdigit():
        raise ValueError(f"unexpected COPY status {status!r}")
    return int(count)


async def copy_to_upload(
    connection: Connection,
    query: str,
    args: tuple[Any, ...],
    copy_options: dict[str, Any],
    upload: Upload,
    *,
    limits: StreamLimits,
    progress: Callable[[int], None] = lambda _bytes: None,
) -> Streamed:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=limits.queue_blocks)
    pending = bytearray()
    digest = hashlib.sha256()
    sent = 0

    async def collect(chunk: bytes) -> None:
        pending.extend(chunk)
        if len(pending) >= limits.block_bytes:
            await queue.put(bytes(pending))
            pending.clear()

    async def produce() -> str:
        status: str = await connection.copy_from_query(
            query, *args, output=collect, timeout=limits.timeout_seconds, **copy_options
        )
        if pending:
            await queue.put(bytes(pending))
        await queue.put(None)
        return status

    async def consume() -> None:
        nonlocal sent
        while (block := await queue.get()) is not None:
            digest.update(block)
            await upload.write(block)
            sent += len(block)
            progress(sent)

    try:
        async with asyncio.TaskGroup() as group:
            copying = group.create_task(produce())
            group.create_task(consume())
    except BaseExceptionGroup as failures:
        # One side failed and the other was cancelled: the caller classifies the real error.
        raise failures.exceptions[0] from None
    return Streamed(rows=copied_rows(copying.result()), bytes=sent, sha256=digest.hexdigest())
