"""COPY ... TO STDOUT streamed into an upload while hashing and counting: memory stays flat.

PostgreSQL formats the rows; this module only moves bytes. The COPY fills blocks of about
`block_bytes` into a queue of at most `queue_blocks`; a second task converts (CSV: CRLF record
ends), hashes and uploads them, so reading from PostgreSQL and writing to the destination
overlap, and a slow destination slows the COPY down (asyncpg stops reading the socket) instead
of filling memory. If no block reaches the destination for `stall_seconds`, the stream fails
with StreamStalled rather than hang until the activity's start-to-close timeout.

CSV record ends are converted in the stream to what RFC 4180 wants (CRLF) from PostgreSQL's LF.
COPY ... CSV ends each record with LF and quotes every cell that holds a quote, comma, CR or LF.
So a LF outside quotes ends a record (it becomes CRLF) and a LF inside quotes is cell text (it
stays). The quote parity is carried from one chunk to the next; an escaped quote ("") toggles it
twice, so it needs no special case.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from activities.exports.destinations import Upload
from petcare.config import Settings
from petcare.db import Connection


@dataclass(frozen=True)
class StreamLimits:
    block_bytes: int = 1024 * 1024
    queue_blocks: int = 4
    timeout_seconds: float = 3600.0  # the whole COPY; the connection's command timeout is far shorter
    # Longer than PostgreSQL's longest legitimate silence: sorting a big period before row one.
    stall_seconds: float = 600.0
    heartbeat_seconds: float = 5.0  # the bytes sent so far, to Temporal (call sites allow 30 s)


def stream_limits(settings: Settings) -> StreamLimits:
    export = settings.export
    return StreamLimits(
        block_bytes=export.block_bytes,
        queue_blocks=export.queue_blocks,
        timeout_seconds=export.copy_timeout_seconds,
        stall_seconds=export.stall_seconds,
    )


@dataclass(frozen=True)
class Streamed:
    rows: int
    bytes: int
    sha256: str


class StreamStalled(Exception):
    """No byte reached the destination for `stall_seconds` (a hung server on either side)."""


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
    convert: Callable[[bytes], bytes] | None = None,
    progress: Callable[[int], None] = lambda _bytes: None,
) -> Streamed:
    """Stream the COPY into `upload`; `convert` rewrites each block in order (bytes counted after it)."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=limits.queue_blocks)
    # asyncpg hands over a fresh buffer per read; they are joined once per block (one copy, where
    # growing a bytearray and copying it out took two copies and re-grew a freed buffer each block).
    pending: list[bytes] = []
    pending_bytes = 0
    digest = hashlib.sha256()
    sent = 0
    loop = asyncio.get_running_loop()

    async def collect(chunk: bytes) -> None:
        nonlocal pending_bytes
        pending.append(chunk)
        pending_bytes += len(chunk)
        if pending_bytes >= limits.block_bytes:
            await queue.put(b"".join(pending))
            pending.clear()
            pending_bytes = 0

    async def produce() -> str:
        status: str = await connection.copy_from_query(
            query, *args, output=collect, timeout=limits.timeout_seconds, **copy_options
        )
        if pending:
            await queue.put(b"".join(pending))
        await queue.put(None)
        return status

    async def consume(stall: asyncio.Timeout) -> None:
        nonlocal sent
        while (block := await queue.get()) is not None:
            if convert is not None:
                block = convert(block)
            digest.update(block)
            await upload.write(block)
            sent += len(block)
            progress(sent)
            stall.reschedule(loop.time() + limits.stall_seconds)

    stall = asyncio.timeout(limits.stall_seconds)
    try:
        async with stall, asyncio.TaskGroup() as group:
            copying = group.create_task(produce())
            group.create_task(consume(stall))
    except TimeoutError:
        if stall.expired():
            raise StreamStalled(f"no data moved for {limits.stall_seconds:g} s ({sent} bytes sent)") from None
        raise
    except BaseExceptionGroup as failures:
        # One side failed and the other was cancelled: the caller classifies the real error.
        raise failures.exceptions[0] from None
    return Streamed(rows=copied_rows(copying.result()), bytes=sent, sha256=digest.hexdigest())


class CrlfRecords:
    """Called with each chunk of a CSV stream, in order; returns the converted chunk."""

    def __init__(self) -> None:
        self._in_quotes = False

    def __call__(self, chunk: bytes) -> bytes:
        if b'"' not in chunk:
            # The common case: no quoted cell starts or ends here, one C-speed replace.
            return chunk if self._in_quotes else chunk.replace(b"\n", b"\r\n")
        segments = chunk.split(b'"')
        # Segment i is outside quotes when i quotes precede it (with the carried parity) in even number.
        first_outside = 1 if self._in_quotes else 0
        segments[first_outside::2] = [
            segment.replace(b"\n", b"\r\n") for segment in segments[first_outside::2]
        ]
        if len(segments) % 2 == 0:  # an odd number of quotes in this chunk
            self._in_quotes = not self._in_quotes
        return b'"'.join(segments)
