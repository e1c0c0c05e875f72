"""A slow link for tests: a loopback TCP proxy that forwards each connection at a fixed byte rate."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class ThrottledProxy:
    """Forwards connections on `port` to `target_host:target_port`, each direction at most
    `bytes_per_second`, so an upload lasts long enough to be interrupted (no change to either side)."""

    def __init__(self, target_host: str, target_port: int, bytes_per_second: float) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.bytes_per_second = bytes_per_second
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connect, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _connect(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer)
            )
        finally:
            self._writers -= {client_writer, upstream_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Either side closing (or a killed process's reset) closes the other: the far end sees it.
        with contextlib.suppress(OSError):
            try:
                while data := await reader.read(16 * 1024):
                    writer.write(data)
                    await writer.drain()
                    await asyncio.sleep(len(data) / self.bytes_per_second)
            finally:
                writer.close()

    async def __aenter__(self) -> ThrottledProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
